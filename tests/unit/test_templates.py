"""Templates of messages, request bodies and headers: placeholders as expressions,
{{#each}} and {{#if}} blocks, lint, and the bounds of rendering."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trilha.core.budget import Budget
from trilha.core.templates import (
    MAX_BLOCK_DEPTH,
    MAX_ISSUES,
    MAX_ITERATIONS,
    TemplateIssue,
    lint_template,
    render,
    render_url,
    render_value,
    template_paths,
    to_text,
)
from trilha.errors import ExpressionError, LimitExceeded

VARIABLES: dict[str, Any] = {
    "customer": {"name": "Ana", "vip": True, "address": {"city": "São Paulo"}},
    "items": [{"name": "pizza", "price": 42.5}],
    "count": 3,
    "total": 3.0,
    "ratio": 0.25,
    "nothing": None,
    "flag": False,
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Olá, {{customer.name}}!", "Olá, Ana!"),
        ("Olá, {{ customer.name }}!", "Olá, Ana!"),
        ("{{\tcustomer.name\n}}", "Ana"),
        ("{{items.0.name}} custa {{ items.0.price }}", "pizza custa 42.5"),
        ("{{count}} itens", "3 itens"),
        ("total {{total}}", "total 3"),
        ("{{ratio}}", "0.25"),
        ("vip={{customer.vip}} flag={{flag}}", "vip=true flag=false"),
        ("[{{nothing}}]", "[]"),
        ("[{{missing.path}}]", "[]"),
        ("{{customer.address}}", '{"city":"São Paulo"}'),
        ("{{items}}", '[{"name":"pizza","price":42.5}]'),
        ("no placeholders", "no placeholders"),
        ("", ""),
    ],
)
def test_render(template: str, expected: str) -> None:
    """Placeholders are replaced by their values formatted for a chat user."""
    assert render(template, VARIABLES) == expected


@pytest.mark.parametrize(
    "template",
    [
        "{{",
        "{{ customer.name",
        "customer.name }}",
        "{{ customer name }}",
        "{{ customer. }}",
        "{{ system('ls') }}",
        "{{ customer.__class__ }}",
        "{{ and }}",
        "{ customer.name }",
        "{{}}",
        "{{ 'unterminated }}",
    ],
)
def test_text_that_is_not_a_placeholder_is_left_alone(template: str) -> None:
    """Anything that does not parse as an expression stays as written: templates run no code."""
    assert render(template, VARIABLES) == template


def test_rendered_values_are_not_rendered_again() -> None:
    """A value that itself contains a placeholder is inserted literally, not expanded."""
    variables = {"answer": "{{secret}}", "secret": "hidden"}
    assert render("you said {{answer}}", variables) == "you said {{secret}}"


def test_dunder_paths_are_inert() -> None:
    """A dunder path never reaches Python attributes: it does not parse, so it stays text."""
    template = "{{ customer.__class__ }}|{{ __import__ }}|{{ items[0]['__class__'] }}"
    assert render(template, VARIABLES) == template
    assert [issue.severity for issue in lint_template(template)] == ["error"] * 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        ("text", "text"),
        (True, "true"),
        (False, "false"),
        (7, "7"),
        (-2.0, "-2"),
        (1.5, "1.5"),
        (1e20, "1e+20"),
        ([1, "á"], '[1,"á"]'),
        ({"a": None}, '{"a":null}'),
        (("x",), '["x"]'),
    ],
)
def test_to_text(value: Any, expected: str) -> None:
    """Values format as JSON-minded text: lowercase booleans, no '.0', compact JSON."""
    assert to_text(value) == expected


def test_render_value_keeps_type_of_single_placeholder() -> None:
    """A string that is exactly one placeholder yields the raw value, keeping its type."""
    assert render_value("{{count}}", VARIABLES) == 3
    assert render_value("{{ customer.vip }}", VARIABLES) is True
    assert render_value("{{items}}", VARIABLES) == VARIABLES["items"]
    assert render_value("{{missing}}", VARIABLES) is None
    assert render_value("{{nothing}}", VARIABLES) is None


def test_render_value_walks_json_bodies() -> None:
    """Dict values and list items are rendered recursively; keys and non-strings are kept."""
    body = {
        "{{count}}": "n={{count}}",
        "customer": {"name": "{{customer.name}}", "vip": "{{customer.vip}}"},
        "tags": ["{{items.0.name}}", 5, None, False],
        "pair": ("{{count}}", "x"),
        "literal": 1.5,
    }
    assert render_value(body, VARIABLES) == {
        "{{count}}": "n=3",
        "customer": {"name": "Ana", "vip": True},
        "tags": ["pizza", 5, None, False],
        "pair": [3, "x"],
        "literal": 1.5,
    }


def test_render_value_does_not_mutate_input() -> None:
    """Rendering builds new containers, leaving the flow's definition untouched."""
    body = {"a": ["{{count}}"]}
    render_value(body, VARIABLES)
    assert body == {"a": ["{{count}}"]}


