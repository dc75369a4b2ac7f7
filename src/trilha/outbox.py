"""Undelivered messages as the API and ``trilha outbox`` show them.

One wire form for both: camelCase, ISO-8601 times, the contact also masked (what a
screen shows) and the last error masked as the trail masks it; the text is the
message as it was queued (operators need it to judge a redrive), and the CLI
escapes it before it reaches a terminal.
"""

from __future__ import annotations

from typing import Any

from trilha.core.execution import iso
from trilha.observability.masking import mask_text
from trilha.store.base import OutboxItem

#: the largest outbox id a path, a cursor or ``--redrive`` may name (a BIGINT)
MAX_ID = 2**63 - 1


def item_view(item: OutboxItem) -> dict[str, Any]:
    """A message on the wire (``GET /v1/outbox``, ``trilha outbox --json``)."""
    return {
        "id": item.id,
        "idempotencyKey": item.idempotency_key,
        "executionId": item.execution_id,
        "institutionId": item.institution_id,
        "conversationId": item.conversation_id,
        "contactId": item.contact_id,
        "contactMasked": mask_text(item.contact_id),
        "text": item.text,
        "status": item.status,
        "attempts": item.attempts,
        "lastError": None if item.last_error is None else mask_text(item.last_error),
        "nextAttemptAt": iso(item.next_attempt_at),
        "createdAt": iso(item.created_at),
    }
