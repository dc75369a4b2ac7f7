"""``is_open`` and ``next_open`` in expressions and templates, and how publishing tells which
calendars a flow reads (only those are loaded while it runs)."""

from __future__ import annotations

from typing import Any

import pytest

from trilha.core.calendars import DAYS
from trilha.core.expressions import calendar_names, compile_expression, evaluate
from trilha.core.flow import CalendarUse, calendars_used, load_flow, parse_flow
from trilha.core.templates import lint_template, render
from trilha.errors import ExpressionError

CLINIC: dict[str, Any] = {
    "timeZone": "America/Sao_Paulo",
    "hours": {day: [["08:00", "12:00"], ["13:00", "18:00"]] for day in DAYS[:5]},
    "holidays": ["2025-06-19"],
}
NEW_YORK: dict[str, Any] = {"timeZone": "America/New_York", "hours": {"sat": [["10:00", "14:00"]]}}


def variables(now: str, **extra: Any) -> dict[str, Any]:
    """What the engine gives a step: sys.now, and the institution's calendars."""
    return {"sys": {"now": now, "calendars": {"clinic": CLINIC, "ny-store": NEW_YORK}}, **extra}


MONDAY_9 = "2025-06-09T12:00:00.000Z"  # 09:00 in São Paulo
MONDAY_LUNCH = "2025-06-09T15:30:00.000Z"  # 12:30
FRIDAY_EVENING = "2025-06-06T22:00:00.000Z"  # 19:00


@pytest.mark.parametrize(
    ("source", "now", "expected"),
    [
        ("is_open('clinic')", MONDAY_9, True),
        ("is_open('clinic')", MONDAY_LUNCH, False),
        ("not is_open('clinic')", FRIDAY_EVENING, True),
        ("next_open('clinic')", MONDAY_9, "2025-06-09T09:00:00-03:00"),
        ("next_open('clinic')", MONDAY_LUNCH, "2025-06-09T13:00:00-03:00"),
        ("next_open('clinic')", FRIDAY_EVENING, "2025-06-09T08:00:00-03:00"),
        # another zone, in its own offset (daylight saving time in June)
        ("next_open('ny-store')", MONDAY_9, "2025-06-14T10:00:00-04:00"),
        # a moment given: with an offset, a wall-clock time or a date of the calendar's zone
        ("is_open('clinic', '2025-06-10T11:30:00Z')", MONDAY_9, True),  # 08:30 local
        ("is_open('clinic', '2025-06-10T08:30')", MONDAY_9, True),
        ("is_open('clinic', '2025-06-19T10:00')", MONDAY_9, False),  # the holiday
        ("next_open('clinic', '2025-06-19')", MONDAY_9, "2025-06-20T08:00:00-03:00"),
        ("next_open('clinic', add_days(now(), 1))", FRIDAY_EVENING, "2025-06-09T08:00:00-03:00"),
        ("is_open('clinic', null)", MONDAY_9, None),
        ("next_open('clinic', null)", MONDAY_9, None),
        # composed with the date functions
        ("format_date(next_open('clinic'), 'EEEE HH:mm')", FRIDAY_EVENING, "Monday 08:00"),
        ("weekday(next_open('clinic'))", FRIDAY_EVENING, 1),
        # a name computed at run time
        ("is_open(office)", MONDAY_9, True),
    ],
)
def test_calendar_functions(source: str, now: str, expected: Any) -> None:
    """``is_open``/``next_open`` answer from sys.calendars at sys.now (or the moment given);
    next_open is an ISO-8601 text in the calendar's zone."""
    assert evaluate(source, variables(now, office="clinic")) == expected


def test_a_calendar_that_never_opens_has_no_next_opening() -> None:
    context = variables(MONDAY_9)
    context["sys"]["calendars"]["closed"] = {"timeZone": "UTC"}
    assert evaluate("next_open('closed')", context) is None
    assert evaluate("is_open('closed')", context) is False


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("is_open('dentist')", "is_open(): unknown calendar 'dentist' at column 1"),
        ("1 + next_open('dentist')", "next_open(): unknown calendar 'dentist' at column 5"),
        ("is_open(office)", "is_open(): unknown calendar 'nope' at column 1"),
        ("is_open(count)", "is_open() expects a calendar's name, got number at column 1"),
        ("is_open('broken')", "is_open(): calendar 'broken' cannot be used: timeZone:"),
        ("is_open('clinic', 'soon')", "is_open(): 'soon' is not an ISO-8601 date at column 1"),
        ("next_open('clinic', '0001-01-01T00:00Z')", "next_open(): 0001-01-01T00:00:00+00:00"),
    ],
)
def test_calendar_errors_name_the_calendar(source: str, message: str) -> None:
    """An unknown calendar (another institution's is unknown too) is an error naming it."""
    context = variables(MONDAY_9, office="nope", count=3)
    context["sys"]["calendars"]["broken"] = {"timeZone": "Atlantis/Capital"}
    with pytest.raises(ExpressionError) as caught:
        evaluate(source, context)
    assert str(caught.value).startswith(message)