def test_template_paths() -> None:
    """Referenced paths are listed once each, in order of first use, ignoring non-placeholders."""
    template = "{{ b.c }} {{a}} {{b.c}} {{ 1+1 }} {{items.0.name}} {{ x y }} {{"
    assert template_paths(template) == ["b.c", "a", "items.0.name"]
    assert template_paths("plain") == []


@given(st.text().filter(lambda text: "{{" not in text))
def test_text_without_placeholders_renders_unchanged(text: str) -> None:
    """Any text without '{{' comes back exactly as it went in."""
    assert render(text, VARIABLES) == text


@given(st.text())
def test_string_values_render_verbatim(value: str) -> None:
    """Whatever a user typed is inserted exactly, with no further interpretation."""
    assert render("<{{answer}}>", {"answer": value}) == f"<{value}>"


# ------------------------------------------------------------ placeholders as expressions

CLINIC: dict[str, Any] = {
    "name": "Ana",
    "choice": 2,
    "slots": [
        {"id": "s1", "label": "09:00", "doctor": "Dra. Ana"},
        {"id": "s2", "label": "10:30", "doctor": "Dr. Rui"},
        {"id": "s3", "label": "14:00", "doctor": "Dra. Ana"},
    ],
    "sections": [
        {"title": "Manhã", "rows": [{"t": "09:00"}, {"t": "10:30"}]},
        {"title": "Tarde", "rows": [{"t": "14:00"}]},
    ],
    "empty": [],
    "object": {"a": 1},
    "sys": {"now": "2025-03-01T02:30:00Z", "executionId": "e-1", "language": "pt-BR"},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 1+1 }}", "2"),
        ("{{ 7 / 2 }}", "3.5"),
        ("{{ lower(customer.name) }}", "ana"),
        ("{{ customer['name'] }}", "Ana"),
        ("{{ items[0].name }}", "pizza"),
        ("{{ items[count - 3]['price'] }}", "42.5"),
        ("{{ items[5] }}|{{ items[-1] }}", "|"),
        ("{{ customer.vip and count > 2 }}", "true"),
        ("{{ upper(customer.address.city) }}", "SÃO PAULO"),
        ("{{ len(items) }} item", "1 item"),
        ("{{ join(['a', 'b'], ' e ') }}", "a e b"),
        ("{{ 'a' + \"b\" }}", "ab"),
        ("{{{customer.name}}}", "{Ana}"),
        ("{ {{customer.name}} }", "{ Ana }"),
        ("{{ customer.name }}}", "Ana}"),
        ("\\{{customer.name}} is {{customer.name}}", "{{customer.name}} is Ana"),
        ("{{ hello {{customer.name}}", "{{ hello Ana"),
    ],
)
def test_placeholders_are_expressions(template: str, expected: str) -> None:
    """Every {{ ... }} is an expression of the condition language, formatted for chat."""
    assert render(template, VARIABLES) == expected


