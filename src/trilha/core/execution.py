"""The records an execution is made of, as plain data.

These are what the engine computes and the store persists. Times are epoch
seconds in UTC (floats): they are compared and indexed far more often than
shown, and :func:`iso` renders them for people and the wire.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from trilha.core.frames import frames
from trilha.core.states import ExecutionStatus, Outcome

#: bumped whenever the shape of a checkpoint's ``state`` changes
CHECKPOINT_SCHEMA_VERSION = 1


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO-8601 UTC with milliseconds, ``None`` stays ``None``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(value: Any) -> str:
    """Canonical compact JSON (sorted keys) so equal states hash equally."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


def checksum(payload: str) -> str:
    """A short, stable digest of a serialized state (corruption detection, not security)."""
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


@dataclass(slots=True)
class Execution:
    """One run of a flow for one conversation; the row a worker claims."""

    id: str
    institution_id: str
    conversation_id: str
    contact_id: str
    flow_id: str
    flow_version: int
    status: ExecutionStatus
    current_node_id: str | None
    variables: dict[str, Any]
    created_at: float
    updated_at: float
    outcome: Outcome | None = None
    #: per-node scratch kept while the execution sits on a node (re-ask count, timer due)
    node_state: dict[str, Any] = field(default_factory=dict)
    #: what a waiting execution waits on: "input", "timer", "operator", ...
    waiting_for: str | None = None
    #: when the current wait ends (timer due, input timeout)
    due_at: float | None = None
    #: when a worker should claim it; ``None`` while it waits on something else
    wake_at: float | None = None
    attempts: int = 0
    step_seq: int = 0
    channel: str = "default"
    start_variables: dict[str, Any] = field(default_factory=dict)
    #: the status an operator paused from, so resume can return to it
    paused_from: ExecutionStatus | None = None
    error: dict[str, Any] | None = None
    ended_at: float | None = None
    #: when the current turn began (the execution became active); bounds it by
    #: ``settings.fallback.timeoutSeconds``
    turn_started_at: float | None = None
    #: recovery bookkeeping that outlives a node (in the global fallback flow, ...)
    meta: dict[str, Any] = field(default_factory=dict)
    #: the callers waiting for the running sub-flow to come back, oldest first (frames
    #: as :class:`trilha.core.frames.Frame` writes them); empty outside a sub-flow
    stack: list[dict[str, Any]] = field(default_factory=list)
    fencing_token: int = 0
    lease_owner: str | None = None
    lease_expires_at: float | None = None

    def state_payload(self) -> str:
        """The part of the row covered by the checksum: everything a step changes."""
        payload: dict[str, Any] = {
            "status": self.status.value,
            "outcome": self.outcome.value if self.outcome else None,
            "flow": [self.flow_id, self.flow_version],
            "node": self.current_node_id,
            "vars": self.variables,
            "nodeState": self.node_state,
            "seq": self.step_seq,
            "attempts": self.attempts,
        }
        if self.meta:  # only when set, so rows written before it existed still verify
            payload["meta"] = self.meta
        if self.stack:  # likewise: only inside a sub-flow
            payload["stack"] = self.stack
        return dumps(payload)


