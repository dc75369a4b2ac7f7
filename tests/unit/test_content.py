"""Rich messages (issue 15): the limits checked at publish, rendering, degradation,
languages, the schema's descriptions, and properties that rendering never raises and
never breaks a WhatsApp limit."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trilha.core.budget import Budget
from trilha.core.content import (
    CAPABILITIES,
    ELLIPSIS,
    MAX_BODY,
    MAX_BUTTON_ID,
    MAX_BUTTON_TITLE,
    MAX_BUTTONS,
    MAX_CAPTION,
    MAX_FILENAME,
    MAX_FOOTER,
    MAX_HEADER,
    MAX_LIST_BUTTON,
    MAX_ROW_DESCRIPTION,
    MAX_ROW_ID,
    MAX_ROW_TITLE,
    MAX_ROWS,
    MAX_SECTION_TITLE,
    MAX_SECTIONS,
    MAX_URL,
    ContentFields,
    Said,
    choose_language,
    degrade,
    map_link,
    options_of,
    plain,
    render_content,
)
from trilha.core.expressions import compile_expression
from trilha.core.flow import MessageNode, Problem, QuestionNode, flow_json_schema, parse_flow
from trilha.core.templates import render
from trilha.engine.operator import variable_path_problem
from trilha.errors import ExpressionError, LimitExceeded

NOTHING: frozenset[str] = frozenset()


def flow(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    chained = [dict(n) for n in nodes]
    for node, after in itertools.pairwise(chained):
        node.setdefault("next", after["id"])
    return {"id": "f", "start": chained[0]["id"], "nodes": chained, **extra}


def problems(*nodes: dict[str, Any], **extra: Any) -> list[Problem]:
    parsed, found = parse_flow(flow(*nodes, **extra))
    assert (parsed is None) == any(p.severity == "error" for p in found)
    return found


def errors_at_two(node: dict[str, Any]) -> list[str]:
    """The errors of a flow whose third node (``nodes[2]``) is ``node``."""
    node = {"id": "c", "type": "message"} | node
    found = problems(
        {"id": "a", "type": "message", "text": "one"},
        {"id": "b", "type": "message", "text": "two"},
        node,
    )
    return [str(p) for p in found if p.severity == "error"]


def buttons(n: int, prefix: str = "b") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "title": f"Option {i}"} for i in range(n)]


def rows(n: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "title": f"Row {i}"} for i in range(n)]


def a_list(*sections: dict[str, Any], button: Any = "See") -> dict[str, Any]:
    return {"button": button, "sections": list(sections)}


# ----------------------------------------------------------------------------- publish limits

LIMITS: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "text over 4,096",
        {"text": "x" * (MAX_BODY + 1)},
        ["nodes[2].text: String should have at most 4096 characters"],
    ),
    (
        "one language's text over 4,096",
        {"text": {"pt-BR": "x" * (MAX_BODY + 1), "en": "ok"}},
        ["nodes[2].text.pt-BR: String should have at most 4096 characters"],
    ),
    (
        "four buttons",
        {"text": "Pick", "buttons": buttons(4)},
        ["nodes[2].buttons[3]: at most 3 buttons"],
    ),
    ("no buttons", {"text": "Pick", "buttons": []}, ["nodes[2].buttons: at least 1 button"]),
    (
        "button id over 256",
        {"text": "Pick", "buttons": [{"id": "i" * (MAX_BUTTON_ID + 1), "title": "A"}]},
        ["nodes[2].buttons[0].id: at most 256 characters"],
    ),
    (
        "button title over 20",
        {"text": "Pick", "buttons": [{"id": "a", "title": "t" * 21}]},
        ["nodes[2].buttons[0].title: at most 20 characters for a button; this one has 21"],
    ),
    (
        "one language's button title over 20",
        {"text": "Pick", "buttons": [{"id": "a", "title": {"pt-BR": "Agendar", "en": "e" * 21}}]},
        ["nodes[2].buttons[0].title.en: at most 20 characters for a button; this one has 21"],
    ),
    (
        "eleven rows in all",
        {
            "text": "Pick",
            "list": a_list({"title": "A", "rows": rows(6)}, {"title": "B", "rows": rows(5, "q")}),
        },
        ["nodes[2].list.sections[1].rows[4]: at most 10 rows in all"],
    ),
    (
        "eleven sections",
        {
            "text": "Pick",
            "list": a_list(
                *(
                    {"title": f"S{i}", "rowsFrom": {"items": "slots", "id": "x", "title": "y"}}
                    for i in range(11)
                )
            ),
        },
        ["nodes[2].list.sections[10]: at most 10 sections"],
    ),
    (
        "row title over 24",
        {"text": "Pick", "list": a_list({"rows": [{"id": "r", "title": "t" * 25}]})},
        [
            "nodes[2].list.sections[0].rows[0].title: at most 24 characters for a row;"
            " this one has 25"
        ],
    ),
    (
        "row description over 72",
        {
            "text": "Pick",
            "list": a_list({"rows": [{"id": "r", "title": "t", "description": "d" * 73}]}),
        },
        [
            "nodes[2].list.sections[0].rows[0].description: at most 72 characters for a row's"
            " description; this one has 73"
        ],
    ),
    (
        "row id over 200",
        {"text": "Pick", "list": a_list({"rows": [{"id": "i" * 201, "title": "t"}]})},
        ["nodes[2].list.sections[0].rows[0].id: at most 200 characters"],
    ),
    (
        "list button over 20",
        {"text": "Pick", "list": a_list({"rows": rows(1)}, button="b" * 21)},
        ["nodes[2].list.button: at most 20 characters for a list's button; this one has 21"],
    ),
    (
        "section title over 24",
        {"text": "Pick", "list": a_list({"title": "s" * 25, "rows": rows(1)})},
        [
            "nodes[2].list.sections[0].title: at most 24 characters for a section title;"
            " this one has 25"
        ],
    ),
    (
        "header and footer over 60",
        {"text": "Pick", "header": "h" * 61, "footer": "f" * 61, "buttons": buttons(1)},
        [
            "nodes[2].header: at most 60 characters for a header; this one has 61",
            "nodes[2].footer: at most 60 characters for a footer; this one has 61",
        ],
    ),
    (
        "caption over 1,024",
        {"media": {"kind": "image", "url": "https://x.test/a.png", "caption": "c" * 1025}},
        ["nodes[2].media.caption: at most 1024 characters for a caption; this one has 1025"],
    ),
    (
        "a media URL that is not http",
        {"media": {"kind": "document", "url": "ftp://x.test/a.pdf"}},
        ["nodes[2].media.url: an http(s) URL"],
    ),
    (
        "a relative media URL",
        {"media": {"kind": "image", "url": "/card.png"}},
        ["nodes[2].media.url: an http(s) URL"],
    ),
    (
        "two parts at once",
        {
            "text": "Pick",
            "buttons": buttons(1),
            "media": {"kind": "image", "url": "https://x.test/a.png"},
        },
        ["nodes[2].media: a message carries one of buttons, list, media, location (also buttons)"],
    ),
    (
        "a header without buttons or a list",
        {"text": "Hi", "header": "Clinic"},
        ["nodes[2].header: a header goes with buttons or a list"],
    ),
    (
        "a footer beside media",
        {"media": {"kind": "image", "url": "https://x.test/a.png"}, "footer": "Clinic"},
        ["nodes[2].footer: a footer goes with buttons or a list"],
    ),
    (
        "a button id used twice",
        {"text": "Pick", "buttons": [{"id": "a", "title": "A"}, {"id": "a", "title": "B"}]},
        ["nodes[2].buttons[1].id: button id 'a' is used twice"],
    ),
    (
        "a row id used twice across sections",
        {
            "text": "Pick",
            "list": a_list({"title": "A", "rows": rows(2)}, {"title": "B", "rows": rows(1)}),
        },
        ["nodes[2].list.sections[1].rows[0].id: row id 'r0' is used twice"],
    ),
    (
        "a language that is not a tag",
        {"text": {"portuguese": "Olá"}},
        ["nodes[2].text.portuguese: 'portuguese' is not a language tag such as 'pt-BR' or 'en'"],
    ),
    (
        "every language empty",
        {"text": {"pt-BR": " ", "en": ""}},
        ["nodes[2].text: every language's text is empty"],
    ),
    (
        "buttons without a text",
        {"buttons": buttons(1)},
        ["nodes[2].text: missing: buttons and lists need a text"],
    ),
    (
        "a message saying nothing",
        {},
        ["nodes[2].text: missing: a message needs a text, media or a location"],
    ),
    (
        "a section with neither rows nor rowsFrom",
        {"text": "Pick", "list": a_list({"title": "A"})},
        ["nodes[2].list.sections[0].rows: missing: a section needs rows or rowsFrom"],
    ),
    (
        "a section with rows and rowsFrom",
        {
            "text": "Pick",
            "list": a_list(
                {"rows": rows(1), "rowsFrom": {"items": "slots", "id": "x", "title": "y"}}
            ),
        },
        ["nodes[2].list.sections[0].rowsFrom: a section has rows or rowsFrom, not both"],
    ),
    (
        "several sections, one untitled",
        {"text": "Pick", "list": a_list({"title": "A", "rows": rows(1)}, {"rows": rows(1, "q")})},
        ["nodes[2].list.sections[1].title: missing: a list of several sections titles each"],
    ),
    (
        "a latitude past 90",
        {"location": {"latitude": 90.5, "longitude": 0}},
        ["nodes[2].location.latitude: must be between -90 and 90"],
    ),
    (
        "a longitude past -180",
        {"location": {"latitude": 0, "longitude": -180.5}},
        ["nodes[2].location.longitude: must be between -180 and 180"],
    ),
    (
        "a latitude that is neither a number nor a template",
        {"location": {"latitude": "north", "longitude": 0}},
        ["nodes[2].location.latitude: a number, or a template such as '{{place.lat}}'"],
    ),
    (
        "a handoff with four buttons",
        {"type": "handoff", "queue": "desk", "text": "Wait", "buttons": buttons(4)},
        ["nodes[2].buttons[3]: at most 3 buttons"],
    ),
    (
        "an end with a header and nothing to go with it",
        {"type": "end", "text": "Bye", "header": "Clinic"},
        ["nodes[2].header: a header goes with buttons or a list"],
    ),
    (
        "a question's option title over 20",
        {
            "type": "question",
            "text": "Pick",
            "variable": "choice",
            "validate": {"kind": "choice"},
            "buttons": [{"id": "a", "title": "t" * 21}],
        },
        ["nodes[2].buttons[0].title: at most 20 characters for a button; this one has 21"],
    ),
]


@pytest.mark.parametrize(("node", "expected"), [c[1:] for c in LIMITS], ids=[c[0] for c in LIMITS])
def test_publish_names_each_broken_limit(node: dict[str, Any], expected: list[str]) -> None:
    """Every WhatsApp limit a node's literal content breaks is one error, at its path."""
    assert errors_at_two(node) == expected


