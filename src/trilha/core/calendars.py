"""Business hours: calendars, and whether (and when next) one is open. Pure: no I/O, no clock.

A calendar is an institution's opening hours in one time zone::

    {"timeZone": "America/Sao_Paulo",
     "hours": {"mon": [["08:00", "12:00"], ["13:00", "18:00"]], "sat": [["08:00", "12:00"]]},
     "holidays": ["2025-12-25", {"date": "2025-12-24", "hours": [["08:00", "12:00"]]}]}

Hours are wall-clock times in the zone: an interval ``[start, end)`` holds every
instant whose local time, on that day, is at or past ``start`` and before ``end``
(``24:00`` ends at midnight). A day left out, or with no intervals, is closed. A
holiday replaces its date's weekly hours: closed all day, or its own ``hours``.
Hours that run past midnight are two intervals (``sat: [["22:00", "24:00"]]``,
``sun: [["00:00", "02:00"]]``).

Daylight saving time follows from the wall-clock reading. When clocks jump
forward, the skipped local times never happen: hours from 02:30 on a day that skips
02:00-03:00 open at 03:00, the first instant whose local time is in them. When
clocks go back, the repeated local times happen twice, and so does being open in
them. :func:`next_open` walks the instants in stretches of one UTC offset, so both
cases (and zones such as São Paulo's, whose old transitions were at midnight) come
out exact to the microsecond: the instant it returns is open and no earlier instant
after the one it was asked about is.

Bounds (DESIGN §9): a calendar has at most :data:`MAX_INTERVALS` intervals a day and
:data:`MAX_HOLIDAYS` holidays; :func:`next_open` looks :data:`HORIZON_DAYS` ahead and
says ``None`` past that (a calendar that never opens).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from trilha.core.wire import WireModel

__all__ = [
    "CALENDAR_NAME_PATTERN",
    "DAYS",
    "HORIZON_DAYS",
    "MAX_HOLIDAYS",
    "MAX_INTERVALS",
    "Calendar",
    "CalendarDefinition",
    "CalendarError",
    "Holiday",
    "WeeklyHours",
    "calendar_from_wire",
    "compile_calendar",
    "error_field",
    "is_open",
    "local_moment",
    "next_open",
]

#: a calendar's name: what flows write in ``is_open("clinic")`` and the API's path
CALENDAR_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$"
#: the week's days as the wire names them, Monday first (``date.weekday()``'s order)
DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: intervals one day (or one holiday) may have
MAX_INTERVALS: Final = 24
#: holidays one calendar may list
MAX_HOLIDAYS: Final = 500
#: how far ahead :func:`next_open` looks before it says the calendar never opens
HORIZON_DAYS: Final = 366
#: longest time zone name accepted (the longest IANA name is about 30 characters)
MAX_ZONE_NAME: Final = 64

_TIME: Final = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00")
_ZONE_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*")
_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NAME: Final = re.compile(CALENDAR_NAME_PATTERN)
_DAY: Final = dt.timedelta(days=1)
_MICROSECOND: Final = dt.timedelta(microseconds=1)
#: the latest instant a search reaches: any zone's local time is still in year 9999
_LATEST: Final = dt.datetime(9999, 12, 30, tzinfo=dt.UTC)
#: more than any UTC offset a zone has had (they stay within a day)
_SLACK: Final = dt.timedelta(hours=26)


class CalendarError(ValueError):
    """A calendar that cannot be used, or a moment outside what it can answer; the
    message names the field or the value."""


def _invalid(message: str) -> PydanticCustomError:
    # a custom error keeps the message as written: no "Value error, " in front of it
    return PydanticCustomError("calendar", message)


# --------------------------------------------------------------------------- the wire


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _interval(value: list[str]) -> list[str]:
    start, end = value
    for text in (start, end):
        if _TIME.fullmatch(text) is None:
            raise _invalid(f"{text!r} is not a time of day: write HH:MM, from 00:00 to 24:00")
    if start == "24:00":
        raise _invalid("24:00 may only end an interval")
    if _minutes(start) >= _minutes(end):
        raise _invalid(f"the interval {start}-{end} ends before it starts")
    return value


def _ordered(intervals: list[list[str]]) -> list[list[str]]:
    for before, after in itertools.pairwise(intervals):
        if _minutes(after[0]) < _minutes(before[1]):
            raise _invalid(
                f"the interval {after[0]}-{after[1]} starts before {before[0]}-{before[1]}"
                " ends: list a day's intervals in order, without overlaps"
            )
    return intervals


#: ``["08:00", "12:00"]``: from the first time of day, up to (not including) the second
Interval = Annotated[
    list[Annotated[str, Field(max_length=5)]],
    Field(min_length=2, max_length=2),
    AfterValidator(_interval),
]
#: a day's intervals, in order and apart (they may touch: 12:00 may end one and start
#: the next)
Intervals = Annotated[list[Interval], Field(max_length=MAX_INTERVALS), AfterValidator(_ordered)]


class WeeklyHours(WireModel):
    """Opening hours by day of the week; a day left out is closed."""

    mon: Intervals = Field(
        default_factory=list,
        description=(
            'Monday\'s opening intervals, `["HH:MM", "HH:MM"]` each, in order; none: closed.'
        ),
    )
    tue: Intervals = Field(
        default_factory=list, description="Tuesday's opening intervals; none: closed."
    )
    wed: Intervals = Field(
        default_factory=list, description="Wednesday's opening intervals; none: closed."
    )
    thu: Intervals = Field(
        default_factory=list, description="Thursday's opening intervals; none: closed."
    )
    fri: Intervals = Field(
        default_factory=list, description="Friday's opening intervals; none: closed."
    )
    sat: Intervals = Field(
        default_factory=list, description="Saturday's opening intervals; none: closed."
    )
    sun: Intervals = Field(
        default_factory=list, description="Sunday's opening intervals; none: closed."
    )


def _holiday_date(value: str) -> str:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise _invalid(f"{value!r} is not a date (YYYY-MM-DD)") from None
    return value


class Holiday(WireModel):
    """A date that does not follow the weekly hours: closed, or open at its own ``hours``."""

    date: Annotated[
        str, Field(max_length=10, pattern=_DATE.pattern), AfterValidator(_holiday_date)
    ] = Field(description="The date, `YYYY-MM-DD`, in the calendar's time zone.")
    name: str | None = Field(
        default=None, max_length=100, description="What the date is (a note: `Christmas`)."
    )
    hours: Intervals | None = Field(
        default=None, description="The day's hours; absent: closed all day."
    )


def _shorthand(value: Any) -> Any:
    """A holiday may be written as its date alone."""
    if isinstance(value, list):
        return [{"date": item} if isinstance(item, str) else item for item in value]
    return value


class CalendarDefinition(WireModel):
    """A calendar as the API and ``trilha.toml`` write it."""

    time_zone: str = Field(
        min_length=1,
        max_length=MAX_ZONE_NAME,
        description="An IANA time zone, such as `America/Sao_Paulo`; hours are its wall"
        " clock, daylight saving time included.",
    )
    hours: WeeklyHours = Field(
        default_factory=WeeklyHours,
        description='Opening hours by day (`mon` ... `sun`), each a list of `["HH:MM",'
        ' "HH:MM"]` intervals in order; a day left out is closed.',
    )
    holidays: Annotated[list[Holiday], BeforeValidator(_shorthand)] = Field(
        default_factory=list,
        max_length=MAX_HOLIDAYS,
        description="Dates (`YYYY-MM-DD`, or `{date, name?, hours?}`) closed all day, or"
        " open at their own `hours` instead of the weekday's.",
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zone_of(value)
        except CalendarError as exc:
            raise _invalid(str(exc)) from None
        return value

    @field_validator("holidays")
    @classmethod
    def _one_per_date(cls, value: list[Holiday]) -> list[Holiday]:
        seen: set[str] = set()
        for holiday in value:
            if holiday.date in seen:
                raise _invalid(f"{holiday.date} is listed twice")
            seen.add(holiday.date)
        return sorted(value, key=lambda h: h.date)

    def wire(self) -> dict[str, Any]:
        """The canonical JSON form: every day listed, holidays as objects by date."""
        return self.model_dump(
            by_alias=True, exclude_none=True, mode="json", include=_DEFINITION_FIELDS
        )


_DEFINITION_FIELDS: Final = set(CalendarDefinition.model_fields)


def error_field(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as a wire path (``hours.mon[1]``), for error messages."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@functools.lru_cache(maxsize=128)
def zone_of(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (:class:`CalendarError` naming it when there is none)."""
    # "localtime" is a file of the system's zone folder: the machine's zone, not a name
    if len(name) > MAX_ZONE_NAME or _ZONE_NAME.fullmatch(name) is None or name == "localtime":
        raise CalendarError(f"{name[:70]!r} is not an IANA time zone (such as 'America/Sao_Paulo')")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CalendarError(
            f"{name!r} is not an IANA time zone (such as 'America/Sao_Paulo')"
        ) from None


