"""PostgreSQL's SQL for a person's hold of a conversation (:mod:`trilha.store.holds`).

Functions of a pooled connection inside the caller's transaction; the trail lines they
make are returned for the store to insert (its one masked sink), never written here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from trilha.core.execution import LogRecord
from trilha.errors import ExecutionNotFound, StoreError
from trilha.store.base import AgentMessageResult, DeskMessage
from trilha.store.holds import (
    AGENT_TARGET_COLUMNS,
    agent_lines,
    agent_message,
    check_held,
    held_line,
)
from trilha.store.rows import (
    INBOX_COLUMNS,
    OUTBOX_COLUMNS,
    json_or_none,
    row_to_inbound,
    row_to_outbound,
)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]


async def holding(conn: Connection, execution_id: str) -> tuple[int, str | None] | None:
    """The step a person's hold of ``execution_id`` began at and its node, or ``None``
    when no person holds it."""
    row = await conn.fetchrow(
        "SELECT step_seq, current_node_id FROM executions WHERE id = $1 AND status = 'paused'"
        " AND waiting_for = 'human'",
        execution_id,
    )
    return None if row is None else (int(row[0]), row[1])


async def hold_pending(
    conn: Connection, execution_id: str, step_seq: int, node_id: str | None, now: float
) -> list[LogRecord]:
    """Mark the execution's replies not yet applied as said to the person (applied at the
    step the hold began, so the bot never reads them) and queue each for the desk."""
    rows = await conn.fetch(
        "UPDATE inbox SET applied_at = $1, applied_step = $2, held_at = $1"
        " WHERE execution_id = $3 AND applied_at IS NULL RETURNING id, message_id, text",
        now,
        step_seq,
        execution_id,
    )
    ordered = sorted((int(r[0]), str(r[1]), str(r[2])) for r in rows)
    if ordered:
        await conn.executemany(
            "INSERT INTO desk_messages (inbox_id, execution_id, created_at, next_at)"
            " VALUES ($1, $2, $3, $3) ON CONFLICT (inbox_id) DO NOTHING",
            [(inbox_id, execution_id, now) for inbox_id, _, _ in ordered],
        )
    return [held_line(execution_id, mid, text, node_id, now) for _, mid, text in ordered]


async def record_agent_message(
    conn: Connection,
    *,
    institution_id: str,
    conversation_id: str,
    message_id: str,
    agent_id: str,
    text: str,
    content: dict[str, Any] | None,
    now: float,
) -> tuple[AgentMessageResult, list[LogRecord]]:
    # the conversation's latest execution, locked: concurrent agent messages of the
    # conversation (and a worker's commit) take turns behind it
    row = await conn.fetchrow(
        f"SELECT {AGENT_TARGET_COLUMNS} FROM executions WHERE conversation_id = $1"
        " AND institution_id = $2 ORDER BY created_at DESC, row_seq DESC LIMIT 1 FOR UPDATE",
        conversation_id,
        institution_id,
    )
    first = await _agent_row(conn, institution_id, conversation_id, message_id)
    if first is not None:
        return AgentMessageResult("duplicate", row_to_outbound(first), message_id), []
    if row is None:
        raise ExecutionNotFound(f"no execution for conversation '{conversation_id}'")
    check_held(conversation_id, row)
    message = agent_message(
        row=row,
        institution_id=institution_id,
        conversation_id=conversation_id,
        message_id=message_id,
        agent_id=agent_id,
        text=text,
        content=content,
        now=now,
    )
    inserted = await conn.fetchrow(
        "INSERT INTO outbox (idempotency_key, execution_id, institution_id, conversation_id,"
        " contact_id, channel, text, step_seq, created_at, next_attempt_at, content, agent_id,"
        " agent_message_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12)"
        " ON CONFLICT (institution_id, conversation_id, agent_message_id)"
        f" WHERE agent_message_id IS NOT NULL DO NOTHING RETURNING {OUTBOX_COLUMNS}",
        message.idempotency_key,
        message.execution_id,
        message.institution_id,
        message.conversation_id,
        message.contact_id,
        message.channel,
        message.text,
        message.step_seq,
        now,
        json_or_none(message.content),
        agent_id,
        message_id,
    )
    if inserted is None:  # the same message, recorded by a concurrent request
        again = await _agent_row(conn, institution_id, conversation_id, message_id)
        if again is None:  # pragma: no cover - the conflict names a row
            raise StoreError(f"agent message {message_id} vanished")
        return AgentMessageResult("duplicate", row_to_outbound(again), message_id), []
    # a person answered: no return deadline any more; and a worker that claimed the
    # execution for it loses its lease (the fence), so the return is never committed
    await conn.execute(
        "UPDATE executions SET due_at = NULL, wake_at = NULL, updated_at = $1,"
        " fencing_token = fencing_token + 1, lease_owner = NULL, lease_expires_at = NULL"
        " WHERE id = $2",
        now,
        message.execution_id,
    )
    stored = row_to_outbound(inserted)
    return AgentMessageResult("accepted", stored, message_id), agent_lines(
        stored, message_id, row, now
    )


async def _agent_row(
    conn: Connection, institution_id: str, conversation_id: str, message_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE institution_id = $1"
        " AND conversation_id = $2 AND agent_message_id = $3",
        institution_id,
        conversation_id,
        message_id,
    )


async def claim_desk_messages(
    conn: Connection, *, now: float, lease_seconds: float, limit: int
) -> list[DeskMessage]:
    rows = await conn.fetch(
        "UPDATE desk_messages SET lease_expires_at = $1 WHERE id IN ("
        " SELECT d.id FROM desk_messages d WHERE d.sent_at IS NULL AND d.next_at <= $2"
        " AND (d.lease_expires_at IS NULL OR d.lease_expires_at < $2)"
        # one at a time per execution, in the order the contact wrote them...
        " AND NOT EXISTS (SELECT 1 FROM desk_messages e WHERE e.execution_id = d.execution_id"
        " AND e.sent_at IS NULL AND e.id < d.id)"
        # ...and after the desk heard of the handoff itself
        " AND NOT EXISTS (SELECT 1 FROM handoffs h WHERE h.execution_id = d.execution_id"
        " AND h.notified_at IS NULL)"
        " ORDER BY d.id LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING id, inbox_id, attempts",
        now + lease_seconds,
        now,
        limit,
    )
    claimed = sorted((int(r[0]), int(r[1]), int(r[2])) for r in rows)
    if not claimed:
        return []
    messages = {
        int(r[0]): row_to_inbound(r)
        for r in await conn.fetch(
            f"SELECT {INBOX_COLUMNS} FROM inbox WHERE id = ANY($1::bigint[])",
            [inbox_id for _, inbox_id, _ in claimed],
        )
    }
    return [
        DeskMessage(forward_id, messages[inbox_id], attempts)
        for forward_id, inbox_id, attempts in claimed
        if inbox_id in messages
    ]


async def mark_desk_message(
    conn: Connection, forward_id: int, *, now: float, error: str | None, retry_at: float | None
) -> None:
    if error is None:
        await conn.execute(
            "UPDATE desk_messages SET sent_at = $1, attempts = attempts + 1,"
            " lease_expires_at = NULL WHERE id = $2",
            now,
            forward_id,
        )
    else:
        await conn.execute(
            "UPDATE desk_messages SET attempts = attempts + 1, last_error = $1, next_at = $2,"
            " lease_expires_at = NULL WHERE id = $3",
            error[:2000],
            retry_at if retry_at is not None else now,
            forward_id,
        )
