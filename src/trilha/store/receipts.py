"""What both backends share to store delivery receipts: the columns a
:class:`~trilha.store.base.Delivery` is read from, the receipt's trail line and the
undelivered rule (:func:`trilha.core.delivery.undelivered`) as SQL, so SQLite and
PostgreSQL cannot drift apart."""

from __future__ import annotations

from typing import Any

from trilha.core.delivery import LATE_SECONDS
from trilha.core.execution import LogRecord, iso
from trilha.store.base import Delivery

#: an outbox row as a :class:`Delivery` (in this order: :func:`row_to_delivery`)
DELIVERY_COLUMNS = (
    "id, execution_id, idempotency_key, text, step_seq, created_at, status, attempts,"
    " next_attempt_at, last_error, delivery_status, delivery_at, delivery_error"
)


def row_to_delivery(row: Any) -> Delivery:
    """A row of :data:`DELIVERY_COLUMNS` (a tuple or a driver's record)."""
    return Delivery(
        outbox_id=int(row[0]),
        execution_id=str(row[1]),
        idempotency_key=str(row[2]),
        text=str(row[3]),
        step_seq=int(row[4]),
        created_at=float(row[5]),
        status=str(row[6]),
        attempts=int(row[7]),
        next_attempt_at=float(row[8]) if row[8] is not None else None,
        last_error=row[9],
        receipt=row[10],
        receipt_at=float(row[11]) if row[11] is not None else None,
        receipt_error=row[12],
    )


def undelivered_sql(late_before: str) -> str:
    """The WHERE terms of an undelivered outbox row, with ``late_before`` the dialect's
    placeholder for ``now - LATE_SECONDS``."""
    return (
        "COALESCE(delivery_status, '') NOT IN ('delivered', 'read')"
        " AND (status = 'dead' OR delivery_status = 'failed'"
        f" OR (status = 'pending' AND (attempts > 0 OR created_at < {late_before})))"
    )


def late_before(now: float) -> float:
    return now - LATE_SECONDS


def receipt_line(
    delivery: Delivery, *, status: str, at: float, error: str | None, advanced: bool, now: float
) -> LogRecord:
    """The trail line of a recorded receipt: ``message.status`` (WARN for ``failed``),
    with the state the delivery is in after it; the store's sink masks it."""
    context: dict[str, Any] = {
        "idempotencyKey": delivery.idempotency_key,
        "status": status,
        "at": iso(at),
        "delivery": delivery.receipt,
        "advanced": advanced,
    }
    if error is not None:
        context["error"] = error
    level = "WARN" if status == "failed" else "INFO"
    return LogRecord(delivery.execution_id, level, "message.status", now, None, None, context)