def test_functions_in_templates_read_sys_now() -> None:
    """Date functions use sys.now from the variables, in the contact's time zone."""
    template = (
        "Hoje é {{ format_date(now(), \"EEEE, d 'de' MMMM\", 'America/Sao_Paulo', sys.language) }}"
        " ({{ today('America/Sao_Paulo') }}, dia {{ weekday(now(), 'America/Sao_Paulo') }});"
        " amanhã {{ format_date(add_days(today('America/Sao_Paulo'), 1), 'dd/MM') }}"
    )
    assert render(template, CLINIC) == (
        "Hoje é sexta-feira, 28 de fevereiro (2025-02-28, dia 5); amanhã 01/03"
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Total: {{ number('abc') }}", "in {{ number('abc') }}: number() cannot convert 'abc'"),
        ("{{ now() }}", "in {{ now() }}: now() needs sys.now"),
        ("{{ format_date(x, 'dd', 'Mars/Base') }}", "unknown time zone 'Mars/Base'"),
        ("{{#each [1]}}{{ 1 / 0 }}{{/each}}", "in {{ 1 / 0 }}: division by zero at column 3"),
        ("{{#if 'a' + 1}}x{{/if}}", "in {{#if 'a' + 1}}: cannot apply '+' to string and number"),
    ],
)
def test_runtime_errors_in_placeholders_raise(template: str, message: str) -> None:
    """A placeholder that parses but fails on the data raises ExpressionError, as a condition."""
    with pytest.raises(ExpressionError) as info:
        render(template, {"x": "2025-03-01"})
    assert message in str(info.value)


# ------------------------------------------------------------------------ blocks


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "{{#each slots}}{{@number}}. {{this.label}} ({{this.doctor}})\n{{/each}}",
            "1. 09:00 (Dra. Ana)\n2. 10:30 (Dr. Rui)\n3. 14:00 (Dra. Ana)\n",
        ),
        ("{{#each slots}}{{@index}}{{/each}}", "012"),
        (
            "{{#each slots}}{{#if @first}}[{{/if}}{{this.id}}"
            "{{#if @last}}]{{else}},{{/if}}{{/each}}",
            "[s1,s2,s3]",
        ),
        ("{{#each slots}}{{name}}:{{this.id}} {{/each}}", "Ana:s1 Ana:s2 Ana:s3 "),
        ("{{#each slots}}{{#if @number == choice}}{{this.label}}{{/if}}{{/each}}", "10:30"),
        ("{{#each ['a', 'b']}}<{{this}}>{{/each}}", "<a><b>"),
        ("{{#each slots}}{{slots[@index].id == this.id}}{{/each}}", "truetruetrue"),
        # nested loops: this is the innermost item, @index the innermost position
        (
            "{{#each sections}}{{this.title}}:{{#each this.rows}} {{@number}}={{this.t}}{{/each}};"
            "{{/each}}",
            "Manhã: 1=09:00 2=10:30;Tarde: 1=14:00;",
        ),
        ("{{#each sections}}{{#each this.rows}}{{@index}}{{/each}}{{@index}}|{{/each}}", "010|01|"),
        # after a loop, this and @index are gone again
        ("{{#each slots}}{{/each}}[{{this}}{{@index}}]", "[]"),
        # {{else}}: empty, missing, or not a list at all
        ("{{#each empty}}x{{else}}nothing{{/each}}", "nothing"),
        ("{{#each missing}}x{{else}}nothing{{/each}}", "nothing"),
        ("{{#each object}}x{{else}}not a list{{/each}}", "not a list"),
        ("{{#each name}}x{{else}}a string{{/each}}", "a string"),
        ("{{#each choice}}x{{else}}a number{{/each}}", "a number"),
        ("{{#each object}}x{{/each}}|{{#each name}}x{{/each}}|{{#each choice}}x{{/each}}", "||"),
        ("{{#each empty}}x{{else}}[{{this}}]{{/each}}", "[]"),
        # if / else if / else, by truthiness
        ("{{#if name}}hi {{name}}{{/if}}", "hi Ana"),
        ("{{#if empty}}yes{{else}}no{{/if}}", "no"),
        ("{{#if missing.deep}}yes{{else}}no{{/if}}", "no"),
        ("{{#if choice == 1}}one{{else if choice == 2}}two{{else}}many{{/if}}", "two"),
        ("{{#if choice == 1}}one{{else if choice == 3}}three{{else}}many{{/if}}", "many"),
        ("{{#if false}}a{{else if false}}b{{/if}}", ""),
        ("{{#if 0}}a{{else if 0}}b{{else if 1}}c{{else}}d{{/if}}", "c"),
        (
            "{{#if len(slots) > 2}}{{#each slots}}{{#if @last}}{{this.id}}{{/if}}{{/each}}{{/if}}",
            "s3",
        ),
        # whitespace inside tags is free, outside it is kept exactly
        ("{{ #each slots }}{{ @number }}{{ /each }}", "123"),
        ("{{#each   ['a']  }} \n {{this}} \n {{/each}}", " \n a \n "),
        ("  {{#if true}}\n  x\n  {{/if}}\n", "  \n  x\n  \n"),
    ],
)
def test_blocks(template: str, expected: str) -> None:
    """{{#each}} with this and the @ names, {{#if}}, {{else if}} and {{else}}."""
    assert render(template, CLINIC) == expected


