"""Dates for expressions and templates: read, shift, format. Pure: never reads the clock.

A flow's "now" is ``sys.now``, which the engine puts into the variables of the step
it runs (an ISO-8601 UTC text); this module only computes with the texts and
numbers it is given, so replaying a step gives the same dates.

Values a flow can hand in:

* ISO-8601 text: a bare date (``2025-03-01``), or a date-time with ``Z`` or an
  offset (``2025-03-01T09:30:00-03:00``); a date-time without an offset is a
  wall-clock time (what a booking service usually sends) and is never converted
  between zones;
* an epoch number, in seconds (UTC).

Results keep the value's own offset (UTC written ``Z``). Time zones are IANA names
(``America/Sao_Paulo``), ``UTC``, or a fixed offset (``-03:00``). Every input is
bounded (text length, pattern length), and the parsers are single passes, so a
value a contact typed costs no more than its length.

Errors are :class:`DateError` naming the value, the zone or the pattern letter;
the expression language adds the function and the column.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "MAX_PATTERN_LENGTH",
    "DateError",
    "add",
    "format_date",
    "iso",
    "parse",
    "today",
    "weekday",
    "zone",
]

#: longest date text read (a full ISO-8601 date-time with nanoseconds and offset is 35)
MAX_DATE_TEXT: Final = 64
#: longest ``format_date`` pattern
MAX_PATTERN_LENGTH: Final = 100
#: longest time zone name (the longest IANA name is about 30 characters)
MAX_ZONE_NAME: Final = 64

_ISO: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?"
    r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)
_BARE_DATE_LENGTH: Final = 10
_DAY: Final = timedelta(days=1)
_OFFSET: Final = re.compile(r"([+-])([0-9]{2}):?([0-9]{2})")
_ZONE_NAME: Final = re.compile(r"[A-Za-z0-9_+\-/:]+")


class DateError(ValueError):
    """A date, a time zone or a pattern that cannot be used; the message names it."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ------------------------------------------------------------------------- reading


def parse(value: Any) -> date | datetime:
    """A date (for a bare ``YYYY-MM-DD``) or a date-time, aware when it had an offset."""
    if isinstance(value, bool):
        raise DateError("expected a date, got a boolean")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise DateError(f"epoch seconds {_shown(value)} are out of range") from None
    if not isinstance(value, str):
        raise DateError("expected an ISO-8601 text or epoch seconds")
    if len(value) > MAX_DATE_TEXT:
        raise DateError(f"{_shown(value)} is not an ISO-8601 date")
    text = value.strip()
    if _ISO.fullmatch(text) is None:
        raise DateError(f"{_shown(value)} is not an ISO-8601 date")
    try:
        if len(text) == _BARE_DATE_LENGTH:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise DateError(f"{_shown(value)} is not a valid date ({exc})") from None


@functools.lru_cache(maxsize=128)
def _cached_zone(name: str) -> tzinfo:
    if name in ("UTC", "Z", "utc"):
        return UTC
    offset = _OFFSET.fullmatch(name)
    if offset is not None:
        sign, hours, minutes = offset.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        if delta >= timedelta(hours=24):
            raise DateError(f"unknown time zone {name!r}")
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise DateError(f"unknown time zone {name!r}") from None


def zone(name: Any) -> tzinfo:
    """The time zone called ``name``: an IANA name, ``UTC`` or ``+HH:MM``."""
    if not isinstance(name, str):
        raise DateError(f"a time zone is a name such as 'America/Sao_Paulo', not {_shown(name)}")
    if len(name) > MAX_ZONE_NAME or _ZONE_NAME.fullmatch(name) is None:
        raise DateError(f"unknown time zone {_shown(name)}")
    return _cached_zone(name)


def _in_zone(moment: date | datetime, tz: Any) -> date | datetime:
    """An aware date-time seen in ``tz``; bare dates and wall-clock times are as written."""
    if tz is None:
        return moment
    where = zone(tz)
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        return moment.astimezone(where)
    return moment


# ------------------------------------------------------------------------- writing


def iso(moment: date | datetime) -> str:
    """ISO-8601 text, with ``Z`` for UTC."""
    if not isinstance(moment, datetime):
        return moment.isoformat()
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def today(now: Any, tz: Any = None) -> str:
    """The calendar date of ``now`` (``sys.now``) in ``tz``."""
    moment = parse(now)
    if isinstance(moment, datetime) and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # sys.now is UTC by contract
    seen = _in_zone(moment, tz if tz is not None else "UTC")
    day = seen.date() if isinstance(seen, datetime) else seen
    return day.isoformat()


def add(value: Any, *, days: float = 0, minutes: float = 0) -> str:
    """``value`` shifted by whole or fractional days and minutes, keeping its offset.

    A bare date stays a bare date when shifted by whole days; shifted by less it
    becomes the wall-clock time counted from its midnight.
    """
    moment = parse(value)
    try:
        delta = timedelta(days=days, minutes=minutes)
        if not isinstance(moment, datetime):
            if delta % _DAY == timedelta(0):
                return iso(moment + delta)
            moment = datetime(moment.year, moment.month, moment.day)
        return iso(moment + delta)
    except (OverflowError, ValueError):
        raise DateError(
            f"{_shown(value)} shifted that far is out of range (years 1 to 9999)"
        ) from None


