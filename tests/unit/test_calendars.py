"""Business hours in the core: what a calendar may say, when it is open, when it next opens
(weekly hours, holidays, daylight saving time in both directions, the search's bound)."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from trilha.core.calendars import (
    DAYS,
    HORIZON_DAYS,
    MAX_HOLIDAYS,
    MAX_INTERVALS,
    Calendar,
    CalendarDefinition,
    CalendarError,
    calendar_from_wire,
    compile_calendar,
    error_field,
    is_open,
    next_open,
)

SP = ZoneInfo("America/Sao_Paulo")
NY = ZoneInfo("America/New_York")
LISBON = ZoneInfo("Europe/Lisbon")

CLINIC: dict[str, Any] = {
    "timeZone": "America/Sao_Paulo",
    "hours": {
        **{day: [["08:00", "12:00"], ["13:00", "18:00"]] for day in DAYS[:5]},
        "sat": [["08:00", "12:00"]],
    },
    "holidays": [
        "2025-12-25",
        {"date": "2025-12-24", "name": "Véspera de Natal", "hours": [["08:00", "11:00"]]},
    ],
}


def calendar(data: dict[str, Any] | None = None, **changes: Any) -> Calendar:
    return compile_calendar(CalendarDefinition.model_validate((data or CLINIC) | changes))


def problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        CalendarDefinition.model_validate(data)
    return [(error_field(tuple(e["loc"])), e["msg"]) for e in caught.value.errors()]


# ------------------------------------------------------------------------ the definition


@pytest.mark.parametrize(
    ("hours", "field", "says"),
    [
        ({"mon": [["08:00", "12:00"], ["11:00", "13:00"]]}, "hours.mon", "starts before"),
        ({"mon": [["13:00", "18:00"], ["08:00", "12:00"]]}, "hours.mon", "in order"),
        ({"tue": [["08:00", "25:00"]]}, "hours.tue[0]", "'25:00' is not a time of day"),
        ({"tue": [["8:00", "12:00"]]}, "hours.tue[0]", "'8:00' is not a time of day"),
        ({"wed": [["12:00", "08:00"]]}, "hours.wed[0]", "ends before it starts"),
        ({"wed": [["10:00", "10:00"]]}, "hours.wed[0]", "ends before it starts"),
        ({"thu": [["24:00", "24:00"]]}, "hours.thu[0]", "24:00 may only end"),
        ({"fri": [["08:00"]]}, "hours.fri[0]", "at least 2 items"),
        ({"fri": [["08:00", "09:00", "10:00"]]}, "hours.fri[0]", "at most 2 items"),
        ({"monday": [["08:00", "12:00"]]}, "hours.monday", "Extra inputs"),
        (
            {"sat": [["00:00", "00:01"]] * (MAX_INTERVALS + 1)},
            "hours.sat",
            f"at most {MAX_INTERVALS} items",
        ),
    ],
)
def test_bad_hours_are_refused_naming_the_interval(
    hours: dict[str, Any], field: str, says: str
) -> None:
    """Intervals are times of day, ordered and apart; the error names the day or interval."""
    found = problems({"timeZone": "UTC", "hours": hours})
    assert any(where == field and says in message for where, message in found), found


def test_touching_intervals_and_midnight_are_allowed() -> None:
    """One interval may end when the next starts, and 24:00 ends a day."""
    cal = calendar({"timeZone": "UTC", "hours": {"mon": [["00:00", "12:00"], ["12:00", "24:00"]]}})
    assert cal.weekly[0] == ((0, 720), (720, 1440))


@pytest.mark.parametrize(
    ("zone", "says"),
    [
        ("Mars/Olympus", "not an IANA time zone"),
        ("America", "not an IANA time zone"),
        ("../../etc/passwd", "not an IANA time zone"),
        ("/usr/share/zoneinfo/UTC", "not an IANA time zone"),
        ("-03:00", "not an IANA time zone"),
        ("localtime", "not an IANA time zone"),  # the machine's own, whatever it is
        ("", "at least 1 character"),
        ("A/" + "b" * 70, "at most 64 characters"),
    ],
)
def test_the_time_zone_is_an_iana_name(zone: str, says: str) -> None:
    """Only IANA names (zoneinfo, with tzdata) are zones; a path or an offset is not."""
    found = problems({"timeZone": zone})
    assert found[0][0] == "timeZone" and says in found[0][1], found


def test_holidays_are_dates_listed_once() -> None:
    """A holiday is a real date, once; a date alone is a day closed."""
    assert problems({"timeZone": "UTC", "holidays": ["2025-02-30"]}) == [
        ("holidays[0].date", "'2025-02-30' is not a date (YYYY-MM-DD)")
    ]
    assert problems({"timeZone": "UTC", "holidays": ["2025-03-01", {"date": "2025-03-01"}]}) == [
        ("holidays", "2025-03-01 is listed twice")
    ]
    assert problems({"timeZone": "UTC", "holidays": [{"date": "2025-03-01", "open": True}]})[0][
        0
    ] == ("holidays[0].open")
    found = problems({"timeZone": "UTC", "holidays": ["2025-01-01"] * (MAX_HOLIDAYS + 1)})
    assert found[0][0] == "holidays" and f"at most {MAX_HOLIDAYS}" in found[0][1]
    bad_hours = {"date": "2025-03-01", "hours": [["10:00", "09:00"]]}
    assert problems({"timeZone": "UTC", "holidays": [bad_hours]})[0][0] == "holidays[0].hours[0]"


def test_the_wire_form_is_canonical() -> None:
    """Every day is listed, holidays are objects sorted by date: what GET shows and PUT takes."""
    wire = CalendarDefinition.model_validate(CLINIC).wire()
    assert wire == {
        "timeZone": "America/Sao_Paulo",
        "hours": CLINIC["hours"] | {"sun": []},
        "holidays": [
            {"date": "2025-12-24", "name": "Véspera de Natal", "hours": [["08:00", "11:00"]]},
            {"date": "2025-12-25"},
        ],
    }
    assert CalendarDefinition.model_validate(wire).wire() == wire
    assert CalendarDefinition.model_validate({"time_zone": "UTC"}).wire()["timeZone"] == "UTC"


def test_a_wire_form_is_read_once_and_its_errors_name_the_field() -> None:
    """``calendar_from_wire`` (what expressions use) caches by content and says what is wrong."""
    assert calendar_from_wire(dict(CLINIC)) is calendar_from_wire(dict(CLINIC))
    with pytest.raises(CalendarError, match=r"hours\.mon\[0\]: '9' is not a time of day"):
        calendar_from_wire({"timeZone": "UTC", "hours": {"mon": [["9", "10:00"]]}})
    with pytest.raises(CalendarError, match="not a calendar"):
        calendar_from_wire({"timeZone": object()})


# --------------------------------------------------------------------------- is_open


def sp(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SP)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2025-06-09T07:59:59.999999", False),  # Monday, before opening
        ("2025-06-09T08:00:00", True),  # opening is included
        ("2025-06-09T11:59:59", True),
        ("2025-06-09T12:00:00", False),  # the end is not
        ("2025-06-09T12:30:00", False),  # lunch
        ("2025-06-09T13:00:00", True),
        ("2025-06-09T17:59:00", True),
        ("2025-06-09T18:00:00", False),
        ("2025-06-07T09:00:00", True),  # Saturday morning
        ("2025-06-07T13:00:00", False),  # Saturday afternoon
        ("2025-06-08T10:00:00", False),  # Sunday
        ("2025-12-25T10:00:00", False),  # a Thursday, but Christmas
        ("2025-12-24T10:59:00", True),  # Christmas Eve: its own hours
        ("2025-12-24T11:00:00", False),
        ("2025-12-24T15:00:00", False),  # the weekday's afternoon does not apply
    ],
)
def test_is_open_reads_the_wall_clock_of_the_zone(moment: str, expected: bool) -> None:
    """Hours, lunch breaks, weekends and holidays, at the zone's local time."""
    assert is_open(calendar(), sp(moment)) is expected