# --------------------------------------------------------------------------- compiled


Span = tuple[int, int]  # minutes from the day's midnight: [start, end)


@dataclass(frozen=True, slots=True)
class Calendar:
    """A calendar ready to answer: its zone, and each day's hours in minutes."""

    time_zone: str
    zone: ZoneInfo
    #: Monday first
    weekly: tuple[tuple[Span, ...], ...]
    holidays: Mapping[dt.date, tuple[Span, ...]]

    def hours_on(self, day: dt.date) -> tuple[Span, ...]:
        """The day's opening hours: its holiday's, else its weekday's."""
        found = self.holidays.get(day)
        return self.weekly[day.weekday()] if found is None else found

    def ever_open(self) -> bool:
        return any(self.weekly) or any(self.holidays.values())

    def next_day_with_hours(self, day: dt.date, last: dt.date) -> dt.date | None:
        """The first date from ``day`` to ``last`` with any opening hours. Cheap however
        long the closed stretch: with weekly hours it is at most the holidays in a row;
        without, a look-up among the holidays that open."""
        if not any(self.weekly):
            opening = sorted(d for d, spans in self.holidays.items() if spans and d >= day)
            return opening[0] if opening and opening[0] <= last else None
        while day <= last:
            if self.hours_on(day):
                return day
            day += _DAY
        return None


