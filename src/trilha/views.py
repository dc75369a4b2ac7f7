"""Executions as the wire shows them: one JSON form for ``trilha show --json`` and
the HTTP API, so a script can move from one to the other without a translation."""

from __future__ import annotations

from typing import Any

from trilha.core.controls import controls
from trilha.core.execution import Checkpoint, Execution, Transition, iso
from trilha.core.frames import stack_view
from trilha.core.hold import hold_view
from trilha.engine.recovery import FIRST_ERROR
from trilha.observability.masking import mask_text, mask_value
from trilha.store.base import FailedStep, Store
from trilha.transcript import transcript_view, undelivered_count


def first_error(ex: Execution) -> dict[str, Any] | None:
    """The error that started the execution's trouble: the first failure since it was
    last healthy, as the engine keeps it; an error recorded before the engine kept
    first errors is its own first. ``at`` (kept as unix seconds) is an ISO-8601 time on
    the wire, as every other time is."""
    kept = ex.meta.get(FIRST_ERROR)
    if not isinstance(kept, dict):
        return ex.error
    at = kept.get("at")
    return {**kept, "at": iso(at)} if isinstance(at, int | float) else kept


def waiting_for_dependency(ex: Execution) -> str | None:
    """The dependency an execution waits for (recovering until its breaker lets a call
    through), named by its error."""
    if ex.waiting_for != "dependency" or ex.error is None:
        return None
    name = ex.error.get("dependency")
    return name if isinstance(name, str) else None


def execution_summary(
    ex: Execution, status_since: float | None = None, *, undelivered: int = 0
) -> dict[str, Any]:
    """The execution's own fields (what a listing shows); ``status_since`` is when it
    entered its current state (:meth:`Store.status_since`), ``undelivered`` how many
    of its messages are undelivered (:meth:`Store.undelivered`)."""
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
        # a person holds the conversation (waitingFor "human"): the queue, since when
        "heldBy": hold_view(ex),
        "attempts": ex.attempts,
        "steps": ex.step_seq,
        "variables": ex.variables,
        # errors quote requests (a URL with a CPF): shown masked, as the trail is
        "error": mask_value(ex.error),
        "firstError": mask_value(first_error(ex)),
        "waitingForDependency": waiting_for_dependency(ex),
        "undelivered": undelivered,
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


def failed_step_view(step: FailedStep) -> dict[str, Any]:
    """A listed execution's failed step: what it failed on and how, masked."""
    return {
        "seq": step.seq,
        "nodeId": step.node_id,
        "at": iso(step.at),
        "input": mask_value(step.input),
        "error": mask_value(step.error),
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
    deliveries = await store.deliveries(ex.id)
    history = await store.transitions(ex.id)
    since = history[-1].at if history else None
    return {
        **execution_summary(ex, since, undelivered=undelivered_count(deliveries, now=now)),
        "stack": stack_view(ex),
        "transcript": transcript_view(transcript, deliveries, now=now),
        "history": [transition_view(t) for t in history],
        "controls": {name: c.wire() for name, c in controls(ex, now, read_only=read_only).items()},
    }
