"""Signals: events from outside the conversation that a ``wait_event`` node waits for.

A payment service confirms a payment, a back office approves a refund: the platform
sends ``POST /v1/executions/{id}/signals/{event}`` with ``{"signalId", "payload"}``
(or ``trilha signal``). The store keeps each signal once per ``signalId`` and
execution, whenever it comes: a signal sent before the execution reaches its
``wait_event`` node is kept and consumed when it gets there, and a signal nothing
waits for stays pending (bounded by ``[engine] max_pending_signals``).

While a ``wait_event`` node waits, the execution is ``waiting_input`` with
``waitingFor`` ``event:<name>``: the contact's messages that arrive meanwhile stay in
the inbox for the next question, as during a ``delay``. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import Field

from trilha.core.budget import json_bytes
from trilha.errors import ConfigError, LimitExceeded

#: an event's name: letters, digits and ``_ . : -``, at most 100 characters
EVENT_PATTERN: Final = r"^[A-Za-z0-9_.:\-]{1,100}$"
MAX_EVENT_CHARS: Final = 100
#: a signal's id, chosen by the sender: any printable text (no control characters)
SIGNAL_ID_PATTERN: Final = r"^[^\x00-\x1f\x7f]+$"
MAX_SIGNAL_ID_CHARS: Final = 200
#: ``waitingFor`` of an execution waiting for an event: this prefix and the event's name
EVENT_WAIT_PREFIX: Final = "event:"

EventName = Annotated[str, Field(min_length=1, max_length=MAX_EVENT_CHARS, pattern=EVENT_PATTERN)]

_EVENT = re.compile(EVENT_PATTERN)
_SIGNAL_ID = re.compile(SIGNAL_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class Signal:
    """A signal as stored: ``consumed_at`` and ``consumed_step`` are set by the commit of
    the step that consumed it (``None`` while it is pending)."""

    id: int
    execution_id: str
    institution_id: str
    event: str
    signal_id: str
    payload: Any
    received_at: float
    consumed_at: float | None = None
    consumed_step: int | None = None

    @property
    def pending(self) -> bool:
        return self.consumed_at is None


def event_wait(event: str) -> str:
    """The ``waitingFor`` of an execution waiting for ``event``."""
    return f"{EVENT_WAIT_PREFIX}{event}"


def waited_event(waiting_for: str | None) -> str | None:
    """The event an execution waits for, from its ``waitingFor`` (``None``: not an event)."""
    if waiting_for is None or not waiting_for.startswith(EVENT_WAIT_PREFIX):
        return None
    return waiting_for[len(EVENT_WAIT_PREFIX) :]


def event_problem(event: str) -> str | None:
    """Why ``event`` is not an event's name, or ``None`` when it is."""
    if not _EVENT.fullmatch(event):
        return (
            f"event {event[:120]!r} is not an event name: 1 to {MAX_EVENT_CHARS} letters,"
            " digits, '_', '.', ':' or '-'"
        )
    return None


def check_signal(event: str, signal_id: str, payload: Any, *, max_bytes: int) -> int:
    """Refuse a signal that cannot be kept: a bad event name or signal id
    (:class:`ConfigError`), a payload larger than ``max_bytes`` as JSON
    (:class:`LimitExceeded`, naming ``max_value_bytes``). Returns the payload's size."""
    problem = event_problem(event)
    if problem is not None:
        raise ConfigError(problem, field="event")
    if not 1 <= len(signal_id) <= MAX_SIGNAL_ID_CHARS or not _SIGNAL_ID.fullmatch(signal_id):
        raise ConfigError(
            f"signalId must be 1 to {MAX_SIGNAL_ID_CHARS} printable characters",
            field="signalId",
        )
    size = json_bytes(payload)
    if size > max_bytes:
        raise LimitExceeded(
            f"the signal's payload is {size} bytes as JSON; the limit is {max_bytes}"
            " (max_value_bytes)",
            limit=max_bytes,
            field="payload",
        )
    return size
