"""``trilha stats`` as people and scripts read it: pure functions, no I/O.

The store does the aggregating (:meth:`~trilha.store.base.Store.stats`) so that
any process, not only the one that ran the steps, can answer "how are the flows
doing": Prometheus counters die with their process, the store's checkpoints and
turns do not. This module only turns a :class:`~trilha.store.base.StoreStats`
into rich tables for the console or one camelCase JSON object for scripts, and
reads the ``--since`` option.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from rich.markup import escape
from rich.table import Table

from trilha.core.execution import iso
from trilha.errors import ConfigError
from trilha.store.base import StoreStats

#: how many seconds one unit of a relative ``--since`` is
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_since(value: str, now: float) -> float:
    """The start of the window ``--since`` names, in epoch seconds.

    A span back from ``now`` (``90s``, ``30m``, ``1h``, ``2d``, ``1w``) is what people
    type at a terminal; an ISO-8601 time (``2026-05-01T12:00:00Z``; without an offset
    it is read as UTC, like every time trilha prints) is what a script that remembers
    its last run passes. Anything else, a zero span or a time still ahead, is a
    :class:`ConfigError` naming the option, since each would silently print an empty
    window and read as "no traffic"."""
    match = _RELATIVE.match(value)
    if match is not None:
        span = float(match.group(1)) * _UNITS[match.group(2).lower()]
        if span <= 0:
            raise ConfigError(f"--since {value!r}: the window must be longer than zero")
        return now - span
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"--since {value!r}: expected a span like 90s, 30m, 1h, 2d or 1w,"
            " or an ISO-8601 time like 2026-05-01T12:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    since = parsed.timestamp()
    if since > now:
        raise ConfigError(f"--since {value!r}: that time is still ahead (now is {iso(now)})")
    return since


def format_seconds(seconds: float) -> str:
    """A duration for people at the precision that matters at its size: a node runs in
    microseconds to seconds, a turn in milliseconds to minutes (waits on a dependency),
    so a single unit would either round nodes to zero or drown turns in digits."""
    if math.isnan(seconds):
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 0.1:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes}m{rest:02d}s"
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"


def success_rate(runs: int, errors: int) -> float | None:
    """The share of node runs that did not fail; ``None`` when there were none, so that
    "no runs" never reads as 0 % or 100 %."""
    return None if runs == 0 else (runs - errors) / runs


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def _empty(table: Table, what: str, since: float) -> Table:
    """An empty section still prints its headers, with a caption saying the window
    held nothing, so an operator can tell a quiet hour from a missing section."""
    if not table.rows:
        table.caption = f"no {what} since {iso(since)}"
        table.caption_justify = "left"
        table.min_width = len(table.caption)  # on one line, however narrow the columns
    return table


def heading(stats: StoreStats, *, institution_id: str | None = None) -> str:
    """The line above the tables: the window and the filter they were taken with."""
    scope = f" · institution {institution_id}" if institution_id is not None else ""
    return f"since {iso(stats.since)}{scope}"


def tables(stats: StoreStats) -> list[Table]:
    """The four sections of ``trilha stats``, in the order an operator asks: what fails,
    how long contacts wait, who is affected, and where the time goes."""
    by_type = Table(
        "node type",
        "runs",
        "errors",
        "success",
        "mean",
        title="success rate by node type",
        title_justify="left",
    )
    for n in stats.node_types:
        by_type.add_row(
            escape(n.node_type),
            str(n.runs),
            str(n.errors),
            _percent(success_rate(n.runs, n.errors)),
            format_seconds(n.mean_seconds),
        )
    by_flow = Table(
        "flow", "turns", "mean", "p95", "max", title="turn time by flow", title_justify="left"
    )
    for f in stats.flows:
        by_flow.add_row(
            escape(f.flow_id),
            str(f.turns),
            format_seconds(f.mean_seconds),
            format_seconds(f.p95_seconds),
            format_seconds(f.max_seconds),
        )
    by_institution = Table(
        "institution",
        "step errors",
        "failed executions",
        title="errors by institution",
        title_justify="left",
    )
    for i in stats.institutions:
        by_institution.add_row(escape(i.institution_id), str(i.errors), str(i.failed_executions))
    slowest = Table(
        "flow",
        "node",
        "type",
        "runs",
        "mean",
        "max",
        title="slowest nodes (by mean)",
        title_justify="left",
    )
    for s in stats.slowest_nodes:
        slowest.add_row(
            escape(s.flow_id),
            escape(s.node_id),
            escape(s.node_type or "-"),
            str(s.runs),
            format_seconds(s.mean_seconds),
            format_seconds(s.max_seconds),
        )
    for column_table in (by_type, by_flow, by_institution, slowest):
        for column in column_table.columns[1:]:
            column.justify = "right"
    slowest.columns[1].justify = slowest.columns[2].justify = "left"
    return [
        _empty(by_type, "node executions", stats.since),
        _empty(by_flow, "finished turns", stats.since),
        _empty(by_institution, "step errors or failed executions", stats.since),
        _empty(slowest, "node executions", stats.since),
    ]


def _seconds(value: float) -> float | None:
    """JSON has no NaN: a figure that could not be taken is ``null``."""
    return None if math.isnan(value) else value


def stats_json(stats: StoreStats, *, institution_id: str | None = None) -> dict[str, Any]:
    """One JSON object, camelCase like every trilha wire shape, durations in seconds;
    for scripts and dashboards that must not parse the tables."""
    return {
        "since": iso(stats.since),
        "institutionId": institution_id,
        "nodeTypes": [
            {
                "nodeType": n.node_type,
                "runs": n.runs,
                "errors": n.errors,
                "successRate": success_rate(n.runs, n.errors),
                "meanSeconds": _seconds(n.mean_seconds),
            }
            for n in stats.node_types
        ],
        "flows": [
            {
                "flowId": f.flow_id,
                "turns": f.turns,
                "meanSeconds": _seconds(f.mean_seconds),
                "p95Seconds": _seconds(f.p95_seconds),
                "maxSeconds": _seconds(f.max_seconds),
            }
            for f in stats.flows
        ],
        "institutions": [
            {
                "institutionId": i.institution_id,
                "errors": i.errors,
                "failedExecutions": i.failed_executions,
            }
            for i in stats.institutions
        ],
        "slowestNodes": [
            {
                "flowId": s.flow_id,
                "nodeId": s.node_id,
                "nodeType": s.node_type,
                "runs": s.runs,
                "meanSeconds": _seconds(s.mean_seconds),
                "maxSeconds": _seconds(s.max_seconds),
            }
            for s in stats.slowest_nodes
        ],
    }