@pytest.mark.parametrize(
    "template",
    [
        "{{#each slots}}x",
        "{{#if true}}x{{else}}y",
        "{{/each}}",
        "{{/if}} and {{else}}",
        "{{#with slots}}x{{/with}}",
        "{{#each}}x{{/each}}",
        "{{#each slots +}}x{{/each}}",
        "{{#if true}}x{{/each}}{{/if}}".replace("{{/if}}", ""),
    ],
)
def test_broken_blocks_are_written_literally(template: str) -> None:
    """At run time a block that fails lint is written as it stands, never an error."""
    assert render(template, CLINIC) == template


def test_broken_parts_stay_local() -> None:
    """Only the broken part is literal: the rest of the template still renders."""
    assert render("{{name}} {{/each}} {{name}}", CLINIC) == "Ana {{/each}} Ana"
    assert render("{{#each slots}}{{#if 1 +}}?{{/if}}{{/each}}!", CLINIC) == (
        "{{#if 1 +}}?{{/if}}" * 3 + "!"
    )
    assert render("{{#if true}}a{{/each}}b{{/if}}", CLINIC) == "a{{/each}}b"
    assert render("{{#if true}}a{{else}}b{{else}}c{{/if}}", CLINIC) == "a"
    assert render("{{#if false}}a{{else}}b{{else}}c{{/if}}", CLINIC) == "b{{else}}c"


def test_loop_values_are_not_rendered_again() -> None:
    """An item that itself holds a placeholder or a block tag is inserted literally."""
    variables = {"items": ["{{secret}}", "{{#each x}}"], "secret": "hidden"}
    assert render("{{#each items}}{{this}};{{/each}}", variables) == "{{secret}};{{#each x}};"


# ------------------------------------------------------------------------------ lint


