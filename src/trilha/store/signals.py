"""What both backends share to keep signals (:mod:`trilha.core.signals`): the columns a
:class:`~trilha.core.signals.Signal` is read from, the trail line of a received one and
the refusals, so SQLite and PostgreSQL cannot drift apart."""

from __future__ import annotations

from typing import Any

from trilha.core.execution import LogRecord
from trilha.core.signals import Signal
from trilha.core.states import ExecutionStatus
from trilha.errors import ExecutionEnded, ExecutionNotFound, LimitExceeded
from trilha.store.rows import loads_or_none

#: a signals row as a :class:`Signal` (in this order: :func:`row_to_signal`)
SIGNAL_COLUMNS = (
    "id, execution_id, institution_id, event, signal_id, payload, received_at,"
    " consumed_at, consumed_step"
)


def row_to_signal(row: Any) -> Signal:
    """A row of :data:`SIGNAL_COLUMNS` (a tuple or a driver's record)."""
    return Signal(
        id=int(row[0]),
        execution_id=str(row[1]),
        institution_id=str(row[2]),
        event=str(row[3]),
        signal_id=str(row[4]),
        payload=loads_or_none(row[5]),
        received_at=float(row[6]),
        consumed_at=float(row[7]) if row[7] is not None else None,
        consumed_step=int(row[8]) if row[8] is not None else None,
    )


def received_line(signal: Signal, node_id: str | None, payload_bytes: int) -> LogRecord:
    """The trail line of a stored signal (``signal.received``): which event, which id and
    how large; the payload itself is the step's input once a step consumes it (and is
    listed by ``GET /v1/executions/{id}/signals``), not copied into the trail."""
    return LogRecord(
        signal.execution_id,
        "INFO",
        "signal.received",
        signal.received_at,
        node_id,
        None,
        {"event": signal.event, "signalId": signal.signal_id, "payloadBytes": payload_bytes},
    )


def not_found(execution_id: str) -> ExecutionNotFound:
    return ExecutionNotFound(f"no execution '{execution_id}'")


def ended(execution_id: str, status: ExecutionStatus | None, raw: Any) -> ExecutionEnded:
    return ExecutionEnded(
        f"execution '{execution_id}' is {raw}; it takes no more signals", status=status
    )


def too_many(execution_id: str, pending: int, limit: int) -> LimitExceeded:
    return LimitExceeded(
        f"execution '{execution_id}' has {pending} signals not consumed yet; the limit is"
        f" {limit} (max_pending_signals): a signal nothing waits for is kept until a"
        " wait_event node takes it",
        limit=limit,
        setting="engine.max_pending_signals",
    )