def test_a_bad_rows_from_expression_is_refused_at_publish() -> None:
    """rowsFrom.items is an expression: one that does not parse is refused like a condition's."""
    found = errors_at_two(
        {
            "text": "Pick",
            "list": a_list({"rowsFrom": {"items": "slots[", "id": "x", "title": "y"}}),
        }
    )
    assert len(found) == 1
    assert found[0].startswith("nodes[2].list.sections[0].rowsFrom.items: bad expression: ")


def test_every_limit_reached_exactly_is_accepted() -> None:
    """A node at every limit (not past it) publishes without an error."""
    at_limits = [
        {"text": "x" * MAX_BODY, "header": "h" * MAX_HEADER, "footer": "f" * MAX_FOOTER}
        | {
            "buttons": [
                {"id": "i" * MAX_BUTTON_ID, "title": "t" * MAX_BUTTON_TITLE},
                {"id": "b", "title": {"pt-BR": "p" * MAX_BUTTON_TITLE, "en": "e"}},
                {"id": "c", "title": "C"},
            ]
        },
        {
            "text": "Pick",
            "list": a_list(
                *(
                    {
                        "title": "s" * MAX_SECTION_TITLE,
                        "rows": [
                            {
                                "id": f"{i}" + "i" * (MAX_ROW_ID - len(str(i))),
                                "title": "t" * MAX_ROW_TITLE,
                                "description": "d" * MAX_ROW_DESCRIPTION,
                            }
                        ],
                    }
                    for i in range(MAX_SECTIONS)
                ),
                button="b" * MAX_LIST_BUTTON,
            ),
        },
        {"media": {"kind": "image", "url": "https://x.test/a.png", "caption": "c" * MAX_CAPTION}},
        {"location": {"latitude": -90, "longitude": 180, "name": "Clinic", "address": "Rua A"}},
    ]
    for node in at_limits:
        assert errors_at_two(node) == [], node