@pytest.mark.parametrize(
    ("template", "messages"),
    [
        ("Olá {{ name", ["'{{' at character 5 is not closed by '}}'"]),
        ("{{ a {{name}}", ["'{{' at character 1 is not closed by '}}'"]),
        (
            "{{#each slots}}x",
            ["{{#each slots}} at character 1 is not closed by {{/each}}"],
        ),
        (
            "{{#each a}}{{#if b}}x{{/each}}",
            [
                "{{/each}} at character 22 does not close {{#if b}} (at character 12);"
                " close it with {{/if}}",
                "{{#if b}} at character 12 is not closed by {{/if}}",
                "{{#each a}} at character 1 is not closed by {{/each}}",
            ],
        ),
        ("x {{/each}}", ["{{/each}} at character 3 closes no block"]),
        ("{{/if}}", ["{{/if}} at character 1 closes no block"]),
        ("a {{else}} b", ["{{else}} at character 3 is outside {{#each}} or {{#if}}"]),
        (
            "{{#if a}}1{{else}}2{{else}}3{{/if}}",
            ["{{else}} at character 20 is a second {{else}} in {{#if a}}"],
        ),
        (
            "{{#each a}}1{{else if b}}2{{/each}}",
            ["{{else if b}} at character 13 can only follow {{#if}}"],
        ),
        (
            "{{#with a}}{{/with}}",
            [
                "unknown block {{#with a}} at character 1; use {{#each}} or {{#if}}",
                "{{/with}} at character 12 closes no block",
            ],
        ),
        ("{{#each}}{{/each}}", ["{{#each}} at character 1 needs an expression"]),
        ("{{ 1 + }}", ["{{ 1 + }} at character 1: unexpected end of expression at column 4"]),
        ("{{}}", ["{{}} at character 1: empty expression"]),
        (
            "{{ a = 1 }}",
            ["{{ a = 1 }} at character 1: unexpected '=' at column 3; use '==' to compare"],
        ),
        (
            "Hi {{ shout(name) }}",
            ["{{ shout(name) }} at character 4: unknown function 'shout' at column 1"],
        ),
        (
            "{{#if fmt(x)}}{{/if}}",
            ["{{#if fmt(x)}} at character 1: unknown function 'fmt' at column 1"],
        ),
        (
            "{{ format_date(x) }}",
            [
                "{{ format_date(x) }} at character 1: format_date() takes 2 to 4 arguments,"
                " got 1 at column 1"
            ],
        ),
        (
            "{{ '" + "x" * 60 + "' + }}",
            ["{{ '" + "x" * 31 + "...}} at character 1: unexpected end of expression at column 65"],
        ),
    ],
)
def test_lint_errors(template: str, messages: list[str]) -> None:
    """Each kind of mistake is an error naming the tag, where it is and why."""
    issues = lint_template(template)
    assert [issue.message for issue in issues] == messages
    assert {issue.severity for issue in issues} == {"error"}


def test_lint_warns_about_loop_names_outside_loops() -> None:
    """this and the @ names outside {{#each}} (or in its {{else}}) are null: a warning."""
    issues = lint_template("{{@index}} {{#each a}}{{this}}{{else}}{{this.x}}{{/each}} {{@last}}")
    assert issues == [
        TemplateIssue(
            "{{@index}} at character 1 reads '@index' where no {{#each}} item is set"
            " (it is null there)",
            "warning",
        ),
        TemplateIssue(
            "{{this.x}} at character 39 reads 'this' where no {{#each}} item is set"
            " (it is null there)",
            "warning",
        ),
        TemplateIssue(
            "{{@last}} at character 59 reads '@last' where no {{#each}} item is set"
            " (it is null there)",
            "warning",
        ),
    ]


@pytest.mark.parametrize(
    "template",
    [
        "",
        "plain text",
        "a { b } c",
        "{ }",
        "}} {",
        'json: {"a": {"b": 1}}',
        "{{name}} }}",
        "{{#each slots}}{{@number}} {{this.label}}{{else}}none{{/each}}",
        "{{#if a}}x{{else if b}}y{{else}}z{{/if}}",
        "\\{{ not a placeholder",
        "{{{name}}}",
    ],
)
def test_lint_accepts_good_templates_and_chat_braces(template: str) -> None:
    """Correct templates and braces in ordinary chat text produce no issue."""
    assert lint_template(template) == []


