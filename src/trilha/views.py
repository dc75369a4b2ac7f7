"""Executions as the wire shows them: one JSON form for ``trilha show --json`` and
the HTTP API, so a script can move from one to the other without a translation."""

from __future__ import annotations

from typing import Any

from trilha.core.controls import controls
from trilha.core.execution import Checkpoint, Execution, Transition, iso
from trilha.observability.masking import mask_text
from trilha.store.base import Store


def execution_summary(ex: Execution, status_since: float | None = None) -> dict[str, Any]:
    """The execution's own fields (what a listing shows); ``status_since`` is when it
    entered its current state (:meth:`Store.status_since`)."""
    return {
        "executionId": ex.id,
        "flowId": ex.flow_id,
        "flowVersion": ex.flow_version,
        "institutionId": ex.institution_id,
        "conversationId": ex.conversation_id,
        "contactId": ex.contact_id,
        # what a screen shows: the contact masked as in the logs
        "contactMasked": mask_text(ex.contact_id),
        "status": ex.status.value,
        "statusSince": iso(status_since),
        "outcome": ex.outcome.value if ex.outcome else None,
        "currentNodeId": ex.current_node_id,
        "waitingFor": ex.waiting_for,
        "dueAt": iso(ex.due_at),
        # when a worker should take it, and who holds it: what tells "stuck" from "busy"
        "wakeAt": iso(ex.wake_at),
        "leaseOwner": ex.lease_owner,
        "leaseExpiresAt": iso(ex.lease_expires_at),
        "pausedFrom": ex.paused_from.value if ex.paused_from else None,
        "attempts": ex.attempts,
        "steps": ex.step_seq,
        "variables": ex.variables,
        "error": ex.error,
        "createdAt": iso(ex.created_at),
        "updatedAt": iso(ex.updated_at),
        "endedAt": iso(ex.ended_at),
    }


def transition_view(t: Transition) -> dict[str, Any]:
    return {
        "from": t.source.value if t.source else None,
        "to": t.target.value,
        "reason": t.reason,
        "actor": t.actor,
        "nodeId": t.node_id,
        "at": iso(t.at),
    }


def step_view(c: Checkpoint) -> dict[str, Any]:
    """One step of the timeline: node, input, output, duration, attempt, error."""
    return {
        "seq": c.seq,
        "nodeId": c.node_id,
        "nodeType": c.node_type,
        "status": c.status.value,
        "startedAt": iso(c.started_at),
        "duration": c.duration,
        "attempt": c.attempt,
        "input": c.input,
        "output": c.output,
        "error": c.error,
    }


async def execution_view(
    store: Store, ex: Execution, *, now: float, read_only: str | None = None
) -> dict[str, Any]:
    """The whole execution: its fields, its transcript, its state history and which
    operator controls it allows at ``now`` (all refused with ``read_only`` as the
    reason when the caller may only read)."""
    transcript = await store.transcript(ex.id)
    history = await store.transitions(ex.id)
    since = history[-1].at if history else None
    return {
        **execution_summary(ex, since),
        "transcript": [t.wire() for t in transcript],
        "history": [transition_view(t) for t in history],
        "controls": {name: c.wire() for name, c in controls(ex, now, read_only=read_only).items()},
    }
