"""Which operator controls an execution allows right now, and why not.

One function answers for both sides: the operator refuses an operation with the
reason given here, and the debugger disables the button with the same reason,
so a button is never enabled for a move the server would refuse (or the other
way round). The rules come from the one transition table
(:mod:`trilha.core.states`); nothing here reads a clock or a store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from trilha.core.execution import Execution
from trilha.core.hold import held
from trilha.core.states import ExecutionStatus, is_allowed

S = ExecutionStatus

Operation = Literal[
    "pause", "resume", "cancel", "advance", "retry", "variables", "message", "handback"
]
OPERATIONS: tuple[Operation, ...] = (
    "pause",
    "resume",
    "cancel",
    "advance",
    "retry",
    "variables",
    "message",
    "handback",
)

#: why a held conversation is not resumed or advanced: the person gives it back
_HELD = "a person holds the conversation: hand it back (handback) to move it on"

#: what a paused execution waited on, by the state it returns to
WAITS: dict[ExecutionStatus, str] = {S.WAITING_INPUT: "input", S.WAITING_DELAY: "timer"}


@dataclass(frozen=True, slots=True)
class Control:
    """Whether an operation may be asked for, and if not, why (``it is completed``)."""

    allowed: bool
    reason: str | None = None

    def wire(self) -> dict[str, object]:
        return {"allowed": self.allowed, "reason": self.reason}


def resume_target(ex: Execution) -> ExecutionStatus:
    """Where ``resume`` returns a paused execution: the wait it was paused from, else
    ``running`` (``paused -> recovering`` is not in the table: a backoff is retried now)."""
    paused_from = ex.paused_from
    return paused_from if paused_from is not None and paused_from in WAITS else S.RUNNING


def target(ex: Execution, operation: Operation) -> ExecutionStatus:
    """The state ``operation`` moves the execution to (its own for the ones that move
    nothing)."""
    if operation == "pause":
        return S.PAUSED
    if operation == "resume":
        return resume_target(ex)
    if operation == "cancel":
        return S.CANCELLED
    if operation in ("advance", "retry", "handback"):
        return S.RUNNING
    return ex.status


def refusal(ex: Execution, operation: Operation, now: float) -> str | None:
    """Why ``operation`` cannot be applied to ``ex`` now, or ``None`` when it can."""
    status = ex.status
    state = f"it is {status.value}"
    if operation == "retry":
        if status is not S.RECOVERING:
            final = " (it is final: start a new execution)" if status.terminal else ""
            return (
                f"{state}{final}; only a recovering execution waiting for its next attempt"
                " can be retried"
            )
        if ex.lease_expires_at is not None and ex.lease_expires_at >= now:
            return "a worker is running it right now"
        return None
    if status.terminal:
        return state
    if operation == "handback":
        if held(ex):
            return None
        paused = " (paused by an operator)" if status is S.PAUSED else ""
        return f"{state}{paused}; only a conversation a person holds can be handed back"
    if operation in ("resume", "advance") and held(ex):
        return _HELD
    if operation == "pause" and status is S.PAUSED:
        return state
    if operation == "resume" and status is not S.PAUSED:
        return state
    goal = target(ex, operation)
    if goal is not status and not is_allowed(status, goal):
        return state
    return None


def controls(ex: Execution, now: float, *, read_only: str | None = None) -> dict[str, Control]:
    """Every operation with whether it is allowed now; ``read_only`` (the reason a
    caller may not change anything, e.g. a viewer key) refuses them all."""
    found: dict[str, Control] = {}
    for operation in OPERATIONS:
        why = read_only or refusal(ex, operation, now)
        found[operation] = Control(why is None, why)
    return found