def test_lint_is_what_render_writes_literally() -> None:
    """A template that lints clean never renders any of its tags literally."""
    template = "{{#each slots}}{{#if @last}}{{this.id}}{{/if}}{{/each}}"
    assert lint_template(template) == []
    assert "{{" not in render(template, CLINIC)


# ---------------------------------------------------------------------------- bounds


def test_loop_iterations_are_capped() -> None:
    """Loops run at most MAX_ITERATIONS times per rendering; nested loops multiply."""
    items = list(range(99))  # 99 outer + 99 * 99 inner = 9,900 iterations
    assert len(render("{{#each a}}{{#each a}}.{{/each}}{{/each}}", {"a": items})) == 99 * 99
    with pytest.raises(LimitExceeded) as info:  # 100 + 100 * 100 = 10,100
        render("{{#each a}}{{#each a}}{{/each}}{{/each}}", {"a": [*items, 99]})
    assert str(info.value) == f"the template's loops ran more than {MAX_ITERATIONS} times"
    assert info.value.details == {"kind": "limit", "limit": MAX_ITERATIONS}


def test_empty_loops_count_too() -> None:
    """Iterations that write nothing still count: time is bounded, not only output."""
    items = list(range(6_000))
    render("{{#each items}}{{/each}}", {"items": items})
    with pytest.raises(LimitExceeded):
        render("{{#each items}}{{/each}}{{#each items}}{{/each}}", {"items": items})


def test_a_body_shares_the_loop_bound() -> None:
    """Every string of a request body counts against one rendering's loop bound."""
    body = {"a": "{{#each items}}{{/each}}", "b": ["{{#each items}}{{/each}}"]}
    render_value({"a": body["a"]}, {"items": list(range(6_000))})
    with pytest.raises(LimitExceeded):
        render_value(body, {"items": list(range(6_000))})


def test_loop_output_is_counted_as_it_is_written() -> None:
    """A huge loop fails at the first piece past the budget, before the text is joined."""
    budget = Budget(10_000)
    with pytest.raises(LimitExceeded) as info:
        render("{{#each items}}0123456789{{this}}{{/each}}", {"items": ["x"] * 5_000}, budget)
    assert info.value.details["kind"] == "limit"
    assert budget.limit < budget.spent <= budget.limit + 10  # stopped at the first piece past


def test_rendered_text_stays_within_the_budget() -> None:
    """What render returns is never longer than the budget it was given."""
    variables = {"items": ["é" * 50] * 20, "q": '"\u0001' * 30, "f": 1.2345678901234567e-300}
    for limit in (0, 10, 100, 1_000, 5_000):
        for template in (
            "{{#each items}}{{this}}-{{/each}}",
            "{{ q }}{{ items }}{{ f }}{{ [f, f, f] }}",
        ):
            budget = Budget(limit)
            try:
                text = render(template, variables, budget)
            except LimitExceeded:
                continue
            assert len(text) <= budget.spent <= limit


def test_block_depth_is_capped() -> None:
    """Blocks nest at most MAX_BLOCK_DEPTH deep: deeper fails lint, and rendering."""
    deepest = "{{#if true}}" * MAX_BLOCK_DEPTH + "x" + "{{/if}}" * MAX_BLOCK_DEPTH
    assert render(deepest, {}) == "x"
    assert lint_template(deepest) == []
    too_deep = "{{#if true}}" + deepest + "{{/if}}"
    assert [issue.message for issue in lint_template(too_deep)] == [
        f"{{{{#if true}}}} at character {12 * MAX_BLOCK_DEPTH + 1} nests blocks deeper than"
        f" {MAX_BLOCK_DEPTH} levels"
    ]
    with pytest.raises(LimitExceeded, match="nests blocks deeper than 20 levels"):
        render(too_deep, {})
    chain = "{{#if false}}" + "{{else if false}}" * MAX_BLOCK_DEPTH + "{{/if}}"
    with pytest.raises(LimitExceeded):
        render(chain, {})