def test_templated_values_are_left_to_rendering() -> None:
    """A title with a placeholder is judged when rendered (and cut then), not at publish."""
    node = {
        "text": "Pick",
        "buttons": [{"id": "{{slot.id}}", "title": "Slot {{slot.label}}!!!!!!!!!!!!!"}],
    }
    assert errors_at_two(node) == []


def test_a_text_missing_in_one_language_is_a_warning() -> None:
    """validate warns about a text written in some of the flow's languages but not all."""
    found = problems(
        {"id": "a", "type": "message", "text": {"pt-BR": "Olá", "en": "Hello"}},
        {
            "id": "b",
            "type": "question",
            "variable": "choice",
            "text": {"pt-BR": "Escolha", "en": "Pick"},
            "validate": {"kind": "choice"},
            "buttons": [{"id": "x", "title": {"pt-BR": "Sim"}}, {"id": "y", "title": "No"}],
            "invalidText": {"en": "Again?"},
        },
        {"id": "c", "type": "end", "text": "Tchau"},
    )
    warnings = [str(p) for p in found if p.severity == "warning"]
    assert warnings == [
        "nodes[1].buttons[0].title: warning: no text in en (other texts of the flow have one)",
        "nodes[1].invalidText: warning: no text in pt-BR (other texts of the flow have one)",
    ]
    assert not [p for p in found if p.severity == "error"]


def test_a_flow_of_one_language_has_no_language_warning() -> None:
    """Plain texts beside texts in one language are not 'missing' anything."""
    found = problems(
        {"id": "a", "type": "message", "text": {"pt-BR": "Olá"}},
        {"id": "b", "type": "end", "text": "Tchau"},
        defaultLanguage="pt-BR",
    )
    assert found == []


def test_default_language_must_be_a_tag() -> None:
    """defaultLanguage is a language tag; anything else is refused by name."""
    found = problems({"id": "a", "type": "end", "text": "Hi"}, defaultLanguage="english")
    assert [str(p) for p in found] == [
        "defaultLanguage: 'english' is not a language tag such as 'pt-BR' or 'en'"
    ]


@pytest.mark.parametrize(
    ("node", "path"),
    [
        ({"type": "set", "variables": {"sys.language": "en"}}, "variables.sys.language"),
        ({"type": "set", "variables": {"sys": {}}}, "variables.sys"),
        ({"type": "set", "expressions": {"sys.now": "'x'"}}, "expressions.sys.now"),
        ({"type": "question", "text": "Hi?", "variable": "sys.contactId"}, "variable"),
        ({"type": "http", "url": "https://x.test", "saveAs": "sys.answer"}, "saveAs"),
        (
            {"type": "ai", "text": "{{said}}", "intents": [{"name": "x"}], "saveAs": "sys"},
            "saveAs",
        ),
    ],
)
def test_writes_under_sys_are_refused(node: dict[str, Any], path: str) -> None:
    """sys.* is read-only: set variables, expressions, a question's variable and saveAs."""
    assert errors_at_two(node) == [f"nodes[2].{path}: sys.* is read-only (trilha sets it)"]


def test_names_beside_sys_may_be_written() -> None:
    """Only sys and what is under it is trilha's: 'system' or 'sysop' are the flow's."""
    assert errors_at_two({"type": "set", "variables": {"system": 1, "sysop.name": "Ana"}}) == []


# ----------------------------------------------------------------------------- rendering


def node_of(fields: Mapping[str, Any]) -> MessageNode:
    return MessageNode.model_validate({"id": "n", "type": "message"} | dict(fields))


def rendered(
    fields: Mapping[str, Any],
    variables: Mapping[str, Any] | None = None,
    *,
    language: str | None = None,
    default: str | None = None,
) -> Said:
    """The node's content rendered as the saying processor renders it (templates and
    rowsFrom expressions over the variables, one budget for the message)."""
    node = node_of(fields)
    scope = dict(variables or {})
    budget = Budget()

    def fill(template: str, extra: Mapping[str, Any] | None) -> str:
        return render(template, scope if extra is None else {**scope, **extra}, budget)

    def evaluate(source: str) -> Any:
        return compile_expression(source).evaluate(scope, budget)

    return render_content(
        node.text,
        node,
        fill=fill,
        evaluate=evaluate,
        language=language,
        default_language=default,
    )


