"""PostgreSQL's SQL for channels' webhook bodies (:mod:`trilha.store.webhooks`).

Functions of a pooled connection inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, TypeAlias

import asyncpg

from trilha.store.base import ChannelWebhook
from trilha.store.webhooks import (
    WEBHOOK_COLUMNS,
    bounded,
    checked_keys,
    claimable,
    row_to_webhook,
)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]

#: the advisory lock of a claim (the store's namespace: see postgres._MIGRATION_LOCK)
_CLAIM_LOCK: Final = 0x7472_696C_6861_0003
#: a lease that still holds at $1: not expired, its owner not declared stopped
_LIVE = (
    "{t}.lease_owner IS NOT NULL AND {t}.lease_expires_at >= $1 AND {t}.lease_owner NOT IN"
    " (SELECT worker_id FROM workers WHERE alive_until < $1)"
)


async def receive(
    conn: Connection, channel: str, body: bytes, now: float, keys: Sequence[str] = ()
) -> int:
    unique = checked_keys(keys)
    found = int(
        await conn.fetchval(
            "INSERT INTO channel_webhooks (channel, body, received_at, next_attempt_at)"
            " VALUES ($1, $2, $3, $3) RETURNING id",
            channel,
            body,
            now,
        )
    )
    if unique:
        await conn.execute(
            "INSERT INTO channel_webhook_keys (webhook_id, conversation_key)"
            " SELECT $1, unnest($2::text[])",
            found,
            unique,
        )
    return found


async def claim(
    conn: Connection, channel: str, owner: str, *, now: float, lease_seconds: float, limit: int
) -> list[ChannelWebhook]:
    # one claim at a time: "nothing overtakes a body under a live lease" reads the other
    # claims' leases, which a concurrent claim would not see yet. A claim under way
    # elsewhere makes this one a no-op (the processor comes back next round), not a wait
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _CLAIM_LOCK):
        return []
    # the older bodies' state read here holds until the update: claims take turns
    # (the lock), and a body settled meanwhile only holds a later one back for a round
    due = await conn.fetchval(
        "SELECT 1 FROM channel_webhooks w WHERE w.status = 'pending' AND w.channel = $2"
        " AND w.next_attempt_at <= $1 AND NOT (" + _LIVE.format(t="w") + ") LIMIT 1",
        now,
        channel,
    )
    if due is None:  # the usual poll: nothing to read further
        return []
    # every pending body of the channel with its conversations, oldest first: which of
    # them may go is decided as both backends decide it (webhooks.claimable)
    pending = await conn.fetch(
        "SELECT w.id, w.next_attempt_at <= $1 AND NOT (" + _LIVE.format(t="w") + "),"
        " k.conversation_key FROM channel_webhooks w"
        " LEFT JOIN channel_webhook_keys k ON k.webhook_id = w.id"
        " WHERE w.status = 'pending' AND w.channel = $2 ORDER BY w.id",
        now,
        channel,
    )
    ids = claimable(pending, limit)
    if not ids:
        return []
    rows = await conn.fetch(
        "UPDATE channel_webhooks SET lease_owner = $1, lease_expires_at = $2,"
        " attempts = attempts + 1 WHERE id = ANY($3::bigint[]) AND status = 'pending'"
        f" RETURNING {WEBHOOK_COLUMNS}",
        owner,
        now + lease_seconds,
        ids,
    )
    return sorted((row_to_webhook(r) for r in rows), key=lambda w: w.id)


async def release(conn: Connection, ids: Sequence[int], owner: str) -> int:
    done = await conn.execute(
        "UPDATE channel_webhooks SET lease_owner = NULL, lease_expires_at = NULL,"
        " attempts = GREATEST(attempts - 1, 0) WHERE id = ANY($1::bigint[])"
        " AND lease_owner = $2 AND status = 'pending'",
        [int(i) for i in ids],
        owner,
    )
    return int(str(done).rsplit(" ", 1)[-1])


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
    ids = [
        int(r[0])
        for r in await conn.fetch(
            "SELECT id FROM channel_webhooks WHERE status <> 'pending' AND processed_at < $1"
            " ORDER BY processed_at LIMIT $2",
            before,
            limit,
        )
    ]
    if not ids:
        return 0
    await conn.execute("DELETE FROM channel_webhook_keys WHERE webhook_id = ANY($1::bigint[])", ids)
    done = await conn.execute("DELETE FROM channel_webhooks WHERE id = ANY($1::bigint[])", ids)
    return int(str(done).rsplit(" ", 1)[-1])
