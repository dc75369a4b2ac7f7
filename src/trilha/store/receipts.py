"""What both backends share to store delivery receipts: the columns a
:class:`~trilha.store.base.Delivery` is read from, the receipt's trail line and the
undelivered rule (:func:`trilha.core.delivery.undelivered`) as SQL, so SQLite and
PostgreSQL cannot drift apart."""

from __future__ import annotations

from typing import Any

from trilha.core.delivery import LATE_SECONDS
from trilha.core.execution import LogRecord, dumps, iso
from trilha.core.reengage import template_instead
from trilha.store.base import Delivery, TemplateResend
from trilha.store.rows import loads_or_none

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


#: an outbox row as :func:`resend_decision` reads it (in this order)
RESEND_COLUMNS = "id, execution_id, status, lease_expires_at, content, text, attempts, last_error"


def resend_decision(
    row: Any, *, idempotency_key: str, code: int, error: str | None, now: float, first: bool
) -> tuple[TemplateResend, str | None, list[LogRecord]]:
    """What :meth:`~trilha.store.base.Store.resend_as_template` does with the row of
    :data:`RESEND_COLUMNS` (``None``: not found): its outcome, the switched content as
    JSON text (``None``: nothing to update) and the trail lines to write."""
    if row is None:
        return TemplateResend("not_found"), None, []
    execution_id = str(row[1])
    content = loads_or_none(row[4])
    said: dict[str, Any] = {"idempotencyKey": idempotency_key, "code": code}
    if error is not None:
        said["error"] = error
    if content is not None and content.get("type") == "template":
        return TemplateResend("switched", execution_id), None, []
    instead = template_instead(content, str(row[5]))
    if instead is None:
        lines = []
        if first:
            said["reason"] = (
                "outside_window: the contact's 24-hour window was closed and the message"
                " has no template to send instead"
            )
            lines.append(
                LogRecord(execution_id, "WARN", "message.outside_window", now, None, None, said)
            )
        return TemplateResend("no_template", execution_id), None, lines
    lease_expires_at = row[3]
    if str(row[2]) == "pending" and lease_expires_at is not None and lease_expires_at >= now:
        return TemplateResend("in_flight", execution_id), None, []
    said["template"] = instead["template"].get("name")
    said["from"] = str(row[2])
    said["attempts"] = int(row[6])
    line = LogRecord(execution_id, "WARN", "message.resent_as_template", now, None, None, said)
    return TemplateResend("resent", execution_id), dumps(instead), [line]


def resent_error(code: int, error: str | None) -> str:
    """The outbox's ``lastError`` of a message queued again as its template."""
    return f"outside_window: {error or code}; its template is sent instead"[:2000]


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
