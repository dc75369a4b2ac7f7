"""PostgreSQL's SQL for erasures (:mod:`trilha.store.erasure`).

Functions of a pooled connection inside the caller's transaction. A deleted row's bytes
stay in the table's pages until VACUUM makes the space reusable and new rows overwrite
it, and in the WAL and its archives until they are recycled: what a query sees is gone
at commit (see the erasure page of the docs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

import asyncpg

from trilha.store.erasure import (
    Erased,
    ErasureRecord,
    checked_ids,
    needles,
    redacted_job,
    removed_json,
    removed_of,
    scoped_to,
    webhook_keys,
    zeros,
)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0


async def forget(
    conn: Connection,
    institution_id: str,
    *,
    contact_id: str | None,
    execution_ids: Sequence[str] = (),
    record: ErasureRecord,
) -> Erased:
    """Erase the contact's executions (``contact_id``) or the executions named (of the
    institution only), with everything found through them; audit it as ``record``."""
    if contact_id is not None:
        rows = await conn.fetch(
            "SELECT id, conversation_id FROM executions"
            " WHERE institution_id = $1 AND contact_id = $2 FOR UPDATE",
            institution_id,
            contact_id,
        )
    else:
        rows = await conn.fetch(
            "SELECT id, conversation_id FROM executions"
            " WHERE institution_id = $1 AND id = ANY($2::text[]) FOR UPDATE",
            institution_id,
            checked_ids(execution_ids),
        )
    ids = sorted(str(r[0]) for r in rows)
    conversations = sorted({str(r[1]) for r in rows})
    n = zeros()
    n["executions"] = len(ids)
    n["variables"] = int(
        await conn.fetchval(
            "SELECT COUNT(*) FROM executions WHERE id = ANY($1::text[])"
            " AND (variables <> '{}' OR start_variables <> '{}' OR stack <> '[]')",
            ids,
        )
    )
    n["transcripts"] = int(
        await conn.fetchval(
            "SELECT COUNT(*) FROM executions x WHERE x.id = ANY($1::text[]) AND (EXISTS"
            " (SELECT 1 FROM inbox i WHERE i.execution_id = x.id) OR EXISTS"
            " (SELECT 1 FROM outbox o WHERE o.execution_id = x.id))",
            ids,
        )
    )
    # the contact's own rows beyond its executions' (a message stored with no execution)
    who: tuple[object, ...] = (ids,)
    mine = "execution_id = ANY($1::text[])"
    if contact_id is not None:
        mine = "(execution_id = ANY($1::text[]) OR (institution_id = $2 AND contact_id = $3))"
        who = (ids, institution_id, contact_id)
    n["deliveryReceipts"] = _count(
        await conn.execute(
            "DELETE FROM delivery_receipts WHERE outbox_id IN"
            f" (SELECT id FROM outbox WHERE {mine})",
            *who,
        )
    )
    n["outbox"] = _count(await conn.execute(f"DELETE FROM outbox WHERE {mine}", *who))
    n["notifications"] = _count(
        await conn.execute(
            "DELETE FROM desk_messages WHERE execution_id = ANY($1::text[])"
            f" OR inbox_id IN (SELECT id FROM inbox WHERE {mine})",
            *who,
        )
    )
    n["inbox"] = _count(await conn.execute(f"DELETE FROM inbox WHERE {mine}", *who))
    n["handoffs"] = _count(await conn.execute(f"DELETE FROM handoffs WHERE {mine}", *who))
    for kind, table in (
        ("signals", "signals"),
        ("checkpoints", "checkpoints"),
        ("transitions", "transitions"),
        ("quarantine", "quarantine"),
        ("trail", "execution_logs"),
    ):
        n[kind] = _count(
            await conn.execute(f"DELETE FROM {table} WHERE execution_id = ANY($1::text[])", ids)
        )
    n["stepErrors"] = _count(
        await conn.execute(
            "UPDATE step_errors SET message = NULL, input = NULL"
            " WHERE execution_id = ANY($1::text[])",
            ids,
        )
    )
    n["idempotency"] = await _idempotency(conn, institution_id, contact_id, ids, conversations)
    n["webhooks"] = await _webhooks(conn, conversations)
    n["bulkJobs"] = await _bulk_jobs(
        conn, institution_id, [c for c in (contact_id, *conversations) if c]
    )
    await conn.execute("DELETE FROM executions WHERE id = ANY($1::text[])", ids)
    await conn.execute(
        "INSERT INTO erasures (id, institution_id, kind, actor, at, removed)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        record.id,
        institution_id,
        record.kind,
        record.actor,
        record.at,
        removed_json(n),
    )
    return Erased(n, tuple(ids), tuple(conversations))


async def _idempotency(
    conn: Connection,
    institution_id: str,
    contact_id: str | None,
    execution_ids: Sequence[str],
    conversation_ids: Sequence[str],
) -> int:
    wanted = needles(contact_id, execution_ids, conversation_ids)
    if not wanted:
        return 0
    rows = await conn.fetch(
        "SELECT scope, key FROM idempotency WHERE body IS NOT NULL AND EXISTS"
        " (SELECT 1 FROM unnest($1::text[]) AS n(v) WHERE strpos(idempotency.body, n.v) > 0)",
        wanted,
    )
    mine = [(str(r[0]), str(r[1])) for r in rows if scoped_to(str(r[0]), institution_id)]
    if mine:
        await conn.executemany("DELETE FROM idempotency WHERE scope = $1 AND key = $2", mine)
    return len(mine)


async def _bulk_jobs(conn: Connection, institution_id: str, names: Sequence[str]) -> int:
    """The institution's bulk jobs whose filter or reason names the contact or one of
    their conversations: the row stays (a job's progress is the operators' record), the
    name becomes ``[erased]`` (:func:`~trilha.store.erasure.redacted_job`)."""
    rows = await conn.fetch(
        "SELECT id, filter, selection, reason FROM bulk_jobs WHERE institution_id = $1",
        institution_id,
    )
    changed = 0
    for row in rows:
        redacted = redacted_job(row[1], row[2], row[3], names)
        if redacted is None:
            continue
        await conn.execute(
            "UPDATE bulk_jobs SET filter = $1, selection = $2, reason = $3 WHERE id = $4",
            *redacted,
            row[0],
        )
        changed += 1
    return changed


async def _webhooks(conn: Connection, conversation_ids: Sequence[str]) -> int:
    """Processed channel webhook bodies of the contact's conversations (by the keys kept
    with each body: a body's own bytes would name the number in other institutions'
    conversations too)."""
    found = await conn.fetch(
        "SELECT id FROM channel_webhooks WHERE status <> 'pending' AND id IN"
        " (SELECT webhook_id FROM channel_webhook_keys WHERE conversation_key = ANY($1::text[]))",
        webhook_keys(conversation_ids),
    )
    ids = [int(r[0]) for r in found]
    await conn.execute("DELETE FROM channel_webhook_keys WHERE webhook_id = ANY($1::bigint[])", ids)
    return _count(
        await conn.execute("DELETE FROM channel_webhooks WHERE id = ANY($1::bigint[])", ids)
    )


async def expired(
    conn: Connection,
    ended_before: float,
    *,
    institution_id: str | None,
    exclude: Sequence[str],
    limit: int,
) -> list[tuple[str, str]]:
    if institution_id is not None:
        rows = await conn.fetch(
            "SELECT institution_id, id FROM executions WHERE ended_at < $1"
            " AND institution_id = $2 ORDER BY ended_at LIMIT $3",
            ended_before,
            institution_id,
            limit,
        )
    else:
        rows = await conn.fetch(
            "SELECT institution_id, id FROM executions WHERE ended_at < $1"
            " AND NOT (institution_id = ANY($2::text[])) ORDER BY ended_at LIMIT $3",
            ended_before,
            list(exclude),
            limit,
        )
    return [(str(r[0]), str(r[1])) for r in rows]


async def listed(conn: Connection, institution_id: str, limit: int) -> list[ErasureRecord]:
    rows = await conn.fetch(
        "SELECT id, institution_id, kind, actor, at, removed FROM erasures"
        " WHERE institution_id = $1 ORDER BY at DESC, id LIMIT $2",
        institution_id,
        limit,
    )
    return [ErasureRecord(r[0], r[1], r[2], r[3], float(r[4]), removed_of(r[5])) for r in rows]
