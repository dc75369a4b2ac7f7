"""SQLite's SQL for a person's hold of a conversation (:mod:`trilha.store.holds`).

Functions of a connection inside the caller's transaction; the trail lines they make
are returned for the store to insert (its one masked sink), never written here.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from trilha.core.execution import LogRecord
from trilha.errors import ExecutionNotFound
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


def holding(conn: sqlite3.Connection, execution_id: str) -> tuple[int, str | None] | None:
    """The step a person's hold of ``execution_id`` began at and its node, or ``None``
    when no person holds it."""
    row = conn.execute(
        "SELECT step_seq, current_node_id FROM executions WHERE id = ? AND status = 'paused'"
        " AND waiting_for = 'human'",
        (execution_id,),
    ).fetchone()
    return None if row is None else (int(row[0]), row[1])


def hold_pending(
    conn: sqlite3.Connection, execution_id: str, step_seq: int, node_id: str | None, now: float
) -> list[LogRecord]:
    """Mark the execution's replies not yet applied as said to the person (applied at the
    step the hold began, so the bot never reads them) and queue each for the desk."""
    rows = conn.execute(
        "UPDATE inbox SET applied_at = ?, applied_step = ?, held_at = ?"
        " WHERE execution_id = ? AND applied_at IS NULL RETURNING id, message_id, text",
        (now, step_seq, now, execution_id),
    ).fetchall()
    rows.sort()
    conn.executemany(
        "INSERT INTO desk_messages (inbox_id, execution_id, created_at, next_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (inbox_id) DO NOTHING",
        [(r[0], execution_id, now, now) for r in rows],
    )
    return [held_line(execution_id, r[1], r[2], node_id, now) for r in rows]


def record_agent_message(
    conn: sqlite3.Connection,
    *,
    institution_id: str,
    conversation_id: str,
    message_id: str,
    agent_id: str,
    text: str,
    content: dict[str, Any] | None,
    now: float,
) -> tuple[AgentMessageResult, list[LogRecord]]:
    first = conn.execute(
        f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE institution_id = ? AND conversation_id = ?"
        " AND agent_message_id = ?",
        (institution_id, conversation_id, message_id),
    ).fetchone()
    if first is not None:
        return AgentMessageResult("duplicate", row_to_outbound(first), message_id), []
    row = conn.execute(
        f"SELECT {AGENT_TARGET_COLUMNS} FROM executions WHERE conversation_id = ?"
        " AND +institution_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
        (conversation_id, institution_id),
    ).fetchone()
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
    inserted = conn.execute(
        "INSERT INTO outbox (idempotency_key, execution_id, institution_id, conversation_id,"
        " contact_id, channel, text, step_seq, created_at, next_attempt_at, content, agent_id,"
        f" agent_message_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING {OUTBOX_COLUMNS}",
        (
            message.idempotency_key,
            message.execution_id,
            message.institution_id,
            message.conversation_id,
            message.contact_id,
            message.channel,
            message.text,
            message.step_seq,
            now,
            now,
            json_or_none(message.content),
            agent_id,
            message_id,
        ),
    ).fetchone()
    # a person answered: no return deadline any more; and a worker that claimed the
    # execution for it loses its lease (the fence), so the return is never committed
    conn.execute(
        "UPDATE executions SET due_at = NULL, wake_at = NULL, updated_at = ?,"
        " fencing_token = fencing_token + 1, lease_owner = NULL, lease_expires_at = NULL"
        " WHERE id = ?",
        (now, message.execution_id),
    )
    stored = row_to_outbound(inserted)
    return AgentMessageResult("accepted", stored, message_id), agent_lines(
        stored, message_id, row, now
    )


def claim_desk_messages(
    conn: sqlite3.Connection, *, now: float, lease_seconds: float, limit: int
) -> list[DeskMessage]:
    rows = conn.execute(
        "UPDATE desk_messages SET lease_expires_at = ? WHERE id IN ("
        " SELECT d.id FROM desk_messages d WHERE d.sent_at IS NULL AND d.next_at <= ?"
        " AND (d.lease_expires_at IS NULL OR d.lease_expires_at < ?)"
        # one at a time per execution, in the order the contact wrote them...
        " AND NOT EXISTS (SELECT 1 FROM desk_messages e WHERE e.execution_id = d.execution_id"
        " AND e.sent_at IS NULL AND e.id < d.id)"
        # ...and after the desk heard of the handoff itself
        " AND NOT EXISTS (SELECT 1 FROM handoffs h WHERE h.execution_id = d.execution_id"
        " AND h.notified_at IS NULL)"
        " ORDER BY d.id LIMIT ?) RETURNING id, inbox_id, attempts",
        (now + lease_seconds, now, now, limit),
    ).fetchall()
    found = []
    for forward_id, inbox_id, attempts in sorted(rows):
        message = conn.execute(
            f"SELECT {INBOX_COLUMNS} FROM inbox WHERE id = ?", (inbox_id,)
        ).fetchone()
        if message is not None:
            found.append(DeskMessage(int(forward_id), row_to_inbound(message), int(attempts)))
    return found


def mark_desk_message(
    conn: sqlite3.Connection,
    forward_id: int,
    *,
    now: float,
    error: str | None,
    retry_at: float | None,
) -> None:
    if error is None:
        conn.execute(
            "UPDATE desk_messages SET sent_at = ?, attempts = attempts + 1,"
            " lease_expires_at = NULL WHERE id = ?",
            (now, forward_id),
        )
    else:
        conn.execute(
            "UPDATE desk_messages SET attempts = attempts + 1, last_error = ?, next_at = ?,"
            " lease_expires_at = NULL WHERE id = ?",
            (error[:2000], retry_at if retry_at is not None else now, forward_id),
        )
