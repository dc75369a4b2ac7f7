"""A bot message's delivery: the channel's receipts and the outbox's own state, as rules.

The channel reports what became of a message (``POST /v1/conversations/{id}/statuses``)
in any order and any number of times: a ``sent`` may arrive after its ``read``. The
state shown is the furthest one reported, so a late receipt never lowers it; every
receipt is still recorded (and written to the trail). ``failed`` only overrides
``sent``: a message the contact received or read was delivered whatever a later
``failed`` says, and a ``delivered`` after a ``failed`` proves the failure wrong.

Pure rules, shared by both stores and the views: no I/O here.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

ReceiptStatus = Literal["sent", "delivered", "read", "failed"]

#: the statuses a channel may report, in the order of the wire's documentation
RECEIPT_STATUSES: Final[tuple[str, ...]] = get_args(ReceiptStatus)

#: how far along each status is; a receipt moves the state only to a higher rank
_RANK: Final[dict[str, int]] = {"sent": 1, "failed": 2, "delivered": 3, "read": 4}

#: a pending message not delivered this long after it was queued is late (undelivered)
LATE_SECONDS: Final[float] = 30.0

OutboxState = Literal["queued", "pending", "sent", "dead"]


def advances(current: str | None, status: str) -> bool:
    """Whether a receipt of ``status`` moves a delivery now at ``current`` (``None``: no
    receipt yet) forward; unknown statuses never do."""
    rank = _RANK.get(status)
    if rank is None:
        return False
    return current is None or rank > _RANK.get(current, 0)


def outbox_state(status: str, attempts: int) -> OutboxState:
    """The outbox's state as the transcript shows it: ``queued`` (not tried yet),
    ``pending`` (tried and failed, to be tried again), ``sent`` (the channel accepted
    it) or ``dead`` (given up)."""
    if status == "sent":
        return "sent"
    if status == "dead":
        return "dead"
    return "pending" if attempts > 0 else "queued"


def undelivered(
    status: str, attempts: int, created_at: float, receipt: str | None, *, now: float
) -> bool:
    """Whether a message is in trouble: given up (``dead``), failed at least once and
    still pending, pending for longer than :data:`LATE_SECONDS`, or reported ``failed``
    by the channel. A ``delivered`` or ``read`` receipt settles it whatever the outbox
    says (the channel had it although its answer was lost). The stores' grouped count
    (:meth:`~trilha.store.base.Store.undelivered`) applies the same rule in SQL."""
    if receipt in ("delivered", "read"):
        return False
    if status == "dead" or receipt == "failed":
        return True
    return status == "pending" and (attempts > 0 or created_at < now - LATE_SECONDS)