def test_the_same_instant_seen_from_elsewhere() -> None:
    """An instant is an instant: 11:30 UTC is 08:30 in São Paulo (open), whatever its offset."""
    cal = calendar()
    assert is_open(cal, datetime(2025, 6, 9, 11, 30, tzinfo=UTC))
    assert not is_open(cal, datetime(2025, 6, 9, 10, 30, tzinfo=UTC))


def test_an_instant_without_offset_is_refused() -> None:
    with pytest.raises(CalendarError, match="needs a UTC offset"):
        is_open(calendar(), datetime(2025, 6, 9, 9, 0))
    with pytest.raises(CalendarError, match="needs a UTC offset"):
        next_open(calendar(), datetime(2025, 6, 9, 9, 0))


# --------------------------------------------------------------------------- next_open


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        ("2025-06-09T09:15:00", "2025-06-09T09:15:00-03:00"),  # open: now
        ("2025-06-09T06:00:00", "2025-06-09T08:00:00-03:00"),
        ("2025-06-09T12:10:00", "2025-06-09T13:00:00-03:00"),  # after lunch
        ("2025-06-06T18:00:00", "2025-06-07T08:00:00-03:00"),  # Friday evening: Saturday
        ("2025-06-07T12:00:00", "2025-06-09T08:00:00-03:00"),  # across the weekend
        ("2025-12-23T19:00:00", "2025-12-24T08:00:00-03:00"),
        ("2025-12-24T11:00:00", "2025-12-26T08:00:00-03:00"),  # past Christmas
    ],
)
def test_next_open(moment: str, expected: str) -> None:
    """The next opening, in the calendar's zone (São Paulo: -03:00 all year now)."""
    found = next_open(calendar(), sp(moment))
    assert found is not None and found.isoformat() == expected
    assert found.tzinfo == SP


