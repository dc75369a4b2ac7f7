"""Validation of a contact's answer to a question node."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trilha.core.answers import Accepted, Refused, check_answer
from trilha.core.flow import AnswerRule


def rule(**kwargs: Any) -> AnswerRule:
    return AnswerRule.model_validate(kwargs)


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        ("text", "  Ana  ", "Ana"),
        ("number", "42", 42),
        ("number", "3,5", 3.5),
        ("number", "-1.25", -1.25),
        ("email", "Ana@Example.COM", "ana@example.com"),
        ("phone", "(11) 98765-4321", "11987654321"),
        ("phone", "+55 11 98765 4321", "+5511987654321"),
    ],
)
def test_accepts_and_normalises(kind: str, text: str, value: Any) -> None:
    """Valid answers are accepted in a normalised form."""
    assert check_answer(rule(kind=kind), text) == Accepted(value)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("number", "abc"),
        ("number", "1.2.3"),
        ("email", "ana@"),
        ("email", "a b@c.d"),
        ("phone", "123"),
        ("phone", "call me"),
        ("text", "   "),
    ],
)
def test_refuses_invalid(kind: str, text: str) -> None:
    """Invalid answers are refused with a reason."""
    assert isinstance(check_answer(rule(kind=kind), text), Refused)


def test_number_bounds() -> None:
    """min and max bound a number answer."""
    r = rule(kind="number", min=1, max=10)
    assert check_answer(r, "10") == Accepted(10)
    assert check_answer(r, "0") == Refused("less than 1")
    assert check_answer(r, "11") == Refused("greater than 10")


def test_regex_must_match_whole_answer() -> None:
    """A regex rule matches the whole (trimmed) answer, not a part of it."""
    r = rule(kind="regex", pattern="[0-9]{11}")
    assert check_answer(r, "12345678909") == Accepted("12345678909")
    assert isinstance(check_answer(r, "x12345678909"), Refused)


def test_choice_by_value_label_synonym_number_and_accents() -> None:
    """A choice accepts the value, label, a synonym or the option number, ignoring case
    and accents."""
    r = rule(kind="choice", options=["Sim", {"value": "nao", "label": "Não", "synonyms": ["n"]}])
    assert check_answer(r, "sim") == Accepted("Sim")
    assert check_answer(r, "NÃO") == Accepted("nao")
    assert check_answer(r, "nao!") == Accepted("nao")
    assert check_answer(r, "n") == Accepted("nao")
    assert check_answer(r, "2") == Accepted("nao")
    assert check_answer(r, "3") == Refused("not one of the options")


def test_length_limits() -> None:
    """minLength and maxLength bound a text answer."""
    r = rule(kind="text", minLength=2, maxLength=5)
    assert isinstance(check_answer(r, "a"), Refused)
    assert isinstance(check_answer(r, "abcdef"), Refused)
    assert check_answer(r, "abc") == Accepted("abc")


@given(st.text(max_size=200))
def test_never_raises(text: str) -> None:
    """Whatever a contact types, validation answers Accepted or Refused."""
    for kind in ("text", "number", "email", "phone"):
        assert isinstance(check_answer(rule(kind=kind), text), Accepted | Refused)
    choice = rule(kind="choice", options=["a", "b"])
    assert isinstance(check_answer(choice, text), Accepted | Refused)