def test_a_templated_title_too_long_is_cut_with_an_ellipsis_and_noted() -> None:
    """A rendered value past its limit is cut to the limit, ending in '…', and noted."""
    said = rendered(
        {"text": "Pick", "buttons": [{"id": "{{slot.id}}", "title": "{{slot.label}}"}]},
        {"slot": {"id": "s1", "label": "Dra. Ana Beatriz, 09:00-09:30"}},
    )
    assert said.content is not None
    assert said.content["buttons"] == [{"id": "s1", "title": "Dra. Ana Beatriz, 0…"}]
    assert len(said.content["buttons"][0]["title"]) == MAX_BUTTON_TITLE
    assert said.truncated == (
        "buttons[0].title rendered 29 characters; cut to 20 (WhatsApp's limit)",
    )


@pytest.mark.parametrize(
    ("fields", "path", "limit"),
    [
        ({"text": "{{v}}"}, ("text",), MAX_BODY),
        (
            {"text": "Hi", "header": "{{v}}", "buttons": [{"id": "a", "title": "A"}]},
            ("header",),
            MAX_HEADER,
        ),
        (
            {"text": "Hi", "footer": "{{v}}", "buttons": [{"id": "a", "title": "A"}]},
            ("footer",),
            MAX_FOOTER,
        ),
        (
            {"text": "Hi", "list": a_list({"title": "{{v}}", "rows": rows(1)})},
            ("list", "sections", 0, "title"),
            MAX_SECTION_TITLE,
        ),
        (
            {"text": "Hi", "list": a_list({"rows": [{"id": "r", "title": "{{v}}"}]})},
            ("list", "sections", 0, "rows", 0, "title"),
            MAX_ROW_TITLE,
        ),
        (
            {
                "text": "Hi",
                "list": a_list({"rows": [{"id": "r", "title": "R", "description": "{{v}}"}]}),
            },
            ("list", "sections", 0, "rows", 0, "description"),
            MAX_ROW_DESCRIPTION,
        ),
        (
            {"text": "Hi", "list": a_list({"rows": rows(1)}, button="{{v}}")},
            ("list", "button"),
            MAX_LIST_BUTTON,
        ),
        (
            {"media": {"kind": "image", "url": "https://x.test/a.png", "caption": "{{v}}"}},
            ("media", "caption"),
            MAX_CAPTION,
        ),
        (
            {"text": "Hi", "buttons": [{"id": "{{v}}", "title": "A"}]},
            ("buttons", 0, "id"),
            MAX_BUTTON_ID,
        ),
    ],
)
def test_every_rendered_limit_is_kept(
    fields: dict[str, Any], path: tuple[str | int, ...], limit: int
) -> None:
    """Each text a template fills is cut to its WhatsApp limit, never a failed step."""
    said = rendered(fields, {"v": "é" * 5_000})
    shown: Any = said.content if said.content is not None else {"text": said.text}
    for part in path:
        shown = shown[part]
    assert shown == "é" * (limit - 1) + ELLIPSIS
    assert len(said.truncated) == 1 and f"cut to {limit}" in said.truncated[0]


SLOTS = [{"id": f"s{i}", "label": f"{8 + i:02d}:00", "doctor": "Dra. Ana"} for i in range(12)]
ROWS_FROM = {
    "text": "Horários",
    "list": a_list(
        {
            "title": "Manhã",
            "rowsFrom": {
                "items": "slots",
                "id": "{{this.id}}",
                "title": "{{this.label}}",
                "description": "{{this.doctor}} ({{@number}})",
            },
        },
        button="Ver horários",
    ),
}


def test_rows_from_builds_one_row_per_item() -> None:
    """rowsFrom makes a row of each item, with this and @number set for it."""
    said = rendered(ROWS_FROM, {"slots": SLOTS[:3]})
    assert said.content is not None and said.truncated == ()
    assert said.content["list"] == {
        "button": "Ver horários",
        "sections": [
            {
                "title": "Manhã",
                "rows": [
                    {"id": "s0", "title": "08:00", "description": "Dra. Ana (1)"},
                    {"id": "s1", "title": "09:00", "description": "Dra. Ana (2)"},
                    {"id": "s2", "title": "10:00", "description": "Dra. Ana (3)"},
                ],
            }
        ],
    }
    assert (
        said.text
        == "Horários\n\n1. 08:00 — Dra. Ana (1)\n2. 09:00 — Dra. Ana (2)\n3. 10:00 — Dra. Ana (3)"
    )


def test_rows_from_more_than_ten_items_shows_ten_and_notes_it() -> None:
    """A service's 12 slots make 10 rows (WhatsApp's limit) and a note saying so."""
    said = rendered(ROWS_FROM, {"slots": SLOTS})
    assert said.content is not None
    shown = said.content["list"]["sections"][0]["rows"]
    assert [r["id"] for r in shown] == [f"s{i}" for i in range(MAX_ROWS)]
    assert said.truncated == ("list has 12 rows; the first 10 are shown (WhatsApp's limit)",)


def test_rows_from_counts_every_item_it_could_not_show() -> None:
    """The note says how many items there were, however many; @first and @last are set."""
    fields = {
        "text": "Pick",
        "list": a_list(
            {
                "rowsFrom": {
                    "items": "slots",
                    "id": "{{this}}",
                    "title": "{{this}}{{#if @first}} first{{/if}}{{#if @last}} last{{/if}}",
                }
            }
        ),
    }
    said = rendered(fields, {"slots": list(range(150))})
    assert said.truncated == ("list has 150 rows; the first 10 are shown (WhatsApp's limit)",)
    said = rendered(fields, {"slots": [7, 8]})
    assert said.content is not None
    assert [r["title"] for r in options_of(said.content)] == ["7 first", "8 last"]


@pytest.mark.parametrize("slots", [None, [], "not a list", {"a": 1}])
def test_rows_from_without_items_sends_the_text(slots: Any) -> None:
    """A missing, empty or non-list variable gives no rows: the list is not sent, its text is."""
    said = rendered(ROWS_FROM, {} if slots is None else {"slots": slots})
    assert said.content is None
    assert said.text == "Horários"
    assert said.truncated == ("list has no rows to show (its items are missing or empty)",)


