"""``trilha stats``'s pure parts: the --since window, durations, tables, JSON, percentiles."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from trilha.core.percentiles import percentile
from trilha.errors import ConfigError
from trilha.observability.stats import (
    format_seconds,
    parse_since,
    stats_json,
    success_rate,
    tables,
)
from trilha.store.base import (
    FlowTurnStats,
    InstitutionErrors,
    NodeTypeStats,
    SlowNode,
    StoreStats,
)

#: 2027-01-15T08:00:00Z
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "back"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("1h", 3600),
        ("2d", 172_800),
        ("1w", 604_800),
        ("1.5h", 5400),
        (" 1H ", 3600),
    ],
)
def test_since_spans_count_back_from_now(value: str, back: float) -> None:
    assert parse_since(value, NOW) == NOW - back


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2027-01-15T07:00:00Z", NOW - 3600),
        ("2027-01-15T07:00:00+00:00", NOW - 3600),
        ("2027-01-15T04:00:00-03:00", NOW - 3600),
        ("2027-01-15T07:00:00", NOW - 3600),  # no offset: UTC, like every printed time
        ("2027-01-15T07:59:59.500Z", NOW - 0.5),
        ("2027-01-15", NOW - 8 * 3600),
    ],
)
def test_since_iso_times(value: str, expected: float) -> None:
    assert parse_since(value, NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("5x", "expected a span"),
        ("", "expected a span"),
        ("h", "expected a span"),
        ("-1h", "expected a span"),
        ("yesterday", "expected a span"),
        ("0m", "longer than zero"),
        ("2027-01-15T09:00:00Z", "still ahead"),
    ],
)
def test_bad_since_names_the_option_and_why(value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_since(value, NOW)
    assert str(caught.value).startswith(f"--since {value!r}: ")
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.0, "0µs"),
        (0.000013, "13µs"),
        (0.0123, "12.3ms"),
        (0.25, "250ms"),
        (1.234, "1.23s"),
        (59.994, "59.99s"),
        (125, "2m05s"),
        (3725, "1h02m"),
        (float("nan"), "-"),
    ],
)
def test_format_seconds(seconds: float, shown: str) -> None:
    assert format_seconds(seconds) == shown


def test_success_rate_of_no_runs_is_unknown() -> None:
    assert success_rate(0, 0) is None
    assert success_rate(4, 1) == 0.75


STATS = StoreStats(
    since=NOW - 3600,
    node_types=[NodeTypeStats("http", 4, 1, 0.25), NodeTypeStats("message", 3, 0, 0.000013)],
    flows=[FlowTurnStats("onboarding", 5, 1.5, 2.0, 125.0)],
    institutions=[InstitutionErrors("[acme]", 1, 1)],
    slowest_nodes=[SlowNode("onboarding", "lookup", "http", 4, 0.25, 1.234)],
)


def _render(stats: StoreStats) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, no_color=True)
    for table in tables(stats):
        console.print(table)
    return buffer.getvalue()


def test_tables_show_every_figure_readably() -> None:
    text = _render(STATS)
    rows = [" ".join(line.replace("│", " ").split()) for line in text.splitlines()]
    assert "http 4 1 75.0% 250ms" in rows
    assert "message 3 0 100.0% 13µs" in rows
    assert "onboarding 5 1.50s 2.00s 2m05s" in rows
    assert "[acme] 1 1" in rows  # ids are text, not rich markup
    assert "onboarding lookup http 4 250ms 1.23s" in rows
    assert "no " not in text


def test_empty_tables_say_the_window_held_nothing() -> None:
    text = _render(StoreStats(NOW - 3600, [], [], [], []))
    for what in ("node executions", "finished turns", "step errors or failed executions"):
        assert f"no {what} since 2027-01-15T07:00:00.000Z" in text
    for title in (
        "success rate by node type",
        "turn time by flow",
        "errors by institution",
        "slowest nodes",
    ):
        assert title in text


def test_json_is_camel_case_with_seconds() -> None:
    data = stats_json(STATS, institution_id="acme")
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "since": "2027-01-15T07:00:00.000Z",
        "institutionId": "acme",
        "nodeTypes": [
            {
                "nodeType": "http",
                "runs": 4,
                "errors": 1,
                "successRate": 0.75,
                "meanSeconds": 0.25,
            },
            {
                "nodeType": "message",
                "runs": 3,
                "errors": 0,
                "successRate": 1.0,
                "meanSeconds": 0.000013,
            },
        ],
        "flows": [
            {
                "flowId": "onboarding",
                "turns": 5,
                "meanSeconds": 1.5,
                "p95Seconds": 2.0,
                "maxSeconds": 125.0,
            }
        ],
        "institutions": [{"institutionId": "[acme]", "errors": 1, "failedExecutions": 1}],
        "slowestNodes": [
            {
                "flowId": "onboarding",
                "nodeId": "lookup",
                "nodeType": "http",
                "runs": 4,
                "meanSeconds": 0.25,
                "maxSeconds": 1.234,
            }
        ],
    }


def test_json_has_no_nan() -> None:
    """A figure that could not be taken is null: NaN is not JSON."""
    odd = StoreStats(NOW, [], [FlowTurnStats("f", 0, float("nan"), float("nan"), 1.0)], [], [])
    assert stats_json(odd)["flows"][0] == {
        "flowId": "f",
        "turns": 0,
        "meanSeconds": None,
        "p95Seconds": None,
        "maxSeconds": 1.0,
    }


@pytest.mark.parametrize(
    ("n", "fraction", "expected"),
    [
        (20, 0.95, 19),
        (100, 0.95, 95),
        (100, 0.99, 99),
        (100, 0.07, 7),
        (10, 0.5, 5),
        (3, 0.5, 2),
        (3, 0.95, 3),
        (1, 0.95, 1),
        (5, 0.0, 1),
        (5, 1.0, 5),
    ],
)
def test_percentile_is_nearest_rank(n: int, fraction: float, expected: int) -> None:
    """The ceil(fraction * n)-th smallest value, whatever the order given."""
    assert percentile([float(v) for v in range(n, 0, -1)], fraction) == expected
