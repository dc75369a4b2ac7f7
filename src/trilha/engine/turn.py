"""One turn's pending commit, and the small helpers the step loop and recovery share.

A turn is what a worker does with one claimed execution before it waits, ends or
commits: ``_Turn`` accumulates the checkpoints, transitions, logs and messages of
that turn so they reach the store in one ``commit_step``. Nothing here does I/O.
"""

from __future__ import annotations

import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

from trilha.core.execution import InboundMessage
from trilha.core.signals import Signal
from trilha.errors import TrilhaError
from trilha.store.base import StepCommit


def new_id() -> str:
    return uuid.uuid4().hex


def new_worker_id() -> str:
    """A lease owner's name: one per worker, and a new one after a store outage."""
    return f"worker-{new_id()[:12]}"


def set_path(variables: dict[str, Any], path: str, value: Any) -> None:
    """Assign ``a.b.c`` inside nested objects, replacing non-objects on the way."""
    head, *rest = path.split(".")
    if not rest:
        variables[head] = value
        return
    child = variables.get(head)
    if not isinstance(child, dict):
        child = {}
        variables[head] = child
    set_path(child, ".".join(rest), value)


def with_path(variables: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``variables`` with ``a.b.c`` assigned, as :func:`set_path` would, but as a new
    mapping that shares every untouched part and leaves ``variables`` as it was."""
    head, *rest = path.split(".")
    out = dict(variables)
    if not rest:
        out[head] = value
        return out
    child = variables.get(head)
    out[head] = with_path(child if isinstance(child, dict) else {}, ".".join(rest), value)
    return out


def describe_error(exc: BaseException) -> dict[str, Any]:
    details = exc.details if isinstance(exc, TrilhaError) else {}
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "code": getattr(exc, "code", None),
        "details": {k: v for k, v in details.items() if isinstance(v, str | int | float | None)},
        # an expected failure (a 503, a timeout) is explained by its message; a stack is
        # kept for the unexpected ones, where it is the clue
        "stack": None
        if isinstance(exc, TrilhaError)
        else "".join(traceback.format_exception(exc, limit=8))[-4000:],
    }


@dataclass(slots=True)
class _Turn:
    """The parts of one commit being accumulated while nodes run."""

    commit: StepCommit
    inbound: InboundMessage | None
    resumed_by: str | None
    steps: int = 0
    #: the pending signal a ``wait_event`` node of this turn is to take, read before it runs
    signal: Signal | None = None
    pending: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: when the contact last wrote, as far as this turn knows (its message, or the
    #: store's answer once read: ``heard_read``), for a channel's service window
    heard_at: float | None = None
    heard_read: bool = False
    #: the contact's message this turn answers (the reply it consumed, or the message
    #: that started the execution through a trigger), set on the messages it sends
    reply_to: str | None = None
