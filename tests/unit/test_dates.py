"""Dates of expressions and templates: what is read, how it is written, what is refused."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trilha.core import dates
from trilha.core.dates import DateError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-01", date(2025, 3, 1)),
        (" 2025-03-01 ", date(2025, 3, 1)),
        ("2025-03-01T09:30", datetime(2025, 3, 1, 9, 30)),
        ("2025-03-01 09:30:15", datetime(2025, 3, 1, 9, 30, 15)),
        ("2025-03-01T09:30:00Z", datetime(2025, 3, 1, 9, 30, tzinfo=UTC)),
        ("2025-03-01T09:30:00.5Z", datetime(2025, 3, 1, 9, 30, 0, 500_000, tzinfo=UTC)),
        ("2025-03-01T09:30:00,123456789Z", datetime(2025, 3, 1, 9, 30, 0, 123_456, tzinfo=UTC)),
        (
            "2025-03-01T09:30:00-03:00",
            datetime(2025, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=-3))),
        ),
        (
            "2025-03-01T09:30+0530",
            datetime(2025, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        ),
        (
            "2025-03-01T09:30:00+01",
            datetime(2025, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=1))),
        ),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (1740832200, datetime(2025, 3, 1, 12, 30, tzinfo=UTC)),
        (-86400.5, datetime(1969, 12, 30, 23, 59, 59, 500_000, tzinfo=UTC)),
    ],
)
def test_parse(text: Any, expected: date | datetime) -> None:
    """ISO-8601 dates and date-times, with Z, an offset or none, and epoch seconds."""
    result = dates.parse(text)
    assert result == expected
    assert type(result) is type(expected)
    if isinstance(expected, datetime):
        assert isinstance(result, datetime)
        assert result.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tomorrow",
        "2025-3-1",
        "01/03/2025",
        "2025-03-01T",
        "2025-03-01T9:30",
        "2025-03-01t09:30z",
        "2025W091",
        "20250301",
        "2025-03-01T09:30:00.1234567890Z",
        "２０２５-03-01",
        "2025-02-29",
        "2025-13-01",
        "2025-03-01T24:00",
        "2025-03-01T09:30:00+24:00",
        "2025-03-01" + " " * 100,
    ],
)
def test_parse_refuses_what_is_not_iso(text: str) -> None:
    """Other notations, impossible dates and over-long texts are DateError naming the text."""
    with pytest.raises(DateError) as info:
        dates.parse(text)
    assert repr(text)[:20] in str(info.value)


@pytest.mark.parametrize(
    ("name", "offset"),
    [
        ("UTC", timedelta(0)),
        ("America/Sao_Paulo", timedelta(hours=-3)),
        ("Asia/Kolkata", timedelta(hours=5, minutes=30)),
        ("-03:00", timedelta(hours=-3)),
        ("+0545", timedelta(hours=5, minutes=45)),
    ],
)
def test_zones(name: str, offset: timedelta) -> None:
    """IANA names (from the tz database, tzdata where the system has none), UTC, offsets."""
    moment = datetime(2025, 3, 1, 12, tzinfo=UTC)
    assert moment.astimezone(dates.zone(name)).utcoffset() == offset


@pytest.mark.parametrize(
    "name",
    ["Mars/Base", "", "america/sao_paulo ", "../zoneinfo/UTC", "/etc/localtime", "A" * 65, 3, None],
)
def test_unknown_zones(name: Any) -> None:
    """An unknown zone, a path or a non-text is a DateError, never a file read outside the
    tz database."""
    with pytest.raises(DateError):
        dates.zone(name)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("dd/MM/yyyy HH:mm:ss", "05/03/2025 07:08:09"),
        ("d/M/yy H:m:s", "5/3/25 7:8:9"),
        ("hh a", "07 AM"),
        ("EEEE EEE MMMM MMM", "Wednesday Wed March Mar"),
        ("'day' d", "day 5"),
        ("'it''s' d", "it's 5"),
        ("''d''", "'5'"),
        ("d 'de' MMMM 'de' yyyy", "5 de March de 2025"),
        ("d.M.yyyy - HH:mm!", "5.3.2025 - 07:08!"),
        ("", ""),
        ("é ç 😀", "é ç 😀"),
    ],
)
def test_patterns(pattern: str, expected: str) -> None:
    """Pattern letters, quoted literal text and '' for a quote."""
    assert dates.format_date("2025-03-05T07:08:09", pattern) == expected


def test_language_names() -> None:
    """Month and weekday names in English, Portuguese and Spanish; English otherwise."""
    moment = "2025-03-08"  # a Saturday
    assert dates.format_date(moment, "EEEE, d MMMM", None, "en") == "Saturday, 8 March"
    assert dates.format_date(moment, "EEEE, d MMMM", None, "pt-BR") == "sábado, 8 março"
    assert dates.format_date(moment, "EEE d MMM", None, "pt_PT") == "sáb 8 mar"
    assert dates.format_date(moment, "EEEE, d MMMM", None, "ES") == "sábado, 8 marzo"
    assert dates.format_date(moment, "EEEE", None, "de") == "Saturday"
    assert dates.format_date(moment, "EEEE", None, 5) == "Saturday"


def test_iso_writes_utc_as_z_and_keeps_offsets() -> None:
    """Results keep the value's offset; UTC is written Z; wall-clock times stay without one."""
    assert dates.add("2025-03-01T10:00:00+00:00", minutes=1) == "2025-03-01T10:01:00Z"
    assert dates.add("2025-03-01T10:00:00+05:30", days=1) == "2025-03-02T10:00:00+05:30"
    assert dates.add("2025-03-01T10:00:00", days=-1) == "2025-02-28T10:00:00"
    assert dates.add("2025-03-01", days=-365) == "2024-03-01"  # 2024 had a 29 February


def test_today_is_in_the_zone() -> None:
    """today() is the calendar date of sys.now where the contact is."""
    now = "2025-03-01T01:00:00Z"
    assert dates.today(now) == "2025-03-01"
    assert dates.today(now, "America/Sao_Paulo") == "2025-02-28"
    assert dates.today(now, "Pacific/Kiritimati") == "2025-03-01"
    assert dates.today("2025-03-01T01:00:00", "America/Sao_Paulo") == "2025-02-28"


@given(st.text(max_size=80) | st.integers() | st.floats() | st.booleans() | st.none())
def test_any_value_is_a_date_or_a_date_error(value: Any) -> None:
    """Whatever a contact or a service sends, reading it gives a date or a DateError."""
    with contextlib.suppress(DateError):
        assert isinstance(dates.parse(value), date)


@given(st.text(max_size=120))
def test_any_pattern_formats_or_is_a_date_error(pattern: str) -> None:
    """Any pattern text formats, or is refused with a DateError."""
    with contextlib.suppress(DateError):
        assert isinstance(dates.format_date("2025-03-01T09:30:00Z", pattern), str)


@given(st.datetimes(timezones=st.just(UTC)))
def test_iso_round_trip(moment: datetime) -> None:
    """What iso() writes, parse() reads back as the same instant."""
    assert dates.parse(dates.iso(moment)) == moment
    written = dates.format_date(dates.iso(moment), "yyyy-MM-dd HH:mm:ss")
    assert written == f"{moment.year:04d}-{moment:%m-%d %H:%M:%S}"
