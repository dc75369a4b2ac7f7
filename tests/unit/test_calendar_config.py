"""Calendars in ``trilha.toml`` (``[calendars.NAME]``): read as the API reads them, for the
institutions they name (every one when they name none), refused with the key at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from trilha.config import load_config
from trilha.errors import ConfigError

GOOD = """
[calendars.clinic]
time_zone = "America/Sao_Paulo"
institutions = ["acme", "beta"]
holidays = ["2025-12-25", { date = "2025-12-24", name = "Véspera", hours = [["08:00", "12:00"]] }]

[calendars.clinic.hours]
mon = [["08:00", "12:00"], ["13:00", "18:00"]]
sat = [["08:00", "12:00"]]

[calendars.everyone]
timeZone = "UTC"
hours = { sun = [["10:00", "11:00"]] }

[calendars.star]
timeZone = "UTC"
institutions = ["*"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trilha.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_calendars_of_the_configuration(tmp_path: Path) -> None:
    """snake_case or camelCase keys, hours inline or as a table, holidays by date alone."""
    config = load_config(write(tmp_path, GOOD))
    clinic = config.calendars["clinic"]
    assert clinic.wire() == {
        "timeZone": "America/Sao_Paulo",
        "hours": {
            "mon": [["08:00", "12:00"], ["13:00", "18:00"]],
            "tue": [],
            "wed": [],
            "thu": [],
            "fri": [],
            "sat": [["08:00", "12:00"]],
            "sun": [],
        },
        "holidays": [
            {"date": "2025-12-24", "name": "Véspera", "hours": [["08:00", "12:00"]]},
            {"date": "2025-12-25"},
        ],
    }
    assert "institutions" not in clinic.wire()  # not part of the calendar flows read
    assert [clinic.serves(i) for i in ("acme", "beta", "gamma")] == [True, True, False]
    assert config.calendars["everyone"].serves("gamma")
    assert config.calendars["star"].serves("gamma")
    assert config.api.max_calendars == 100


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            '[calendars.clinic]\ntime_zone = "America/Sao_Pablo"\n',
            "calendars.clinic.time_zone: 'America/Sao_Pablo' is not an IANA time zone",
        ),
        (
            '[calendars.clinic]\ntimeZone = "UTC"\nhours = { fri = [["18:00", "08:00"]] }\n',
            "calendars.clinic.hours.fri[0]: the interval 18:00-08:00 ends before it starts",
        ),
        (
            '[calendars."the clinic"]\ntimeZone = "UTC"\n',
            "calendars: 'the clinic' is not a calendar's name",
        ),
        (
            '[calendars.clinic]\ntimeZone = "UTC"\ninstitutions = ["a b"]\n',
            "calendars.clinic.institutions[0]: String should match pattern",
        ),
        ("[calendars.clinic]\nhours = {}\n", "calendars.clinic.timeZone: Field required"),
        (
            "[api]\nmax_calendars = 0\n",
            "api.max_calendars: Input should be greater than or equal to 1",
        ),
    ],
)
def test_a_bad_calendar_names_its_key(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert says in str(caught.value)