def test_without_calendars_every_name_is_unknown() -> None:
    """Evaluated with no sys.calendars (a flow the engine thought named none) is an error,
    never a guess; without sys.now the time is missing, as for now()."""
    with pytest.raises(ExpressionError, match="unknown calendar 'clinic'"):
        evaluate("is_open('clinic')", {"sys": {"now": MONDAY_9}})
    with pytest.raises(ExpressionError, match=r"next_open\(\) needs sys.now"):
        evaluate("next_open('clinic')", {"sys": {"calendars": {"clinic": CLINIC}}})


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("is_open('the clinic')", "is_open() names a calendar: 'the clinic' is not a calendar's"),
        ("next_open('')", "next_open() names a calendar: '' is not a calendar's name"),
        ("is_open(3)", "is_open() names a calendar: number is not a calendar's name"),
        ("is_open('a' + 'b')", None),  # computed: checked when it runs
        ("is_open()", "is_open() takes 1 or 2 arguments, got 0"),
        ("next_open('c', now(), 3)", "next_open() takes 1 or 2 arguments, got 3"),
    ],
)
def test_a_calendar_name_written_in_the_flow_is_checked_when_parsed(
    source: str, message: str | None
) -> None:
    """A constant name of a bad shape is refused at publish time (parsing), not at run time."""
    if message is None:
        compile_expression(source)
        return
    with pytest.raises(ExpressionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_expression(source)


def test_calendar_names_lists_the_names_called() -> None:
    expression = compile_expression("is_open('a') and (next_open(x) > now() or is_open('b'))")
    assert sorted(calendar_names(expression), key=str) == [None, "a", "b"]
    assert list(calendar_names(compile_expression("now() == 'is_open'"))) == []


def test_templates_say_business_hours() -> None:
    """Templates call the same functions, and lint refuses a bad name."""
    text = (
        "{{#if is_open('clinic')}}We are open.{{else}}We open"
        " {{format_date(next_open('clinic'), 'EEEE, HH:mm')}}.{{/if}}"
    )
    assert render(text, variables(FRIDAY_EVENING)) == "We open Monday, 08:00."
    assert render(text, variables(MONDAY_9)) == "We are open."
    assert lint_template("{{is_open('no way')}}")[0].severity == "error"


# -------------------------------------------------------------------------------- flows


def flow(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"id": "f", "start": nodes[0]["id"], "nodes": [*nodes, {"id": "end", "type": "end"}]}


def test_calendars_used_by_a_flow() -> None:
    """Publishing tells which calendars a flow reads: a wait_until_open, a condition, a set
    expression, a template; a name computed at run time means any of them."""
    used = load_flow(
        flow(
            {"id": "w", "type": "wait_until_open", "calendar": "desk", "next": "c"},
            {
                "id": "c",
                "type": "condition",
                "branches": [{"when": "is_open('clinic')", "next": "m"}],
                "default": "s",
            },
            {"id": "s", "type": "set", "expressions": {"at": "next_open('lab')"}, "next": "m"},
            {
                "id": "m",
                "type": "message",
                "text": {"pt-BR": "Abrimos {{next_open('pharmacy')}}", "en": "Open"},
                "next": "end",
            },
        )
    )
    assert calendars_used(used) == CalendarUse(frozenset({"desk", "clinic", "lab", "pharmacy"}))
    assert calendars_used(used) is calendars_used(used)  # worked out once per flow
    dynamic = load_flow(
        flow({"id": "c", "type": "condition", "branches": [{"when": "is_open(x)", "next": "end"}]})
    )
    assert calendars_used(dynamic) == CalendarUse(frozenset(), dynamic=True)
    assert calendars_used(dynamic)
    plain = load_flow(
        flow({"id": "m", "type": "message", "text": "Hi {{name}} ({{len(name)}})", "next": "end"})
    )
    assert not calendars_used(plain)


@pytest.mark.parametrize(
    ("node", "path", "says"),
    [
        (
            {"id": "w", "type": "wait_until_open", "calendar": "my clinic", "next": "end"},
            "nodes[0].calendar",
            "'my clinic' is not a calendar's name",
        ),
        (
            {"id": "w", "type": "wait_until_open", "next": "end"},
            "nodes[0].calendar",
            "missing",
        ),
        (
            {
                "id": "c",
                "type": "condition",
                "branches": [{"when": "is_open('x y')", "next": "end"}],
            },
            "nodes[0].branches[0].when",
            "is_open() names a calendar",
        ),
        (
            {"id": "m", "type": "message", "text": "{{next_open('a/b')}}", "next": "end"},
            "nodes[0].text",
            "next_open() names a calendar",
        ),
    ],
)
def test_publish_checks_the_calendar_names_shape(
    node: dict[str, Any], path: str, says: str
) -> None:
    _, found = parse_flow(flow(node))
    assert any(p.path == path and says in p.message for p in found), found