def weekday(value: Any, tz: Any = None) -> int:
    """ISO weekday number of ``value`` in ``tz``: 1 is Monday, 7 is Sunday."""
    return _in_zone(parse(value), tz).isoweekday()


# ---------------------------------------------------------------------- formatting

# letter -> the run lengths supported
_FIELDS: Final[dict[str, frozenset[int]]] = {
    "d": frozenset({1, 2}),
    "M": frozenset({1, 2, 3, 4}),
    "y": frozenset({1, 2, 4}),
    "H": frozenset({1, 2}),
    "h": frozenset({1, 2}),
    "m": frozenset({1, 2}),
    "s": frozenset({1, 2}),
    "a": frozenset({1}),
    "E": frozenset({1, 2, 3, 4}),
}

# language -> (months, short months, weekdays from Monday, short weekdays)
_NAMES: Final[dict[str, tuple[tuple[str, ...], ...]]] = {
    "en": (
        (
            "January", "February", "March", "April", "May", "June", "July",
            "August", "September", "October", "November", "December",
        ),
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
        ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    ),
    "pt": (
        (
            "janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho",
            "agosto", "setembro", "outubro", "novembro", "dezembro",
        ),
        ("jan", "fev", "mar", "abr", "mai", "jun", "jul", "ago", "set", "out", "nov", "dez"),
        (
            "segunda-feira", "terça-feira", "quarta-feira", "quinta-feira",
            "sexta-feira", "sábado", "domingo",
        ),
        ("seg", "ter", "qua", "qui", "sex", "sáb", "dom"),
    ),
    "es": (
        (
            "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio",
            "agosto", "septiembre", "octubre", "noviembre", "diciembre",
        ),
        ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic"),
        ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
        ("lun", "mar", "mié", "jue", "vie", "sáb", "dom"),
    ),
}  # fmt: skip


def _names(language: Any) -> tuple[tuple[str, ...], ...]:
    """Names in ``language`` (a tag such as ``pt-BR``); English for any other."""
    if isinstance(language, str):
        primary = language.replace("_", "-").split("-", 1)[0].lower()
        if primary in _NAMES:
            return _NAMES[primary]
    return _NAMES["en"]


@functools.lru_cache(maxsize=256)
def _compile_pattern(pattern: str) -> tuple[tuple[bool, str], ...]:
    """``(is_field, text)`` pieces of an ICU-like pattern, in one pass.

    Letters are fields (a run of one letter is one field); text in single quotes
    is literal, and ``''`` is a quote; anything else is literal as it is.
    """
    pieces: list[tuple[bool, str]] = []
    literal: list[str] = []
    position = 0
    while position < len(pattern):
        character = pattern[position]
        if character == "'":
            if pattern.startswith("''", position):
                literal.append("'")
                position += 2
                continue
            end = position + 1
            while True:
                end = pattern.find("'", end)
                if end < 0:
                    raise DateError(f"pattern {pattern!r} has an unclosed quote")
                if not pattern.startswith("''", end):
                    break
                end += 2
            literal.append(pattern[position + 1 : end].replace("''", "'"))
            position = end + 1
        elif character.isascii() and character.isalpha():
            end = position
            while end < len(pattern) and pattern[end] == character:
                end += 1
            run = end - position
            if character not in _FIELDS or run not in _FIELDS[character]:
                raise DateError(
                    f"pattern letter {pattern[position:end]!r} is not supported"
                    " (use d dd M MM MMM MMMM yy yyyy H HH h hh m mm s ss a EEE EEEE,"
                    " and quote literal text as 'text')"
                )
            if literal:
                pieces.append((False, "".join(literal)))
                literal = []
            pieces.append((True, pattern[position:end]))
            position = end
        else:
            literal.append(character)
            position += 1
    if literal:
        pieces.append((False, "".join(literal)))
    return tuple(pieces)


def _field(moment: date | datetime, field: str, names: tuple[tuple[str, ...], ...]) -> str:
    months, short_months, weekdays, short_weekdays = names
    letter, width = field[0], len(field)
    hour = moment.hour if isinstance(moment, datetime) else 0
    if letter == "d":
        return f"{moment.day:0{width}d}"
    if letter == "M":
        if width >= 3:
            return (months if width == 4 else short_months)[moment.month - 1]
        return f"{moment.month:0{width}d}"
    if letter == "y":
        return f"{moment.year % 100:02d}" if width == 2 else f"{moment.year:0{width}d}"
    if letter == "H":
        return f"{hour:0{width}d}"
    if letter == "h":
        return f"{(hour % 12) or 12:0{width}d}"
    if letter == "a":
        return "AM" if hour < 12 else "PM"
    if letter == "E":
        return (weekdays if width == 4 else short_weekdays)[moment.weekday()]
    unit = (
        (moment.minute if letter == "m" else moment.second) if isinstance(moment, datetime) else 0
    )
    return f"{unit:0{width}d}"


def format_date(value: Any, pattern: Any, tz: Any = None, language: Any = None) -> str:
    """``value`` written by ``pattern`` (ICU-like letters), seen in ``tz``."""
    if not isinstance(pattern, str):
        raise DateError("the pattern is a text such as 'dd/MM/yyyy'")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise DateError(f"the pattern is longer than {MAX_PATTERN_LENGTH} characters")
    pieces = _compile_pattern(pattern)
    moment = _in_zone(parse(value), tz)
    names = _names(language)
    return "".join(_field(moment, text, names) if is_field else text for is_field, text in pieces)