def restore_state(ex: Execution, state: dict[str, Any]) -> None:
    """Put the state a checkpoint recorded back into ``ex`` (the inverse of
    :meth:`Execution.state_payload` for the parts a step changes)."""
    ex.status = ExecutionStatus(state["status"])
    ex.outcome = Outcome(state["outcome"]) if state.get("outcome") else None
    ex.flow_id, ex.flow_version = state["flow"][0], int(state["flow"][1])
    ex.current_node_id = state["node"]
    ex.variables = dict(state["vars"])
    ex.node_state = dict(state.get("nodeState") or {})
    ex.attempts = int(state.get("attempts", 0))
    ex.meta = dict(state.get("meta") or {})
    # a stack that does not read back frame by frame raises ValueError: a checkpoint
    # holding one is not one to restore from
    ex.stack = [frame.wire() for frame in frames(state.get("stack") or [])]


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of state, with why and who."""

    execution_id: str
    source: ExecutionStatus | None
    target: ExecutionStatus
    reason: str
    at: float
    actor: str = "engine"
    node_id: str | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The state after one step; the unit a crashed execution resumes from."""

    execution_id: str
    seq: int
    node_id: str | None
    node_type: str | None
    status: ExecutionStatus
    state: str
    checksum: str
    started_at: float
    duration: float
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    attempt: int = 1
    schema_version: int = CHECKPOINT_SCHEMA_VERSION


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A message to the contact, written to the outbox in the step's transaction."""

    idempotency_key: str
    execution_id: str
    institution_id: str
    conversation_id: str
    contact_id: str
    channel: str
    text: str
    created_at: float
    step_seq: int
    payload: dict[str, Any] | None = None
    #: the structured message (:mod:`trilha.core.content`'s wire form: ``type``, ``text``,
    #: ``buttons``, ``list``, ``media``, ``location``...) as the channel renders it;
    #: ``text`` above is its plain rendering. ``None``: a plain text message.
    content: dict[str, Any] | None = None
    id: int | None = None
    status: str = "pending"
    attempts: int = 0
    sent_at: float | None = None
    #: the person who wrote it while holding the conversation (``POST
    #: .../agent-messages``); ``None``: the bot's
    agent_id: str | None = None
    #: the contact's message this one answers (its ``messageId``: a WhatsApp ``wamid``),
    #: for channels that mark it read or quote it; ``None``: not an answer to one
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A contact's message, stored (deduplicated by message id) before it is acknowledged."""

    id: int
    institution_id: str
    conversation_id: str
    message_id: str
    contact_id: str
    text: str
    received_at: float
    execution_id: str | None = None
    payload: dict[str, Any] | None = None
    applied_at: float | None = None
    #: what the contact sent, structured: ``{"type": "text" | "button" | "list" | "media" |
    #: "location", "text"?, "replyId"?, "media"?, "location"?, "language"?}``; ``None`` for
    #: a plain text (``text`` holds it)
    content: dict[str, Any] | None = None
    #: when it was taken as said to a person (it came while a person held the
    #: conversation): forwarded to the desk, marked applied, never an answer to the bot
    held_at: float | None = None


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One finished turn: from what woke the execution (its start, a reply, a timer, an
    operator) until it waits or ends. Kept so turn times can be told from the store
    alone (``trilha stats``, the slow-turn alert), by any process."""

    execution_id: str
    institution_id: str
    flow_id: str
    flow_version: int
    started_at: float
    ended_at: float
    #: the status the turn left the execution in (``waiting_input``, ``completed``...)
    status: str

    @property
    def duration(self) -> float:
        return self.ended_at - self.started_at


@dataclass(frozen=True, slots=True)
class Handoff:
    execution_id: str
    institution_id: str
    conversation_id: str
    contact_id: str
    queue: str
    reason: str | None
    at: float
    #: ``end``: the execution ended (escalated); ``wait``: a person holds the conversation
    #: until it is handed back
    mode: str = "end"


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One line of an execution's trail, kept in the store for the debugger."""

    execution_id: str
    level: str
    message: str
    at: float
    node_id: str | None = None
    node_type: str | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    sender: str  # "bot" | "contact" | "agent" (a person holding the conversation)
    text: str
    at: float
    #: the structured message, when it was more than a text (see the messages' ``content``)
    content: dict[str, Any] | None = None
    #: who wrote an ``agent`` line
    agent_id: str | None = None

    def wire(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"from": self.sender, "text": self.text, "at": iso(self.at)}
        if self.content is not None:
            shown["content"] = self.content
        if self.agent_id is not None:
            shown["agentId"] = self.agent_id
        return shown


def verified_state(cp: Checkpoint) -> dict[str, Any] | None:
    """A checkpoint's state if its checksum, schema version and shape hold, else None:
    what recovery restores from, and what a reader may trust of a stored step."""
    if cp.schema_version != CHECKPOINT_SCHEMA_VERSION or checksum(cp.state) != cp.checksum:
        return None
    try:
        state = orjson.loads(cp.state)
        probe = Execution(
            id="probe",
            institution_id="",
            conversation_id="",
            contact_id="",
            flow_id="",
            flow_version=1,
            status=ExecutionStatus.RUNNING,
            current_node_id=None,
            variables={},
            created_at=0.0,
            updated_at=0.0,
        )
        restore_state(probe, state)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
        return None
    return state if isinstance(state, dict) else None
