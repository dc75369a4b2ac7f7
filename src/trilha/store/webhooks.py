"""What both backends share to keep channels' webhook bodies (:class:`ChannelWebhook`):
the columns read and how a row becomes one, so SQLite and PostgreSQL cannot drift apart.
Each backend keeps its own SQL (``webhooks_sqlite``, ``webhooks_postgres``)."""

from __future__ import annotations

from typing import Any, Final

from trilha.store.base import ChannelWebhook

#: the columns of ``channel_webhooks`` read back, in :func:`row_to_webhook`'s order
WEBHOOK_COLUMNS: Final = (
    "id, channel, body, received_at, status, attempts, next_attempt_at, progress,"
    " last_error, processed_at, lease_owner, lease_expires_at"
)
#: the longest error or note kept on a body
MAX_WEBHOOK_ERROR: Final = 2_000


def row_to_webhook(row: Any) -> ChannelWebhook:
    return ChannelWebhook(
        id=int(row[0]),
        channel=str(row[1]),
        body=bytes(row[2]),
        received_at=float(row[3]),
        status=str(row[4]),
        attempts=int(row[5]),
        next_attempt_at=float(row[6]),
        progress=int(row[7]),
        last_error=row[8],
        processed_at=None if row[9] is None else float(row[9]),
        lease_owner=row[10],
        lease_expires_at=None if row[11] is None else float(row[11]),
    )


def bounded(error: str | None) -> str | None:
    return None if error is None else error[:MAX_WEBHOOK_ERROR]