def test_deep_values_fail_cleanly() -> None:
    """A value nested past what Python can format fails as ExpressionError, not a crash."""
    deep: Any = []
    for _ in range(5_000):
        deep = [deep]
    with pytest.raises((ExpressionError, LimitExceeded)):
        render("{{#each [x]}}{{this}}{{/each}}", {"x": deep}, Budget(10**9))


def test_pathological_templates_are_linear() -> None:
    """Texts made to trip a backtracking scanner render in one pass (pytest-timeout guards)."""
    for template in (
        "{{" * 100_000,
        "{{a" * 100_000,
        "{{a}" * 100_000,
        "}}" * 100_000 + "{{",
        "{" * 200_000 + "}" * 200_000,
        "\\{{" * 100_000,
        "{{#if a}}" * 30_000,
        "{{/if}}" * 30_000,
        "{{#if a}}{{else if b}}" * 30_000,
    ):
        budget = Budget(10**7)
        assert render(template, {}, budget) == template.replace("\\{{", "{{")
        issues = lint_template(template)
        assert len(issues) <= MAX_ISSUES + 1
        assert (issues == []) == template.startswith("\\")
    assert "{{x}}" not in render("{{x}}" * 50_000, {"x": 1}, Budget(10**7))


# ------------------------------------------------------------- render_value / render_url


def test_render_value_single_expression_keeps_the_raw_value() -> None:
    """A string that is exactly one placeholder yields the value itself, of any expression."""
    assert render_value("{{ slots[0] }}", CLINIC) is CLINIC["slots"][0]
    assert render_value("{{ slots[choice - 1].label }}", CLINIC) == "10:30"
    assert render_value("{{ len(slots) * 2 }}", CLINIC) == 6
    assert render_value("{{ choice > 1 }}", CLINIC) is True
    assert render_value("{{ slots[9] }}", CLINIC) is None
    assert render_value("{{ [choice, name] }}", CLINIC) == [2, "Ana"]
    assert render_value(" {{ choice }}", CLINIC) == " 2"
    assert render_value("{{#each slots}}{{this.id}}{{/each}}", CLINIC) == "s1s2s3"
    assert render_value({"ids": ["{{ slots[0].id }}", "{{#if true}}y{{/if}}"]}, CLINIC) == {
        "ids": ["s1", "y"]
    }


def test_render_url_encodes_each_piece() -> None:
    """Each placeholder's text is one URL component, in loops too; literal text is kept."""
    variables = {"q": "a&b=c/../d?#", "tags": ["x y", "ç/1"], "base": "https://h/p?x=1"}
    assert render_url("/s?q={{q}}", variables) == "/s?q=a%26b%3Dc%2F..%2Fd%3F%23"
    assert (
        render_url("/t?{{#each tags}}t={{this}}&{{/each}}", variables) == "/t?t=x%20y&t=%C3%A7%2F1&"
    )
    assert render_url("{{ base }}", variables) == "https://h/p?x=1"
    assert render_url(" {{ base }} ", variables) == " https://h/p?x=1 "
    assert render_url("{{ q + '/' }}", variables) == "a&b=c/../d?#/"
    assert render_url("/x/{{ q + '/' }}", variables) == "/x/a%26b%3Dc%2F..%2Fd%3F%23%2F"


def test_render_url_counts_the_encoded_text() -> None:
    """Percent-encoding can triple a text: the budget counts the encoded length."""
    budget = Budget(1_000)
    with pytest.raises(LimitExceeded):
        render_url("/q/{{q}}", {"q": "ç" * 200}, budget)  # 1,200 characters encoded
    assert len(render_url("/q/{{q}}", {"q": "ç" * 100}, Budget(1_000))) == 603


