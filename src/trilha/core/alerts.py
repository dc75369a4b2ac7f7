"""Alert rules and the life of an alert, as pure functions (DESIGN §5); no I/O.

A rule compares one signal (the step error rate, the longest turn, the due queue,
the host's memory, the messages given up) against a threshold, the way Prometheus
alerting rules do: a breach makes the alert *pending*; a breach that lasts
``for_seconds`` makes it *firing*; a signal back under the threshold makes a firing
alert *resolved* (kept so people can see when) and a pending one *inactive* again,
without a word to anyone. Only the moves to firing and to resolved are notified.

The defaults are DESIGN §5's four rules and ``dead_messages`` (issue 17: an
outbound message given up is never silent); ``[alerts.rules.NAME]`` in
``trilha.toml`` changes their thresholds, windows, delays and severities. The
same rules, in PromQL, ship in ``deploy/prometheus/alerts.yml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Severity = Literal["critical", "warning"]


class AlertStatus(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Signal(StrEnum):
    """What a rule watches; the evaluator knows how to read each one."""

    #: failed node executions / node executions over the window (store-wide)
    ERROR_RATE = "error_rate"
    #: the longest turn, in seconds, finished within the window or still running
    TURN_SECONDS = "turn_seconds"
    #: executions due now that no worker holds (store-wide)
    QUEUE_DUE = "queue_due"
    #: the host's memory in use, as a fraction (per host)
    MEMORY = "memory"
    #: outbound messages given up after their last attempt, not redriven (store-wide)
    DEAD_MESSAGES = "dead_messages"


@dataclass(frozen=True, slots=True)
class AlertRule:
    #: the configuration key (``error_rate``) and the alert's name (``TrilhaErrorRateHigh``)
    key: str
    name: str
    signal: Signal
    threshold: float
    window_seconds: float
    for_seconds: float
    severity: Severity
    #: an error rate over fewer node executions than this is not judged (one failure
    #: in three steps at night is not an incident)
    min_events: int = 0

    def describe(self, value: float | None) -> str:
        """One line for people: what was measured against what."""
        shown = "n/a" if value is None else format_signal(self.signal, value)
        limit = format_signal(self.signal, self.threshold)
        window = f" over {_span(self.window_seconds)}" if self.signal in _WINDOWED else ""
        return f"{_LABELS[self.signal]} {shown}{window} (threshold {limit})"


@dataclass(frozen=True, slots=True)
class AlertState:
    """An alert's state as stored (one row per rule and instance) and shown."""

    rule: str
    #: ``""`` for store-wide rules; the host name for per-host ones (memory)
    instance: str
    status: AlertStatus
    severity: Severity
    value: float | None
    threshold: float
    summary: str
    #: when the current breach began (pending or firing), else ``None``
    active_at: float | None
    fired_at: float | None
    resolved_at: float | None
    updated_at: float


_WINDOWED = {Signal.ERROR_RATE, Signal.TURN_SECONDS}
_LABELS = {
    Signal.ERROR_RATE: "step error rate",
    Signal.TURN_SECONDS: "longest turn",
    Signal.QUEUE_DUE: "executions due and unclaimed",
    Signal.MEMORY: "host memory in use",
    Signal.DEAD_MESSAGES: "messages given up (dead)",
}


def format_signal(signal: Signal | None, value: float) -> str:
    """A signal's value as people read it: a percentage, seconds or a count."""
    if signal in (Signal.ERROR_RATE, Signal.MEMORY):
        return f"{value:.1%}"
    if signal is Signal.TURN_SECONDS:
        return f"{value:.1f}s"
    return f"{value:.0f}"


def _span(seconds: float) -> str:
    return f"{seconds / 60:g}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g}s"


DEFAULT_RULES: tuple[AlertRule, ...] = (
    AlertRule(
        "error_rate", "TrilhaErrorRateHigh", Signal.ERROR_RATE, 0.05, 300, 60, "critical", 20
    ),
    AlertRule("slow_turn", "TrilhaTurnTooSlow", Signal.TURN_SECONDS, 30, 300, 0, "warning"),
    AlertRule("queue_backlog", "TrilhaQueueBacklog", Signal.QUEUE_DUE, 100, 0, 60, "warning"),
    AlertRule("memory", "TrilhaMemoryHigh", Signal.MEMORY, 0.8, 0, 120, "warning"),
    # fires while any message is dead: a contact was not told something, and only a
    # redrive (or a fix of the channel, then a redrive) resolves it
    AlertRule("dead_messages", "TrilhaDeadMessages", Signal.DEAD_MESSAGES, 0, 0, 0, "warning"),
)


#: the shortest stretch of time the evidence behind an alert covers, before it began
EVIDENCE_MIN_SECONDS = 300.0


def evidence_since(rule: AlertRule, state: AlertState) -> float:
    """Where the evidence behind an alert starts: the stretch the rule judged when the
    alert began (its window, or its delay for a rule without one, at least
    :data:`EVIDENCE_MIN_SECONDS`) before it became pending, else before it fired (a
    resolved alert), else before its last change."""
    began = state.active_at or state.fired_at or state.updated_at
    return began - max(rule.window_seconds, rule.for_seconds, EVIDENCE_MIN_SECONDS)


def breached(rule: AlertRule, value: float | None) -> bool:
    """Whether ``value`` is over the rule's threshold; an unknown value never is."""
    return value is not None and value > rule.threshold


def advance(
    rule: AlertRule,
    previous: AlertState | None,
    value: float | None,
    now: float,
    instance: str = "",
) -> tuple[AlertState, AlertStatus | None]:
    """The alert's next state given the signal's ``value`` now, and what to notify:
    :attr:`AlertStatus.FIRING` when it starts firing, :attr:`AlertStatus.RESOLVED`
    when a firing alert clears, else ``None``."""
    status = previous.status if previous else AlertStatus.INACTIVE
    active_at = previous.active_at if previous else None
    fired_at = previous.fired_at if previous else None
    resolved_at = previous.resolved_at if previous else None
    notify: AlertStatus | None = None
    if breached(rule, value):
        if status not in (AlertStatus.PENDING, AlertStatus.FIRING):
            status, active_at = AlertStatus.PENDING, now
        if status is AlertStatus.PENDING and now - (active_at or now) >= rule.for_seconds:
            status, fired_at, notify = AlertStatus.FIRING, now, AlertStatus.FIRING
    elif status is AlertStatus.FIRING:
        status, resolved_at, active_at, notify = (
            AlertStatus.RESOLVED,
            now,
            None,
            AlertStatus.RESOLVED,
        )
    elif status is AlertStatus.PENDING:
        status, active_at = AlertStatus.INACTIVE, None
    state = AlertState(
        rule=rule.name,
        instance=instance,
        status=status,
        severity=rule.severity,
        value=value,
        threshold=rule.threshold,
        summary=rule.describe(value),
        active_at=active_at,
        fired_at=fired_at,
        resolved_at=resolved_at,
        updated_at=now,
    )
    return state, notify
