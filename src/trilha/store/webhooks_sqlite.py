"""SQLite's SQL for channels' webhook bodies (:mod:`trilha.store.webhooks`).

Functions of a connection inside the caller's transaction (``BEGIN IMMEDIATE``: one
writer at a time, so what a claim reads of the older bodies holds until it writes).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from trilha.store.base import ChannelWebhook
from trilha.store.webhooks import (
    WEBHOOK_COLUMNS,
    bounded,
    checked_keys,
    claimable,
    row_to_webhook,
)

#: a lease that still holds at ``?`` (the first parameter twice): not expired, and its
#: owner not declared stopped by its heartbeat
_LIVE = (
    "{t}.lease_owner IS NOT NULL AND {t}.lease_expires_at >= ? AND {t}.lease_owner NOT IN"
    " (SELECT worker_id FROM workers WHERE alive_until < ?)"
)


def receive(
    conn: sqlite3.Connection, channel: str, body: bytes, now: float, keys: Sequence[str] = ()
) -> int:
    unique = checked_keys(keys)
    cursor = conn.execute(
        "INSERT INTO channel_webhooks (channel, body, received_at, next_attempt_at)"
        " VALUES (?, ?, ?, ?)",
        (channel, body, now, now),
    )
    assert cursor.lastrowid is not None
    webhook_id = int(cursor.lastrowid)
    conn.executemany(
        "INSERT INTO channel_webhook_keys (webhook_id, conversation_key) VALUES (?, ?)",
        [(webhook_id, key) for key in unique],
    )
    return webhook_id


def claim(
    conn: sqlite3.Connection,
    channel: str,
    owner: str,
    *,
    now: float,
    lease_seconds: float,
    limit: int,
) -> list[ChannelWebhook]:
    due = conn.execute(
        "SELECT 1 FROM channel_webhooks w WHERE w.status = 'pending' AND w.channel = ?"
        " AND w.next_attempt_at <= ? AND NOT (" + _LIVE.format(t="w") + ") LIMIT 1",
        (channel, now, now, now),
    ).fetchone()
    if due is None:  # the usual poll: nothing to read further
        return []
    # every pending body of the channel with its conversations, oldest first: which of
    # them may go is decided as both backends decide it (webhooks.claimable)
    pending = conn.execute(
        "SELECT w.id, w.next_attempt_at <= ? AND NOT (" + _LIVE.format(t="w") + "),"
        " k.conversation_key FROM channel_webhooks w"
        " LEFT JOIN channel_webhook_keys k ON k.webhook_id = w.id"
        " WHERE w.status = 'pending' AND w.channel = ? ORDER BY w.id",
        (now, now, now, channel),
    )
    ids = claimable(pending, limit)
    if not ids:
        return []
    rows = conn.execute(
        "UPDATE channel_webhooks SET lease_owner = ?, lease_expires_at = ?,"
        " attempts = attempts + 1 WHERE id IN (SELECT value FROM json_each(?))"
        f" RETURNING {WEBHOOK_COLUMNS}",
        (owner, now + lease_seconds, json.dumps(ids)),
    ).fetchall()
    return sorted((row_to_webhook(r) for r in rows), key=lambda w: w.id)


def release(conn: sqlite3.Connection, ids: Sequence[int], owner: str) -> int:
    return conn.execute(
        "UPDATE channel_webhooks SET lease_owner = NULL, lease_expires_at = NULL,"
        " attempts = MAX(attempts - 1, 0) WHERE id IN (SELECT value FROM json_each(?))"
        " AND lease_owner = ? AND status = 'pending'",
        (json.dumps([int(i) for i in ids]), owner),
    ).rowcount


def settle(
    conn: sqlite3.Connection,
    webhook_id: int,
    *,
    owner: str,
    now: float,
    status: str,
    error: str | None,
    retry_at: float | None,
    progress: int,
) -> bool:
    processed = None if status == "pending" else now
    return (
        conn.execute(
            "UPDATE channel_webhooks SET status = ?, last_error = ?, progress = ?,"
            " next_attempt_at = ?, processed_at = ?, lease_owner = NULL,"
            " lease_expires_at = NULL WHERE id = ? AND lease_owner = ? AND status = 'pending'",
            (
                status,
                bounded(error),
                progress,
                retry_at if retry_at is not None else now,
                processed,
                webhook_id,
                owner,
            ),
        ).rowcount
        == 1
    )


def listed(
    conn: sqlite3.Connection, channel: str, *, limit: int, status: str | None
) -> list[ChannelWebhook]:
    rows = conn.execute(
        f"SELECT {WEBHOOK_COLUMNS} FROM channel_webhooks WHERE channel = ?"
        " AND (? IS NULL OR status = ?) ORDER BY id LIMIT ?",
        (channel, status, status, limit),
    ).fetchall()
    return [row_to_webhook(r) for r in rows]


def purge(conn: sqlite3.Connection, before: float, limit: int) -> int:
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM channel_webhooks WHERE status <> 'pending' AND processed_at < ?"
            " ORDER BY processed_at LIMIT ?",
            (before, limit),
        )
    ]
    if not ids:
        return 0
    chosen = json.dumps(ids)
    conn.execute(
        "DELETE FROM channel_webhook_keys WHERE webhook_id IN (SELECT value FROM json_each(?))",
        (chosen,),
    )
    return conn.execute(
        "DELETE FROM channel_webhooks WHERE id IN (SELECT value FROM json_each(?))", (chosen,)
    ).rowcount