def test_rows_from_beside_listed_rows_counts_ten_in_all() -> None:
    """Rows listed in one section and built in another share the ten."""
    fields = {
        "text": "Pick",
        "list": a_list(
            {"title": "Fixed", "rows": rows(4)},
            {
                "title": "Built",
                "rowsFrom": {"items": "slots", "id": "{{this.id}}", "title": "{{this.label}}"},
            },
        ),
    }
    said = rendered(fields, {"slots": SLOTS})
    assert said.content is not None
    assert [len(s["rows"]) for s in said.content["list"]["sections"]] == [4, 6]
    assert said.truncated == ("list has 16 rows; the first 10 are shown (WhatsApp's limit)",)


def test_blank_and_repeated_ids_and_titles_are_replaced_and_noted() -> None:
    """WhatsApp refuses blank titles and ids and repeated ids: each is replaced, noted."""
    fields = {
        "text": "Pick",
        "list": a_list(
            {"rowsFrom": {"items": "slots", "id": "{{this.id}}", "title": "{{this.label}}"}}
        ),
    }
    said = rendered(fields, {"slots": [{"id": "a", "label": "A"}, {"id": "a"}, {"label": "C"}]})
    assert said.content is not None
    assert said.content["list"]["sections"][0]["rows"] == [
        {"id": "a", "title": "A"},
        {"id": "a#2", "title": "a#2"},
        {"id": "3", "title": "C"},
    ]
    assert said.truncated == (
        "list.sections[0].rowsFrom[1].id rendered 'a', used twice; 'a#2'",
        "list.sections[0].rowsFrom[1].title rendered empty; 'a#2' shown instead",
        "list.sections[0].rowsFrom[2].id rendered empty; '3' used instead",
    )


def test_a_blank_text_beside_buttons_is_replaced() -> None:
    """Buttons need a text: one that renders blank becomes '…', with a note."""
    said = rendered({"text": "{{missing}}", "buttons": [{"id": "a", "title": "A"}]})
    assert said.content is not None and said.content["text"] == ELLIPSIS
    assert said.truncated == ("text rendered empty; '…' sent (WhatsApp needs a text)",)


def test_a_blank_list_button_is_named_in_the_contacts_language() -> None:
    """A list's button that renders blank reads 'Opções' for a Portuguese speaker."""
    said = rendered(
        {"text": "Pick", "list": a_list({"rows": rows(1)}, button="{{x}}")}, language="pt-BR"
    )
    assert said.content is not None and said.content["list"]["button"] == "Opções"


def test_a_location_from_variables() -> None:
    """Coordinates may be templates; one that is no number shows 0 and says so."""
    fields = {
        "location": {
            "latitude": "{{place.lat}}",
            "longitude": "{{place.lng}}",
            "name": "{{place.name}}",
        }
    }
    said = rendered(fields, {"place": {"lat": -23.561, "lng": "-46.656", "name": "Clínica"}})
    assert said.content is not None
    assert said.content["location"] == {
        "latitude": -23.561,
        "longitude": -46.656,
        "name": "Clínica",
    }
    said = rendered(fields, {"place": {"lat": "north", "lng": 200}})
    assert said.content is not None
    assert said.content["location"] == {"latitude": 0.0, "longitude": 0.0}
    assert said.truncated == (
        "location.latitude rendered 'north', not a latitude: 0 shown",
        "location.longitude rendered '200', not a longitude: 0 shown",
    )


# ----------------------------------------------------------------------------- degradation

MENU = {
    "text": "Como posso ajudar?",
    "header": "Clínica Sorriso",
    "footer": "Responda a qualquer hora",
    "buttons": [{"id": "agendar", "title": "Agendar"}, {"id": "precos", "title": "Preços"}],
}


def test_buttons_on_a_channel_with_lists_become_a_list() -> None:
    """No button support but lists: the buttons become a list's rows, header and footer kept."""
    said = degrade(rendered(MENU), frozenset({"list", "media"}), "pt-BR")
    assert said.content == {
        "type": "list",
        "text": "Como posso ajudar?",
        "header": "Clínica Sorriso",
        "footer": "Responda a qualquer hora",
        "list": {
            "button": "Opções",
            "sections": [
                {
                    "rows": [
                        {"id": "agendar", "title": "Agendar"},
                        {"id": "precos", "title": "Preços"},
                    ]
                }
            ],
        },
    }
    assert said.degraded == ("buttons shown as a list (the channel cannot show buttons)",)


def test_buttons_on_a_text_channel_become_numbered_options() -> None:
    """Neither buttons nor lists: numbered text, header and footer in it, options kept."""
    said = degrade(rendered(MENU), NOTHING, "pt-BR")
    text = (
        "Clínica Sorriso\n\nComo posso ajudar?\n\n1. Agendar\n2. Preços\n\nResponda a qualquer hora"
    )
    assert said.text == text
    assert said.content == {
        "type": "text",
        "text": text,
        "options": [{"id": "agendar", "title": "Agendar"}, {"id": "precos", "title": "Preços"}],
    }
    assert said.degraded == ("buttons shown as numbered options (the channel cannot show buttons)",)


def test_a_list_on_a_text_channel_becomes_numbered_options() -> None:
    """A list where lists cannot be shown: its rows numbered, descriptions after a dash."""
    said = degrade(rendered(ROWS_FROM, {"slots": SLOTS[:2]}), frozenset({"buttons"}))
    assert said.content == {
        "type": "text",
        "text": "Horários\n\n1. 08:00 — Dra. Ana (1)\n2. 09:00 — Dra. Ana (2)",
        "options": [{"id": "s0", "title": "08:00"}, {"id": "s1", "title": "09:00"}],
    }
    assert said.degraded == ("list shown as numbered options (the channel cannot show lists)",)