def test_daylight_saving_forward_in_new_york() -> None:
    """2025-03-09 skips 02:00-03:00: hours from 02:30 open at 03:00 EDT, the first instant
    whose local time is in them; the next weekday's opening has the new offset."""
    cal = calendar(
        {
            "timeZone": "America/New_York",
            "hours": {"sun": [["02:30", "04:00"]], "mon": [["09:00", "17:00"]]},
        }
    )
    saturday = datetime(2025, 3, 8, 12, 0, tzinfo=NY)
    found = next_open(cal, saturday)
    assert found is not None and found.isoformat() == "2025-03-09T03:00:00-04:00"
    assert found.astimezone(UTC) == datetime(2025, 3, 9, 7, 0, tzinfo=UTC)
    assert is_open(cal, found)
    # arithmetic in UTC: on a zone's own datetime it would be wall-clock arithmetic
    assert not is_open(cal, found.astimezone(UTC) - timedelta(microseconds=1))  # 01:59:59 EST
    monday = next_open(cal, datetime(2025, 3, 9, 4, 0, tzinfo=NY))
    assert monday is not None and monday.isoformat() == "2025-03-10T09:00:00-04:00"


def test_daylight_saving_back_in_new_york() -> None:
    """2025-11-02 repeats 01:00-02:00: hours 01:00-01:30 are open twice, and after the first
    half hour the next opening is the instant the clocks go back (06:00 UTC)."""
    cal = calendar({"timeZone": "America/New_York", "hours": {"sun": [["01:00", "01:30"]]}})
    first = datetime(2025, 11, 2, 1, 15, tzinfo=NY)  # fold 0: EDT
    assert is_open(cal, first)
    after_first = datetime(2025, 11, 2, 5, 30, tzinfo=UTC)  # 01:30 EDT
    assert not is_open(cal, after_first)
    found = next_open(cal, after_first)
    assert found is not None and found.astimezone(UTC) == datetime(2025, 11, 2, 6, 0, tzinfo=UTC)
    assert found.isoformat() == "2025-11-02T01:00:00-05:00"
    closes = next_open(cal, datetime(2025, 11, 2, 6, 30, tzinfo=UTC))  # 01:30 EST
    assert closes is not None and closes.date() == date(2025, 11, 9)