def _spans(intervals: list[list[str]] | None) -> tuple[Span, ...]:
    return tuple((_minutes(s), _minutes(e)) for s, e in intervals or ())


def compile_calendar(definition: CalendarDefinition) -> Calendar:
    hours = definition.hours
    return Calendar(
        time_zone=definition.time_zone,
        zone=zone_of(definition.time_zone),
        weekly=tuple(_spans(getattr(hours, day)) for day in DAYS),
        holidays={dt.date.fromisoformat(h.date): _spans(h.hours) for h in definition.holidays},
    )


def calendar_from_wire(data: Any) -> Calendar:
    """The calendar a wire form (``sys.calendars.NAME``) describes, checked; read once
    per distinct definition (flows ask the same few calendars over and over)."""
    try:
        key = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise CalendarError(f"not a calendar: {exc}") from None
    return _compiled(key)


@functools.lru_cache(maxsize=256)
def _compiled(key: bytes) -> Calendar:
    try:
        definition = CalendarDefinition.model_validate(orjson.loads(key))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = error_field(tuple(err["loc"]))
        raise CalendarError(f"{where}: {err['msg']}" if where else str(err["msg"])) from None
    return compile_calendar(definition)


# ------------------------------------------------------------------------- answering


def local_moment(calendar: Calendar, moment: dt.date | dt.datetime) -> dt.datetime:
    """``moment`` as an aware instant: a date is its midnight in the calendar's zone,
    a date-time without an offset is a wall-clock time there (the earlier one when the
    clocks repeat it), an aware one is itself."""
    if not isinstance(moment, dt.datetime):
        moment = dt.datetime(moment.year, moment.month, moment.day)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=calendar.zone)
    return moment


