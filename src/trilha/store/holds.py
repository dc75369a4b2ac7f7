"""What both backends share to keep a person's hold of a conversation (see
:mod:`trilha.core.hold`): the trail lines, the refusal of an agent message when no person
holds the conversation, and the record of a person's message, so SQLite and PostgreSQL
cannot drift apart. Each backend keeps its own SQL (``holds_sqlite``, ``holds_postgres``).
"""

from __future__ import annotations

from typing import Any

from trilha.core.execution import LogRecord, OutboundMessage
from trilha.core.hold import HUMAN, agent_key
from trilha.errors import NotHeld

#: the columns of the execution an agent message is recorded against, in this order
AGENT_TARGET_COLUMNS = (
    "id, status, waiting_for, step_seq, contact_id, channel, due_at, current_node_id"
)


def held_line(
    execution_id: str, message_id: str, text: str, node_id: str | None, now: float
) -> LogRecord:
    """The trail line of a contact's message said while a person held the conversation:
    kept, forwarded to the desk, never an answer to the bot (the sink masks the text)."""
    return LogRecord(
        execution_id,
        "INFO",
        "message.held",
        now,
        node_id,
        None,
        {"messageId": message_id, "text": text},
    )


def check_held(conversation_id: str, row: Any) -> None:
    """Refuse an agent message unless a person holds the conversation's latest execution
    (``row``: :data:`AGENT_TARGET_COLUMNS`)."""
    status, waiting = row[1], row[2]
    if status == "paused" and waiting == HUMAN:
        return
    why = "paused by an operator" if status == "paused" else str(status)
    raise NotHeld(
        f"no person holds conversation '{conversation_id}': its execution {row[0]} is {why};"
        " agent messages are taken only between a 'wait' handoff and the handback",
        status=status,
        execution_id=row[0],
    )


def agent_message(
    *,
    row: Any,
    institution_id: str,
    conversation_id: str,
    message_id: str,
    agent_id: str,
    text: str,
    content: dict[str, Any] | None,
    now: float,
) -> OutboundMessage:
    """A person's message to queue for the execution ``row`` holds
    (:data:`AGENT_TARGET_COLUMNS`): in the step the hold began at, keyed per messageId."""
    execution_id, seq = str(row[0]), int(row[3])
    return OutboundMessage(
        idempotency_key=agent_key(execution_id, seq, message_id),
        execution_id=execution_id,
        institution_id=institution_id,
        conversation_id=conversation_id,
        contact_id=str(row[4]),
        channel=str(row[5]),
        text=text,
        created_at=now,
        step_seq=seq,
        content=content,
        agent_id=agent_id,
    )


def agent_lines(message: OutboundMessage, message_id: str, row: Any, now: float) -> list[LogRecord]:
    """The trail of a person's message: ``message.queued`` (as the bot's messages, so the
    dispatcher's delivery lines follow it), and ``handoff.answered`` when it cancelled
    the hold's return deadline."""
    node_id = row[7]
    lines = [
        LogRecord(
            message.execution_id,
            "INFO",
            "message.queued",
            now,
            node_id,
            None,
            {
                "idempotencyKey": message.idempotency_key,
                "text": message.text,
                "agentId": message.agent_id,
                "messageId": message_id,
            },
        )
    ]
    if row[6] is not None:
        lines.append(
            LogRecord(
                message.execution_id,
                "INFO",
                "handoff.answered",
                now,
                node_id,
                None,
                {"agentId": message.agent_id, "returnCancelled": True},
            )
        )
    return lines
