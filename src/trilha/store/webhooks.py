"""What both backends share to keep channels' webhook bodies (:class:`ChannelWebhook`):
the columns read and how a row becomes one, so SQLite and PostgreSQL cannot drift apart.
Each backend keeps its own SQL (``webhooks_sqlite``, ``webhooks_postgres``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from trilha.store.base import ChannelWebhook

#: the columns of ``channel_webhooks`` read back, in :func:`row_to_webhook`'s order
WEBHOOK_COLUMNS: Final = (
    "id, channel, body, received_at, status, attempts, next_attempt_at, progress,"
    " last_error, processed_at, lease_owner, lease_expires_at"
)
#: the longest error or note kept on a body
MAX_WEBHOOK_ERROR: Final = 2_000
#: conversations one body may name (WhatsApp's parser allows 1,000 updates a body)
MAX_WEBHOOK_KEYS: Final = 1_000
#: the longest conversation key (WhatsApp's ``phone_number_id:wa_id`` is under 170)
MAX_WEBHOOK_KEY: Final = 300


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


def checked_keys(keys: Sequence[str]) -> list[str]:
    """``keys`` without repeats, in order; :class:`ValueError` past the bounds."""
    unique = list(dict.fromkeys(keys))
    if len(unique) > MAX_WEBHOOK_KEYS:
        raise ValueError(
            f"keys: {len(unique)} conversations in one body: at most {MAX_WEBHOOK_KEYS}"
        )
    for key in unique:
        if not key or len(key) > MAX_WEBHOOK_KEY:
            raise ValueError(f"keys: a conversation key must be 1 to {MAX_WEBHOOK_KEY} characters")
    return unique


def claimable(rows: Iterable[Any], limit: int) -> list[int]:
    """The ids a claim takes, from the channel's ``pending`` bodies as ``(id, ready,
    conversation_key)`` rows in id order (one row per key, ``None`` for a body with
    none; ``ready``: due and under no live lease). A body is taken only when no older
    pending body that is not taken with it names one of its conversations: so a
    contact's bodies go in the order stored (an older one waiting for its retry, or
    leased elsewhere, holds the later ones back, and so does one it holds back in
    turn), while other contacts' bodies go on. Bodies taken together are processed in
    order by the claimer (``_chain``), so they hold nothing back among themselves."""
    taken: list[int] = []
    if limit <= 0:
        return taken
    blocked: set[str] = set()
    current: int | None = None
    ready = False
    keys: set[str] = set()

    def close() -> bool:
        if current is None:
            return False
        if ready and not keys & blocked:
            taken.append(current)
            return len(taken) >= limit
        blocked.update(keys)
        return False

    for row in rows:
        webhook_id = int(row[0])
        if webhook_id != current:
            if close():
                return taken
            current, ready, keys = webhook_id, bool(row[1]), set()
        if row[2] is not None:
            keys.add(str(row[2]))
    close()
    return taken