def test_daylight_saving_in_lisbon() -> None:
    """Europe/Lisbon moves from +00:00 to +01:00 on 2025-03-30 at 01:00: a Monday's 09:00 is
    08:00 UTC after it, and a Sunday's 01:15 opening never happens (opens at 02:00 WEST)."""
    cal = calendar(
        {
            "timeZone": "Europe/Lisbon",
            "hours": {"mon": [["09:00", "18:00"]], "sun": [["01:15", "03:00"]]},
        }
    )
    friday = datetime(2025, 3, 28, 19, 0, tzinfo=LISBON)
    sunday = next_open(cal, friday)
    assert sunday is not None and sunday.isoformat() == "2025-03-30T02:00:00+01:00"
    assert sunday.astimezone(UTC) == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)
    monday = next_open(cal, datetime(2025, 3, 30, 3, 0, tzinfo=LISBON))
    assert monday is not None and monday.astimezone(UTC) == datetime(2025, 3, 31, 8, 0, tzinfo=UTC)


def test_sao_paulo_once_skipped_midnight() -> None:
    """São Paulo's old daylight saving time began at midnight (2018-11-04 had no 00:00-00:59):
    hours from 00:00 open at 01:00 -02:00, and the day is still the 4th."""
    cal = calendar({"timeZone": "America/Sao_Paulo", "hours": {"sun": [["00:00", "02:00"]]}})
    found = next_open(cal, sp("2018-11-03T12:00:00"))
    assert found is not None and found.isoformat() == "2018-11-04T01:00:00-02:00"
    assert found.astimezone(UTC) == datetime(2018, 11, 4, 3, 0, tzinfo=UTC)


def test_the_search_is_bounded() -> None:
    """A calendar that never opens, or opens only past the horizon, has no next opening; one
    whose only opening is within it is found."""
    never = calendar({"timeZone": "UTC"})
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert next_open(never, start) is None
    assert not is_open(never, start)
    far = (start + timedelta(days=HORIZON_DAYS + 10)).date().isoformat()
    near = (start + timedelta(days=HORIZON_DAYS - 10)).date().isoformat()
    only_far = calendar(
        {"timeZone": "UTC", "holidays": [{"date": far, "hours": [["10:00", "11:00"]]}]}
    )
    assert next_open(only_far, start) is None
    only_near = calendar(
        {"timeZone": "UTC", "holidays": [{"date": near, "hours": [["10:00", "11:00"]]}]}
    )
    found = next_open(only_near, start)
    assert found is not None and found.isoformat() == f"{near}T10:00:00+00:00"
    assert next_open(only_near, start, horizon_days=30) is None


def test_the_end_of_time_is_no_crash() -> None:
    """Moments at the edges of what dates can hold give an answer or a CalendarError."""
    always = calendar(
        {"timeZone": "America/Sao_Paulo", "hours": {d: [["00:00", "24:00"]] for d in DAYS}}
    )
    late = datetime(9999, 12, 31, 20, 0, tzinfo=UTC)
    assert next_open(always, late) is None
    with pytest.raises(CalendarError, match="out of range"):
        is_open(always, datetime(1, 1, 1, tzinfo=UTC))


# ------------------------------------------------------------------------------ property

ZONES = [
    "America/Sao_Paulo",
    "America/New_York",
    "Europe/Lisbon",
    "Australia/Lord_Howe",  # daylight saving time of half an hour
    "America/Santiago",  # transitions at midnight
    "America/Havana",  # and at 00:00/01:00 local
    "Pacific/Chatham",  # +12:45
    "Asia/Kolkata",
    "UTC",
]


@st.composite
def day_hours(draw: st.DrawFn) -> list[list[str]]:
    bounds = sorted(draw(st.sets(st.integers(0, 1440), max_size=6)))
    if len(bounds) % 2:
        bounds = bounds[:-1]
    text = [f"{b // 60:02d}:{b % 60:02d}" for b in bounds]
    return [[text[i], text[i + 1]] for i in range(0, len(text), 2)]


@functools.cache
def transitions(zone: str) -> list[datetime]:
    """The zone's offset changes in 2018 and 2025 (to the hour: a neighbourhood is enough)."""
    found = []
    for year in (2018, 2025):
        moment = datetime(year, 1, 1, tzinfo=UTC)
        before = moment.astimezone(ZoneInfo(zone)).utcoffset()
        while moment.year == year:
            moment += timedelta(hours=1)
            offset = moment.astimezone(ZoneInfo(zone)).utcoffset()
            if offset != before:
                found.append(moment)
            before = offset
    return found


