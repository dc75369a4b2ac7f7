"""SQLite's SQL for channels' webhook bodies (:mod:`trilha.store.webhooks`).

Functions of a connection inside the caller's transaction (``BEGIN IMMEDIATE``: one
writer at a time, so a claim's "no older body under a live lease" holds as it reads).
"""

from __future__ import annotations

import sqlite3

from trilha.store.base import ChannelWebhook
from trilha.store.webhooks import WEBHOOK_COLUMNS, bounded, row_to_webhook

#: a lease that still holds at ``?`` (the first parameter twice): not expired, and its
#: owner not declared stopped by its heartbeat
_LIVE = (
    "{t}.lease_owner IS NOT NULL AND {t}.lease_expires_at >= ? AND {t}.lease_owner NOT IN"
    " (SELECT worker_id FROM workers WHERE alive_until < ?)"
)


def receive(conn: sqlite3.Connection, channel: str, body: bytes, now: float) -> int:
    cursor = conn.execute(
        "INSERT INTO channel_webhooks (channel, body, received_at, next_attempt_at)"
        " VALUES (?, ?, ?, ?)",
        (channel, body, now, now),
    )
    assert cursor.lastrowid is not None
    return int(cursor.lastrowid)


def claim(
    conn: sqlite3.Connection,
    channel: str,
    owner: str,
    *,
    now: float,
    lease_seconds: float,
    limit: int,
) -> list[ChannelWebhook]:
    rows = conn.execute(
        "UPDATE channel_webhooks SET lease_owner = ?, lease_expires_at = ?,"
        " attempts = attempts + 1 WHERE id IN ("
        " SELECT w.id FROM channel_webhooks w WHERE w.status = 'pending' AND w.channel = ?"
        " AND w.next_attempt_at <= ? AND NOT (" + _LIVE.format(t="w") + ")"
        # in the order stored: nothing overtakes a body another process is processing
        " AND NOT EXISTS (SELECT 1 FROM channel_webhooks o WHERE o.status = 'pending'"
        " AND o.channel = w.channel AND o.id < w.id AND " + _LIVE.format(t="o") + ")"
        f" ORDER BY w.id LIMIT ?) RETURNING {WEBHOOK_COLUMNS}",
        (owner, now + lease_seconds, channel, now, now, now, now, now, limit),
    ).fetchall()
    return sorted((row_to_webhook(r) for r in rows), key=lambda w: w.id)


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
    return conn.execute(
        "DELETE FROM channel_webhooks WHERE id IN (SELECT id FROM channel_webhooks"
        " WHERE status <> 'pending' AND processed_at < ? ORDER BY processed_at LIMIT ?)",
        (before, limit),
    ).rowcount