def test_media_on_a_text_channel_is_its_caption_and_link() -> None:
    """No media support: the caption, then the URL."""
    fields = {"media": {"kind": "image", "url": "https://x.test/card.png", "caption": "Seu cartão"}}
    said = degrade(rendered(fields), frozenset({"buttons", "list"}))
    assert said.content == {"type": "text", "text": "Seu cartão\nhttps://x.test/card.png"}
    assert said.degraded == ("media shown as its caption and link (the channel cannot show media)",)


def test_a_location_on_a_text_channel_is_its_name_address_and_map_link() -> None:
    """No location support: name, address and a map link any phone opens."""
    fields = {
        "location": {
            "latitude": -23.5613,
            "longitude": -46.6565,
            "name": "Clínica",
            "address": "Av. Paulista, 1000",
        }
    }
    said = degrade(rendered(fields), frozenset({"media"}))
    link = "https://www.google.com/maps/search/?api=1&query=-23.561300%2C-46.656500"
    assert map_link(-23.5613, -46.6565) == link
    assert said.content == {"type": "text", "text": f"Clínica\nAv. Paulista, 1000\n{link}"}
    assert said.degraded == ("location shown as its name, address and a map link",)


def test_what_the_channel_shows_is_not_degraded() -> None:
    """Every capability present: the rendered message goes out as it is."""
    said = rendered(MENU)
    assert degrade(said, CAPABILITIES) is said
    assert degrade(Said("plain"), NOTHING) == Said("plain")


def test_more_than_three_buttons_become_a_list() -> None:
    """Buttons past three (a plugin's node, not a published flow's) are shown as a list."""
    node = node_of({"text": "Pick", "buttons": buttons(5)})
    said = render_content(
        node.text,
        node,
        fill=lambda t, e: t,
        evaluate=lambda s: None,
        language="en",
        default_language=None,
    )
    shown = degrade(said, CAPABILITIES, "en")
    assert shown.content is not None and shown.content["type"] == "list"
    assert [r["id"] for r in options_of(shown.content)] == [f"b{i}" for i in range(5)]
    assert shown.degraded == ("buttons shown as a list (more than 3 buttons)",)


def test_button_ids_too_long_for_list_rows_become_numbered_text() -> None:
    """A button id past a row's 200 characters cannot be a row: numbered text keeps it whole."""
    said = rendered({"text": "Pick", "buttons": [{"id": "{{v}}", "title": "A"}]}, {"v": "i" * 250})
    shown = degrade(said, frozenset({"list"}))
    assert shown.content is not None and shown.content["type"] == "text"
    assert shown.content["options"] == [{"id": "i" * 250, "title": "A"}]
    assert shown.degraded == (
        "buttons shown as numbered options (the channel cannot show buttons, and an id is"
        " longer than a list row's 200 characters)",
    )


def test_numbered_text_stays_within_4096_characters() -> None:
    """A long text with its options numbered is cut in its text, never in its options."""
    fields = {
        "text": "{{v}}",
        "list": a_list(
            {
                "rows": [
                    {"id": f"r{i}", "title": "t" * 24, "description": "d" * 72} for i in range(10)
                ]
            }
        ),
    }
    said = degrade(rendered(fields, {"v": "x" * MAX_BODY}), NOTHING)
    assert len(said.text) == MAX_BODY
    assert said.text.endswith("\n10. " + "t" * 24 + " — " + "d" * 72)
    assert f"x{ELLIPSIS}\n\n1. " in said.text
    assert said.truncated[-1].startswith("the message as text has ")


# ----------------------------------------------------------------------------- languages

TEXTS = {"pt-BR": "Olá", "en": "Hello", "es": "Hola"}


@pytest.mark.parametrize(
    ("language", "default", "expected"),
    [
        ("en", None, "Hello"),  # the exact tag
        ("EN", None, "Hello"),  # tags are case-insensitive
        ("pt-BR", "en", "Olá"),
        ("pt", None, "Olá"),  # the same primary language: pt finds pt-BR
        ("en-GB", None, "Hello"),  # and en-GB finds en
        ("fr", "es", "Hola"),  # no French: the flow's default
        ("fr", "es-MX", "Hola"),  # the default matched like any language
        (None, "en", "Hello"),
        ("fr", None, "Olá"),  # neither: the first written
        (None, None, "Olá"),
        ("fr", "de", "Olá"),
    ],
)
def test_choose_language(language: str | None, default: str | None, expected: str) -> None:
    """Exact tag, then the same primary language either way, then the default, then the first."""
    assert choose_language(TEXTS, language, default) == expected


def test_a_plain_text_is_every_language() -> None:
    """A text that is not a map is said whatever the language."""
    assert choose_language("Oi", "en", "es") == "Oi"


def test_every_text_of_a_message_speaks_the_contacts_language() -> None:
    """Text, header, buttons, rows and captions all follow sys.language."""
    fields = {
        "text": {"pt-BR": "Escolha", "en": "Choose"},
        "header": {"pt-BR": "Clínica", "en": "Clinic"},
        "buttons": [{"id": "yes", "title": {"pt-BR": "Sim", "en": "Yes"}}],
    }
    said = rendered(fields, language="en-US", default="pt-BR")
    assert said.content is not None
    assert (said.content["text"], said.content["header"], said.content["buttons"][0]["title"]) == (
        "Choose",
        "Clinic",
        "Yes",
    )
    said = rendered(fields, language=None, default="pt-BR")
    assert said.content is not None and said.content["buttons"][0]["title"] == "Sim"


# ----------------------------------------------------------------------------- options