def test_template_paths_leave_out_loop_names() -> None:
    """Paths of expressions, blocks and loop bodies, without this or @ names inside loops."""
    template = (
        "{{#each slots}}{{this.label}} {{@index}} {{name}}{{#each this.rows}}{{this}}{{/each}}"
        "{{else}}{{fallback}}{{/each}}{{#if vip}}{{ lower(customer.name) }}{{/if}}"
        "{{ slots[choice - 1].label }} {{this.outside}}"
    )
    assert template_paths(template) == [
        "slots",
        "name",
        "fallback",
        "vip",
        "customer.name",
        "choice",
        "this.outside",
    ]


# ------------------------------------------------------------------------ properties

_FRAGMENTS = [
    "{{",
    "}}",
    "{",
    "}",
    "\\",
    "#each ",
    "#if ",
    "/each",
    "/if",
    "else",
    "else if ",
    "this",
    "this.a",
    "@index",
    "@number",
    "@first",
    "@last",
    "x",
    "y",
    "items",
    "x[0]",
    "items[y]",
    " + ",
    "len(",
    ")",
    "'",
    "now()",
    "format_date(x, 'dd/MM', 'America/Sao_Paulo')",
    "join(items, '-')",
    "number(x)",
    " ",
    "\n",
    "é",
]
_templates = st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=5), max_size=40).map("".join)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(["a", "0", "x"]), children, max_size=3)
    ),
    max_leaves=30,
)
_variables = st.fixed_dictionaries(
    {},
    optional={
        "x": _json,
        "y": _json,
        "items": _json,
        "this": _json,
        "sys": st.fixed_dictionaries({}, optional={"now": st.just("2025-03-01T02:30:00Z") | _json}),
    },
)


@settings(max_examples=300)
@given(template=st.text() | _templates, variables=_variables, limit=st.integers(0, 2_000))
def test_rendering_any_text_fails_only_cleanly_and_within_budget(
    template: str, variables: dict[str, Any], limit: int
) -> None:
    """Any text with any JSON-like variables renders, or raises ExpressionError or
    LimitExceeded; what it writes never passes the budget."""
    budget = Budget(limit)
    try:
        text = render(template, variables, budget)
    except (ExpressionError, LimitExceeded):
        return
    assert len(text) <= budget.spent <= limit


@settings(max_examples=200)
@given(template=_templates, variables=_variables)
def test_lint_clean_templates_render_no_tag_literally(
    template: str, variables: dict[str, Any]
) -> None:
    """lint_template and rendering agree: a template without errors renders no block tag
    as text (tags only come from values, which these variables do not hold)."""
    if any(issue.severity == "error" for issue in lint_template(template)):
        return
    with contextlib.suppress(ExpressionError, LimitExceeded):
        text = render(template, variables)
        assert "{{#" not in text or "{{#" in to_text(variables) or "\\{{#" in template


@given(template=st.text() | _templates, variables=_variables)
def test_render_url_and_render_value_fail_only_cleanly(
    template: str, variables: dict[str, Any]
) -> None:
    """The URL and body renderers share the guarantees of render."""
    with contextlib.suppress(ExpressionError, LimitExceeded):
        assert isinstance(render_url(template, variables, Budget(500)), str)
    with contextlib.suppress(ExpressionError, LimitExceeded):
        render_value({"a": [template, {"b": template}]}, variables, Budget(500))
    assert isinstance(template_paths(template), list)


def test_a_loop_body_template_reads_this() -> None:
    """in_loop reads a template as a loop's body (a rowsFrom field): this is the item."""
    template = "{{this.label}} #{{@number}} {{name}}{{#each this.rows}}{{this}}{{/each}}"
    assert lint_template(template, in_loop=True) == []
    assert [issue.severity for issue in lint_template(template)] == ["warning"] * 3
    assert template_paths(template, in_loop=True) == ["name"]
    assert template_paths(template) == ["this.label", "name", "this.rows"]
    item = {"label": "09:00", "rows": [1, 2]}
    assert render(template, {"this": item, "@number": 1, "name": "Ana"}) == "09:00 #1 Ana12"
