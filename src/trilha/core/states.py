"""Execution states and the one transition table.

Every change of an execution's state goes through :func:`check_transition`,
so the engine, the operator controls and the recovery paths cannot disagree on
what is legal. The table is data, which lets tests and the invariant checker
replay a stored history against it.
"""

from __future__ import annotations

from enum import StrEnum

from trilha.errors import IllegalTransition


class ExecutionStatus(StrEnum):
    """The eleven states an execution can be in."""

    RUNNING = "running"
    WAITING_INPUT = "waiting_input"
    WAITING_DELAY = "waiting_delay"
    RECOVERING = "recovering"
    PAUSED = "paused"
    FALLBACK = "fallback"
    DEGRADED = "degraded"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def waiting(self) -> bool:
        """True when the execution waits on something outside the engine."""
        return self in (ExecutionStatus.WAITING_INPUT, ExecutionStatus.WAITING_DELAY)


class Outcome(StrEnum):
    """How a terminal execution ended, beyond its status."""

    COMPLETED = "completed"
    ESCALATED = "escalated"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    INVALID_INPUT = "invalid_input"
    #: the contact was silent for the flow's ``settings.sessionTimeoutSeconds`` (state
    #: ``timeout``): the conversation was closed for inactivity, wherever it waited
    EXPIRED = "expired"


S = ExecutionStatus

TERMINAL: frozenset[ExecutionStatus] = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMEOUT})

_ACTIVE = frozenset(set(S) - TERMINAL)

#: from-state -> the states it may move to. ``None`` is the birth of an execution.
TRANSITIONS: dict[ExecutionStatus | None, frozenset[ExecutionStatus]] = {
    None: frozenset({S.RUNNING}),
    S.RUNNING: _ACTIVE - {S.RUNNING} | TERMINAL,
    S.WAITING_INPUT: frozenset({S.RUNNING, S.RECOVERING, S.PAUSED, S.FALLBACK} | TERMINAL)
    - {S.COMPLETED},
    S.WAITING_DELAY: frozenset({S.RUNNING, S.RECOVERING, S.PAUSED, S.FALLBACK} | TERMINAL)
    - {S.COMPLETED},
    S.RECOVERING: _ACTIVE - {S.RECOVERING} | TERMINAL,
    # An operator's pause is left only by resume (back to where it was),
    # advance (running) or cancel.
    S.PAUSED: frozenset({S.RUNNING, S.WAITING_INPUT, S.WAITING_DELAY, S.CANCELLED}),
    S.FALLBACK: _ACTIVE - {S.FALLBACK} | TERMINAL,
    S.DEGRADED: _ACTIVE - {S.DEGRADED} | TERMINAL,
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.TIMEOUT: frozenset(),
}


def is_allowed(source: ExecutionStatus | None, target: ExecutionStatus) -> bool:
    """Whether the table allows ``source -> target``."""
    return target in TRANSITIONS[source]


def check_transition(source: ExecutionStatus | None, target: ExecutionStatus) -> None:
    """Refuse an illegal transition; staying in the same state is not a transition."""
    if source == target:
        return
    if not is_allowed(source, target):
        raise IllegalTransition(
            f"illegal transition {source or 'new'} -> {target}",
            source=source,
            target=target,
        )