def test_options_of_each_shape() -> None:
    """The options a message offers, in order: buttons, rows across sections, text's kept ones."""
    assert options_of({"type": "buttons", "buttons": [{"id": "a", "title": "A"}]}) == [
        {"id": "a", "title": "A"}
    ]
    content = {
        "type": "list",
        "list": {"button": "b", "sections": [{"rows": rows(2)}, {"rows": rows(1, "q")}]},
    }
    assert [o["id"] for o in options_of(content)] == ["r0", "r1", "q0"]
    assert options_of({"type": "text", "text": "x"}) == []
    assert plain(content) == "1. Row 0\n2. Row 1\n3. Row 0"


# ----------------------------------------------------------------------------- the schema

NEW_MODELS = ("Button", "Row", "RowsFrom", "Section", "ListSpec", "Media", "Location")
#: the properties issue 15 added to older models (their other properties are issue 20's)
NEW_PROPERTIES = {
    "MessageNode": ("text", "header", "footer", "buttons", "list", "media", "location", "template"),
    "QuestionNode": (
        "text",
        "invalidText",
        "header",
        "footer",
        "buttons",
        "list",
        "media",
        "location",
        "template",
    ),
    "HandoffNode": ("text", "header", "footer", "buttons", "list", "media", "location", "template"),
    "EndNode": ("text", "header", "footer", "buttons", "list", "media", "location", "template"),
    "AnswerRule": ("kind", "accept"),
}


def test_the_schema_describes_every_new_field() -> None:
    """Every property of the new models, and each new property of older ones, is described."""
    schema = flow_json_schema()
    defs = schema["$defs"]
    missing = []
    for model in NEW_MODELS:
        properties = defs[model]["properties"]
        assert properties, model
        missing += [
            f"{model}.{name}" for name, prop in properties.items() if not prop.get("description")
        ]
    for model, names in NEW_PROPERTIES.items():
        properties = defs[model]["properties"]
        missing += [f"{model}.{name}" for name in names if not properties[name].get("description")]
    if not schema["properties"]["defaultLanguage"].get("description"):
        missing.append("Flow.defaultLanguage")
    assert missing == []


def test_the_new_content_fields_are_in_the_schema_of_every_speaking_node() -> None:
    """What the walk above reads is every content field there is (a new one cannot slip by)."""
    content = {info.alias or name for name, info in ContentFields.model_fields.items()}
    assert content == {"header", "footer", "buttons", "list", "media", "location", "template"}
    defs = flow_json_schema()["$defs"]
    for model in ("MessageNode", "QuestionNode", "HandoffNode", "EndNode"):
        assert content <= set(defs[model]["properties"]), model
    assert set(NEW_PROPERTIES["MessageNode"]) == content | {"text"}


# ----------------------------------------------------------------------------- properties

TAGS = ("pt-BR", "pt", "en", "en-US", "es")
VARIABLES = ("v1", "v2", "v3")


def _long(n: int) -> st.SearchStrategy[str]:
    return st.builds(lambda c, k: c * k, st.sampled_from("xé😀 {}"), st.integers(0, n))


plain_texts = st.one_of(st.text(max_size=30), _long(MAX_BODY))
templates = st.one_of(
    st.sampled_from(
        [
            "{{v1}}",
            "{{ v2 }} and {{v3}}",
            "Slot {{this.label}} #{{@number}}",
            "{{this}}",
            "{{missing}}",
            "{{#each slots}}{{@number}}. {{this.label}} {{/each}}",
            "{{ upper(v1) }}",
            "{{",
            "{{v1",
        ]
    ),
    st.builds(lambda a, b: f"{a}{{{{v1}}}}{b}", st.text(max_size=30), st.text(max_size=30)),
)
texts = st.one_of(plain_texts, templates)
localized = st.one_of(texts, st.dictionaries(st.sampled_from(TAGS), texts, min_size=1, max_size=3))
ids = st.one_of(
    st.sampled_from(["a", "b", "a#2", "{{v1}}", "{{this.id}}", "{{this}}", "1", " "]),
    st.text(min_size=1, max_size=20),
    _long(300).filter(bool),
)
button = st.fixed_dictionaries(
    {"id": ids, "title": localized},
    optional={"synonyms": st.lists(st.text(max_size=10), max_size=3)},
)
row = st.fixed_dictionaries({"id": ids, "title": localized}, optional={"description": localized})
rows_from = st.fixed_dictionaries(
    {
        "items": st.sampled_from(["slots", "v1", "missing", "slots[0]", "[v1, v2]"]),
        "id": ids,
        "title": localized,
    },
    optional={"description": localized},
)
section = st.one_of(
    st.fixed_dictionaries({"rows": st.lists(row, max_size=12)}, optional={"title": localized}),
    st.fixed_dictionaries({"rowsFrom": rows_from}, optional={"title": localized}),
)
list_spec = st.fixed_dictionaries(
    {"button": localized, "sections": st.lists(section, min_size=1, max_size=12)}
)
media = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["image", "video", "audio", "document", "sticker"]),
        "url": st.sampled_from(["https://x.test/a.png", "https://x.test/{{v1}}", "{{v2}}"]),
    },
    optional={"caption": localized, "filename": st.sampled_from(["card.pdf", "{{v1}}.pdf"])},
)
coordinate = st.one_of(
    st.floats(-90, 90, allow_nan=False),
    st.sampled_from(["{{v1}}", "{{v2}}", " {{v3}} "]),
)
location = st.fixed_dictionaries(
    {"latitude": coordinate, "longitude": coordinate},
    optional={"name": localized, "address": localized},
)
part = st.one_of(
    st.fixed_dictionaries({"buttons": st.lists(button, min_size=1, max_size=12)}),
    st.fixed_dictionaries({"list": list_spec}),
    st.fixed_dictionaries({"media": media}),
    st.fixed_dictionaries({"location": location}),
    st.just({}),
)
node_fields = st.builds(
    lambda p, extra: p | extra,
    part,
    st.fixed_dictionaries(
        {}, optional={"text": localized, "header": localized, "footer": localized}
    ),
)
values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=True),
        st.text(max_size=30),
        _long(5_000),
        st.sampled_from(["12.5", "-46.65", "abc", "1e400", "nan"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=14),
        st.dictionaries(st.sampled_from(["id", "label", "x"]), inner, max_size=3),
    ),
    max_leaves=30,
)
variables = st.fixed_dictionaries(dict.fromkeys(VARIABLES, values), optional={"slots": values})
capabilities = st.sets(st.sampled_from(sorted(CAPABILITIES))).map(frozenset)
languages = st.one_of(st.none(), st.sampled_from((*TAGS, "fr", "EN")))