def is_open(calendar: Calendar, at: dt.datetime) -> bool:
    """Whether the calendar is open at the aware instant ``at``."""
    try:
        local = _aware(at).astimezone(calendar.zone)
    except OverflowError:
        raise CalendarError(f"{at.isoformat()} is out of range (years 1 to 9999)") from None
    minute = local.hour * 60 + local.minute
    # the minute's own second and microsecond only matter against an end, which is
    # exclusive and on a whole minute: [s, e) holds minute m exactly when s <= m < e
    return any(start <= minute < end for start, end in calendar.hours_on(local.date()))


def next_open(
    calendar: Calendar, at: dt.datetime, *, horizon_days: int = HORIZON_DAYS
) -> dt.datetime | None:
    """The first instant at or after ``at`` when the calendar is open, in its zone;
    ``at`` itself when open already; ``None`` when it does not open within
    ``horizon_days``.

    Within a stretch of one UTC offset the local clock runs with the instants, so
    the first open local time of the stretch gives the instant; the stretches are
    found a day at a time, and an offset change inside a day by bisection."""
    if not calendar.ever_open():
        return None
    try:
        return _next_open(calendar, _aware(at).astimezone(dt.UTC), horizon_days)
    except OverflowError:
        raise CalendarError(f"{at.isoformat()} is out of range (years 1 to 9999)") from None


def _next_open(calendar: Calendar, start: dt.datetime, horizon_days: int) -> dt.datetime | None:
    zone = calendar.zone
    # the search stops short of year 9999's end, where a local time would not exist
    limit = min(
        start + dt.timedelta(days=min(horizon_days, (_LATEST - start).days)),
        _LATEST,
    )
    moment = start
    while moment < limit:
        offset = _offset(moment, zone)
        end = min(moment + _DAY, limit)
        if _offset(end, zone) != offset:
            end = _transition(moment, end, zone, offset)
        wall = _first_open_wall(calendar, _naive(moment + offset), _naive(end + offset))
        if wall is not None:
            return (wall - offset).replace(tzinfo=dt.UTC).astimezone(zone)
        moment = _skip_closed_days(calendar, end, limit)
    return None


def _skip_closed_days(calendar: Calendar, moment: dt.datetime, limit: dt.datetime) -> dt.datetime:
    """Where the search goes on after ``moment``: past the dates with no hours at all (a
    run of holidays, a calendar open a few days a year), whose instants are all closed.
    Any zone's wall clock is within :data:`_SLACK` of UTC, so an instant of a date is
    never more than that away from the date read as UTC: the jump lands two slacks
    before the next date with hours, and skips only instants of dates without."""
    naive = _naive(moment)
    first = (naive - _SLACK).date()
    found = calendar.next_day_with_hours(first, (_naive(limit) + _SLACK).date())
    if found is None:
        return limit
    jump = dt.datetime(found.year, found.month, found.day, tzinfo=dt.UTC) - 2 * _SLACK
    return max(moment, min(jump, limit))


def _aware(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise CalendarError("the instant needs a UTC offset")
    return at


def _naive(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=None)


def _offset(moment: dt.datetime, zone: ZoneInfo) -> dt.timedelta:
    offset = moment.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _transition(
    before: dt.datetime, after: dt.datetime, zone: ZoneInfo, offset: dt.timedelta
) -> dt.datetime:
    """The first instant in ``(before, after]`` whose offset is not ``offset``: the
    offset is ``offset`` at ``before`` and not at ``after``."""
    low, high = before, after
    while high - low > _MICROSECOND:
        middle = low + (high - low) / 2
        if _offset(middle, zone) == offset:
            low = middle
        else:
            high = middle
    return high


def _first_open_wall(
    calendar: Calendar, since: dt.datetime, until: dt.datetime
) -> dt.datetime | None:
    """The first local (naive) time in ``[since, until)`` within the opening hours."""
    day = since.date()
    last = until.date()
    while day <= last:
        midnight = dt.datetime(day.year, day.month, day.day)
        for start, end in calendar.hours_on(day):
            candidate = max(since, midnight + dt.timedelta(minutes=start))
            if candidate < midnight + dt.timedelta(minutes=end) and candidate < until:
                return candidate
        day += _DAY
    return None


def valid_name(name: Any) -> bool:
    """Whether ``name`` may name a calendar (:data:`CALENDAR_NAME_PATTERN`)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None
