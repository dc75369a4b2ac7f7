"""PostgreSQL's SQL for channels' webhook bodies (:mod:`trilha.store.webhooks`).

Functions of a pooled connection inside the caller's transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeAlias

import asyncpg

from trilha.store.base import ChannelWebhook
from trilha.store.webhooks import WEBHOOK_COLUMNS, bounded, row_to_webhook

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]

#: the advisory lock of a claim (the store's namespace: see postgres._MIGRATION_LOCK)
_CLAIM_LOCK: Final = 0x7472_696C_6861_0003
#: a lease that still holds at $3: not expired, its owner not declared stopped
_LIVE = (
    "{t}.lease_owner IS NOT NULL AND {t}.lease_expires_at >= $3 AND {t}.lease_owner NOT IN"
    " (SELECT worker_id FROM workers WHERE alive_until < $3)"
)


async def receive(conn: Connection, channel: str, body: bytes, now: float) -> int:
    found = await conn.fetchval(
        "INSERT INTO channel_webhooks (channel, body, received_at, next_attempt_at)"
        " VALUES ($1, $2, $3, $3) RETURNING id",
        channel,
        body,
        now,
    )
    return int(found)


async def claim(
    conn: Connection, channel: str, owner: str, *, now: float, lease_seconds: float, limit: int
) -> list[ChannelWebhook]:
    # one claim at a time: "nothing overtakes a body under a live lease" reads the other
    # claims' leases, which a concurrent claim would not see yet. A claim under way
    # elsewhere makes this one a no-op (the processor comes back next round), not a wait
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _CLAIM_LOCK):
        return []
    rows = await conn.fetch(
        "UPDATE channel_webhooks SET lease_owner = $1, lease_expires_at = $2,"
        " attempts = attempts + 1 WHERE id IN ("
        " SELECT w.id FROM channel_webhooks w WHERE w.status = 'pending' AND w.channel = $5"
        " AND w.next_attempt_at <= $3 AND NOT (" + _LIVE.format(t="w") + ")"
        " AND NOT EXISTS (SELECT 1 FROM channel_webhooks o WHERE o.status = 'pending'"
        " AND o.channel = w.channel AND o.id < w.id AND " + _LIVE.format(t="o") + ")"
        f" ORDER BY w.id LIMIT $4 FOR UPDATE) RETURNING {WEBHOOK_COLUMNS}",
        owner,
        now + lease_seconds,
        now,
        limit,
        channel,
    )
    return sorted((row_to_webhook(r) for r in rows), key=lambda w: w.id)


async def settle(
    conn: Connection,
    webhook_id: int,
    *,
    owner: str,
    now: float,
    status: str,
    error: str | None,
    retry_at: float | None,
    progress: int,
) -> bool:
    done = await conn.execute(
        "UPDATE channel_webhooks SET status = $1, last_error = $2, progress = $3,"
        " next_attempt_at = $4, processed_at = $5, lease_owner = NULL,"
        " lease_expires_at = NULL WHERE id = $6 AND lease_owner = $7 AND status = 'pending'",
        status,
        bounded(error),
        progress,
        retry_at if retry_at is not None else now,
        None if status == "pending" else now,
        webhook_id,
        owner,
    )
    return str(done).endswith(" 1")


async def listed(
    conn: Connection, channel: str, *, limit: int, status: str | None
) -> list[ChannelWebhook]:
    rows = await conn.fetch(
        f"SELECT {WEBHOOK_COLUMNS} FROM channel_webhooks WHERE channel = $1"
        " AND ($2::text IS NULL OR status = $2) ORDER BY id LIMIT $3",
        channel,
        status,
        limit,
    )
    return [row_to_webhook(r) for r in rows]


async def purge(conn: Connection, before: float, limit: int) -> int:
    done = await conn.execute(
        "DELETE FROM channel_webhooks WHERE id IN (SELECT id FROM channel_webhooks"
        " WHERE status <> 'pending' AND processed_at < $1 ORDER BY processed_at LIMIT $2)",
        before,
        limit,
    )
    return int(str(done).rsplit(" ", 1)[-1])
