"""`{{ path }}` rendering of messages, request bodies and headers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trilha.core.templates import render, render_value, template_paths, to_text

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
        "{{ 1+1 }}",
        "{{",
        "{{ customer.name",
        "customer.name }}",
        "{{ customer name }}",
        "{{ customer. }}",
        "{{ lower(customer.name) }}",
        "{{ customer['name'] }}",
        "{ customer.name }",
        "{{}}",
    ],
)
def test_text_that_is_not_a_placeholder_is_left_alone(template: str) -> None:
    """Anything that is not exactly a {{path}} stays as written: templates run no code."""
    assert render(template, VARIABLES) == template


def test_rendered_values_are_not_rendered_again() -> None:
    """A value that itself contains a placeholder is inserted literally, not expanded."""
    variables = {"answer": "{{secret}}", "secret": "hidden"}
    assert render("you said {{answer}}", variables) == "you said {{secret}}"


def test_dunder_paths_are_inert() -> None:
    """A dunder path never reaches Python attributes; it renders as a missing value."""
    assert render("{{ customer.__class__ }}|{{ __import__ }}", VARIABLES) == "|"


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
    template = "{{ b.c }} {{a}} {{b.c}} {{ 1+1 }} {{items.0.name}} {{"
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


@given(st.text())
def test_render_never_raises_on_arbitrary_templates(template: str) -> None:
    """Rendering arbitrary text against JSON data always returns a string."""
    assert isinstance(render(template, VARIABLES), str)