@st.composite
def definitions(draw: st.DrawFn, zone: str, around: date) -> dict[str, Any]:
    """Weekly hours on some days; holidays near ``around`` (closed, or with hours), now and
    then a long run of closed ones, and now and then an opening months ahead."""
    hours = {day: draw(day_hours()) for day in DAYS if draw(st.booleans())}
    closed = set(draw(st.sets(st.integers(-2, 20), max_size=4)))
    if draw(st.booleans()):
        run_from = draw(st.integers(-3, 10))
        closed |= set(range(run_from, run_from + draw(st.integers(5, 90))))
    with_hours = set(draw(st.sets(st.integers(-2, 400), max_size=3))) - closed
    holidays: list[Any] = [(around + timedelta(days=d)).isoformat() for d in sorted(closed)]
    for offset in sorted(with_hours):
        day = (around + timedelta(days=offset)).isoformat()
        holidays.append({"date": day, "hours": draw(day_hours())})
    return {"timeZone": zone, "hours": hours, "holidays": holidays}


def opening_instants(cal: Calendar, since: date, until: date) -> list[datetime]:
    """Instants (UTC) of the first and last minute of every interval of every date from
    ``since`` to ``until``, those that happen (a skipped local time does not)."""
    found = []
    day = since
    while day <= until:
        for start, end in cal.hours_on(day):
            for minute in (start, end - 1):
                wall = datetime(day.year, day.month, day.day) + timedelta(minutes=minute)
                for fold in (0, 1):
                    instant = wall.replace(tzinfo=cal.zone, fold=fold).astimezone(UTC)
                    if instant.astimezone(cal.zone).replace(tzinfo=None) == wall:
                        found.append(instant)
        day += timedelta(days=1)
    return found


@st.composite
def cases(draw: st.DrawFn) -> tuple[Calendar, datetime, list[float]]:
    zone = draw(st.sampled_from(ZONES))
    changes = transitions(zone)
    if changes and draw(st.booleans()):  # half the time, within two days of a clock change
        near = draw(st.sampled_from(changes))
        moment = near + timedelta(seconds=draw(st.integers(-2 * 86_400, 2 * 86_400)))
    else:
        moment = draw(
            st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2030, 12, 31))
        ).replace(tzinfo=UTC)
    data = draw(definitions(zone, moment.date()))
    samples = draw(st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=8))
    return calendar(data), moment, samples


@settings(max_examples=200)
@given(cases())
def test_next_open_is_open_and_nothing_before_it_is(
    case: tuple[Calendar, datetime, list[float]],
) -> None:
    """For any calendar, zone and instant t: next_open(t) is open, not before t, t itself
    exactly when open, and no instant from t up to it is open: none of the intervals'
    first or last minutes in between, and every minute when the wait is under two days
    (offsets and hours change only on whole minutes here); with no next opening, none
    within the horizon."""
    cal, t, samples = case
    found = next_open(cal, t)
    if found is None:
        horizon = t + timedelta(days=HORIZON_DAYS)
        everything = opening_instants(cal, (t - timedelta(days=2)).date(), horizon.date())
        assert not [u for u in everything if t <= u < horizon]
        return
    # in UTC: arithmetic on a zone's own datetime is wall-clock arithmetic, and an instant
    # in a repeated hour never equals one of another zone (PEP 495)
    found = found.astimezone(UTC)
    assert found >= t
    assert is_open(cal, found)
    assert (found == t) is is_open(cal, t)
    if found == t:
        return
    assert not is_open(cal, found - timedelta(microseconds=1))
    wait = found - t
    for fraction in samples:  # rounded to microseconds: never as far as the opening
        assert not is_open(cal, t + min(wait * fraction, wait - timedelta(microseconds=1)))
    # every interval's first and last minute in between, however long the wait
    local = (t - timedelta(days=2)).date(), (found + timedelta(days=2)).date()
    assert not [u for u in opening_instants(cal, *local) if t <= u < found]
    if wait <= timedelta(days=2):
        minute = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
        while minute < found:
            assert not is_open(cal, minute), minute
            minute += timedelta(minutes=1)