def _shown_within_limits(said: Said, renders: frozenset[str]) -> None:
    """Everything WhatsApp bounds in a message, checked on what is sent."""
    assert len(said.text) <= MAX_BODY
    content = said.content
    if content is None:
        return
    kind = content["type"]
    assert kind == "text" or kind in renders, (kind, renders)
    assert len(content["text"]) <= MAX_BODY
    for name, limit in (("header", MAX_HEADER), ("footer", MAX_FOOTER)):
        if name in content:
            assert (
                kind in ("buttons", "list")
                and content[name].strip()
                and len(content[name]) <= limit
            )
    if kind in ("buttons", "list"):
        assert content["text"].strip()
    if kind == "buttons":
        shown = content["buttons"]
        assert 1 <= len(shown) <= MAX_BUTTONS
        assert len({b["id"] for b in shown}) == len(shown)
        for b in shown:
            assert b["id"].strip() and len(b["id"]) <= MAX_BUTTON_ID
            assert b["title"].strip() and len(b["title"]) <= MAX_BUTTON_TITLE
    elif kind == "list":
        spec = content["list"]
        assert spec["button"].strip() and len(spec["button"]) <= MAX_LIST_BUTTON
        sections = spec["sections"]
        assert 1 <= len(sections) <= MAX_SECTIONS
        every = [r for s in sections for r in s["rows"]]
        assert 1 <= len(every) <= MAX_ROWS and all(s["rows"] for s in sections)
        assert len({r["id"] for r in every}) == len(every)
        for s in sections:
            if len(sections) > 1 or "title" in s:
                assert s["title"].strip() and len(s["title"]) <= MAX_SECTION_TITLE
        for r in every:
            assert r["id"].strip() and len(r["id"]) <= MAX_ROW_ID
            assert r["title"].strip() and len(r["title"]) <= MAX_ROW_TITLE
            assert len(r.get("description", "")) <= MAX_ROW_DESCRIPTION
    elif kind == "media":
        shown = content["media"]
        assert len(shown["url"]) <= MAX_URL
        assert len(shown.get("caption", "")) <= MAX_CAPTION
        assert len(shown.get("filename", "")) <= MAX_FILENAME
    elif kind == "location":
        place = content["location"]
        assert -90 <= place["latitude"] <= 90 and -180 <= place["longitude"] <= 180
    else:
        assert kind == "text" and set(content) <= {"type", "text", "options"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(node_fields, variables, capabilities, languages, languages)
def test_rendering_never_raises_and_never_breaks_a_limit(
    fields: dict[str, Any],
    scope: dict[str, Any],
    renders: frozenset[str],
    language: str | None,
    default: str | None,
) -> None:
    """For any content and variables, on any channel, what is sent keeps every WhatsApp limit."""
    try:
        said = rendered(fields, scope, language=language, default=default)
    except (LimitExceeded, ExpressionError):
        return  # the budget's bound, or a template's own error: the step's, as in a condition
    _shown_within_limits_before_degrading(said)
    shown = degrade(said, renders, language)
    _shown_within_limits(shown, renders)
    if said.content is not None:
        # degrading keeps the options, so a reply by id or by number finds the same one
        assert [o["id"] for o in options_of(shown.content or {})] == [
            o["id"] for o in options_of(said.content)
        ]
        assert shown.truncated[: len(said.truncated)] == said.truncated


def _shown_within_limits_before_degrading(said: Said) -> None:
    """Before degradation every part is within its limit too; only more than 3 buttons
    wait for degrade to become a list."""
    content = said.content
    if (
        content is not None
        and content["type"] == "buttons"
        and len(content["buttons"]) > MAX_BUTTONS
    ):
        assert len(content["buttons"]) <= MAX_ROWS
        return
    _shown_within_limits(said, CAPABILITIES)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {"text": localized, "buttons": st.lists(button, min_size=1, max_size=3)},
        optional={"header": localized, "footer": localized},
    ),
    variables,
    languages,
)
def test_a_question_renders_like_a_message(
    fields: dict[str, Any], scope: dict[str, Any], language: str | None
) -> None:
    """A choice question's buttons render the same way, within the limits, on a text channel too."""
    node = QuestionNode.model_validate(
        {"id": "q", "type": "question", "variable": "choice", "validate": {"kind": "choice"}}
        | fields
    )
    budget = Budget()
    try:
        said = render_content(
            node.text,
            node,
            fill=lambda t, e: render(t, scope if e is None else {**scope, **e}, budget),
            evaluate=lambda s: compile_expression(s).evaluate(scope, budget),
            language=language,
            default_language="pt-BR",
        )
    except (LimitExceeded, ExpressionError):
        return
    shown = degrade(said, NOTHING, language)
    _shown_within_limits(shown, NOTHING)
    assert shown.content is not None and len(shown.content["options"]) == len(fields["buttons"])


@pytest.mark.parametrize("path", ["sys", "sys.now", "sys.x.y"])
def test_operators_and_handbacks_cannot_write_under_sys(path: str) -> None:
    """The one check of what an operator may write (PATCH .../variables, trilha's CLI,
    a handback's variables) refuses sys.* as publishing does; names beside it pass."""
    assert variable_path_problem(path) == "sys.* is read-only (trilha sets it)"
    assert variable_path_problem("system.x") is None
