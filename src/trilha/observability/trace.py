"""Whether an execution's stored trail alone tells its whole story (DESIGN §5).

An operator who has nothing but the trail (``trilha logs --json``, a log shipper)
must still be able to answer: which flow and version ran, which nodes in order
with their duration and outcome, every retry with its attempt and error, every
state change with why and who, what was said to and by the contact (masked), and
how it ended. This module checks that promise in two halves:

* :func:`read_trace` rebuilds a :class:`Trace` from the trail's wire objects only,
  and raises :class:`TrailIncomplete` when the trail cannot answer one of those
  questions (a node entered and never left, a failure without its error, a state
  change that does not follow from the previous one, personal data in a message...).
* :func:`story_problems` compares that trace with what the rest of the store holds
  (checkpoints, transitions, outbox, transcript, the execution row): a trail that
  reads as a story can still be a *wrong* story (a lost step, a wrong duration),
  and only the other records can tell.

:func:`trace_problems` does both for one execution of a :class:`~trilha.store.base.Store`
and returns the problems as text, so a caller can count the executions whose trail
allows a full trace (``trilha chaos``) instead of stopping at the first one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from trilha.core.execution import (
    Checkpoint,
    Execution,
    LogRecord,
    OutboundMessage,
    TranscriptEntry,
    Transition,
)
from trilha.core.states import TRANSITIONS, ExecutionStatus, Outcome
from trilha.errors import CorruptedRecord
from trilha.observability.masking import mask_text, mask_value
from trilha.observability.trail import IDENTITY_KEYS, Identity, lines

if TYPE_CHECKING:
    from trilha.store.base import Store

__all__ = [
    "DELIVERY_LINES",
    "DONE_BY_OPERATOR",
    "FAILURE_LINES",
    "LEVEL_OF",
    "NODE_OUTCOMES",
    "READS",
    "Ending",
    "Exchange",
    "NodeRun",
    "Restore",
    "RetryScheduled",
    "StateChange",
    "Trace",
    "TrailIncomplete",
    "read_trace",
    "story_problems",
    "trace_problems",
    "trail_lines",
]

S = ExecutionStatus
T = TypeVar("T")
U = TypeVar("U")

#: the level each line must be logged at (DESIGN §5), so a minimum-level filter keeps
#: what an operator needs; ``execution.ended`` is ERROR only when the execution failed,
#: and ``operator.*`` lines are INFO (both decided in :func:`_read_line`)
LEVEL_OF: dict[str, str] = {
    "execution.started": "INFO",
    "execution.state_changed": "INFO",
    "message.queued": "INFO",
    "message.received": "INFO",
    "signal.received": "INFO",
    "signal.applied": "INFO",
    "message.delivered": "INFO",
    "message.redriven": "INFO",
    "message.delivery_failed": "WARN",
    "message.dead": "ERROR",
    "message.deferred": "DEBUG",
    "node.entered": "DEBUG",
    "node.left": "DEBUG",
    "node.retry_scheduled": "WARN",
    "node.degraded": "WARN",
    "dependency.waiting": "WARN",
    "execution.escalated": "WARN",
    "execution.turn_timeout": "WARN",
    "node.failed": "ERROR",
    "execution.corrupted": "ERROR",
}
#: what became of a queued message (the dispatcher's lines, a rate limit's deferral, an
#: operator's redrive, the channel's receipts): written whenever delivery happens, so
#: also after the execution ended (its last message)
DELIVERY_LINES = frozenset(
    {
        "message.delivered",
        "message.delivery_failed",
        "message.dead",
        "message.deferred",
        "message.redriven",
        "message.status",
    }
)
#: how a node can leave: done, failed (with an error in the trail), cut by the turn timeout
NODE_OUTCOMES = frozenset({"ok", "error", "timeout"})
#: lines that tell why a node failed; the error is on the line
FAILURE_LINES = frozenset(
    {"node.retry_scheduled", "node.failed", "node.degraded", "dependency.waiting"}
)
#: how an operator's transition reason begins (``Operator._apply`` stores
#: ``"<what>: <reason>"``, the trail line carries only the operator's ``reason``)
DONE_BY_OPERATOR: dict[str, str] = {
    "pause": "paused by an operator",
    "resume": "resumed by an operator",
    "cancel": "cancelled by an operator",
}

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
#: a phone, CPF, CNPJ or card number: eight digits or more, separators allowed
_LONG_NUMBER = re.compile(r"\d(?:[\s().-]?\d){7,}")
#: execution and message ids: long hex runs that are not personal data
_HEX_ID = re.compile(r"\b[0-9a-f]{32}\b")
_STATUSES = frozenset(s.value for s in S)
_FINAL_STATUSES = frozenset(s.value for s in S if s.terminal)
_OUTCOMES = frozenset(o.value for o in Outcome)


class TrailIncomplete(ValueError):
    """The stored trail cannot answer one of the questions an operator asks of it.

    ``what`` says which answer is missing; ``index`` (0-based) and ``line`` name the
    wire object where the trail stopped making sense, both ``None`` when it is the
    trail as a whole (empty, a node never left, no end)."""

    def __init__(
        self, what: str, index: int | None = None, line: Mapping[str, Any] | None = None
    ) -> None:
        self.what = what
        self.index = index
        self.line = line
        super().__init__(what + ("" if index is None else f" at {_describe(index, line)}"))


def _describe(index: int, line: Mapping[str, Any] | None) -> str:
    """``line 4 (node.left, node 'call', 2025-...Z)``: enough to find it in ``trilha logs``."""
    if line is None:
        return f"line {index + 1}"
    parts = [str(line.get("message", "?"))]
    if line.get("nodeId") is not None:
        parts.append(f"node {line.get('nodeId')!r}")
    parts.append(str(line.get("timestamp", "no time")))
    return f"line {index + 1} ({', '.join(parts)})"


# --------------------------------------------------------------------------- the trace


@dataclass(frozen=True, slots=True)
class NodeRun:
    """One node executed: entered, then left with a duration and an outcome."""

    node_id: str
    node_type: str | None
    attempt: int
    duration: float
    outcome: str
    #: ``(type, message)`` of the failure when the outcome is not ``ok``
    error: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """A failed attempt with the schedule of the next one."""

    node_id: str
    attempt: int
    max_attempts: int
    delay_seconds: float
    error: tuple[str, str]


@dataclass(frozen=True, slots=True)
class StateChange:
    """One change of the execution's state as the trail tells it."""

    source: str | None
    target: str
    reason: str
    #: who: ``engine``, an operator's name; ``None`` where the trail does not say
    actor: str | None
    #: the operator's operation (``pause``...) when an operator made the change
    operation: str | None = None


@dataclass(frozen=True, slots=True)
class Exchange:
    """A message to (``bot``, or ``agent``: a person holding the conversation) or from
    (``contact``) the contact."""

    sender: str
    #: the outbox idempotency key, or the inbound message id
    key: str
    text: str
    #: a contact's message said to a person holding the conversation: no step read it
    held: bool = False


@dataclass(frozen=True, slots=True)
class Restore:
    """A corrupted execution brought back (the engine's ``execution.corrupted`` line)."""

    error: tuple[str, str]
    from_checkpoint: int | None
    flow: tuple[str, int]


@dataclass(frozen=True, slots=True)
class Ending:
    """How the execution ended, from its ``execution.ended`` line."""

    status: str
    outcome: str
    reason: str
    duration_seconds: float


@dataclass
class Trace:
    """What the trail says happened to one execution."""

    execution_id: str
    identity: dict[str, str]
    #: the flow versions it ran on, in order; the first is the one it started on
    flows: list[tuple[str, int]]
    nodes: list[NodeRun] = field(default_factory=list)
    retries: list[RetryScheduled] = field(default_factory=list)
    state_changes: list[StateChange] = field(default_factory=list)
    messages: list[Exchange] = field(default_factory=list)
    restores: list[Restore] = field(default_factory=list)
    #: the store's own lines about rows it set aside (quarantine)
    quarantined: list[str] = field(default_factory=list)
    escalations: list[str] = field(default_factory=list)
    #: ``(node, dependency)`` of nodes run on reduced function
    degraded: list[tuple[str, str]] = field(default_factory=list)
    #: the node each turn timeout hit (cut off mid-call, or about to run)
    turn_timeouts: list[str] = field(default_factory=list)
    ending: Ending | None = None
    #: a node entered and not (yet) left: only while a step is in flight
    open_node: NodeRun | None = None

    @property
    def flow(self) -> tuple[str, int]:
        """The flow and version the execution started on."""
        return self.flows[0]

    @property
    def status(self) -> str:
        """The state the trail leaves the execution in (a read trace has the start)."""
        return self.state_changes[-1].target


# --------------------------------------------------------------------------- the reader


class _At(NamedTuple):
    """The line being read and its position, for the error that names it."""

    pos: int
    line: Mapping[str, Any]


def _require(condition: bool, at: _At | None, what: str) -> None:
    if not condition:
        raise TrailIncomplete(what, *(at or (None, None)))


def _int(value: Any, at: _At, what: str) -> int:
    """``value`` as the whole number the trail must hold there."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TrailIncomplete(what, *at)


def _number(value: Any, at: _At, what: str) -> float:
    """``value`` as the number (seconds) the trail must hold there."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise TrailIncomplete(what, *at)


def _text(value: Any, at: _At, what: str, *, empty: bool = False) -> str:
    """``value`` as the text the trail must hold there; not empty unless ``empty``."""
    if isinstance(value, str) and (empty or value):
        return value
    raise TrailIncomplete(what, *at)


def _flow(metadata: Mapping[str, Any], at: _At, what: str) -> tuple[str, int]:
    """The ``flowId``/``flowVersion`` a line names."""
    return (
        _text(metadata.get("flowId"), at, what, empty=True),
        _int(metadata.get("flowVersion"), at, what),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is an object, else empty: a missing part reads as absent."""
    return value if isinstance(value, Mapping) else {}


def _context(at: _At) -> Mapping[str, Any]:
    context = at.line.get("context")
    _require(isinstance(context, Mapping), at, "a line without its context")
    return _mapping(context)


def _metadata(at: _At) -> Mapping[str, Any]:
    return _mapping(_context(at).get("metadata"))


def _error(at: _At) -> tuple[str, str]:
    """The line's ``{type, message}``; both must be there."""
    error = _mapping(_context(at).get("error"))
    kind, message = error.get("type"), error.get("message")
    _require(bool(kind) and bool(message), at, "a failure without its error type and message")
    return str(kind), str(message)


def _no_personal_data(text: str, at: _At, what: str) -> None:
    """The trail is a log sink: what reaches it is masked (DESIGN §5). A reader that
    finds an e-mail or a long number has found a leak, not a story."""
    text = _HEX_ID.sub("", text)
    _require(_EMAIL.search(text) is None, at, f"an unmasked e-mail in {what}")
    _require(_LONG_NUMBER.search(text) is None, at, f"an unmasked number in {what}")


def _identity(at: _At) -> dict[str, Any]:
    context = _context(at)
    return {key: context.get(key) for key in IDENTITY_KEYS}


def read_trace(wire_lines: Sequence[Mapping[str, Any]], *, mid_step: bool = False) -> Trace:
    """Rebuild an execution from its trail's wire objects alone (what
    :func:`trilha.observability.trail.lines` returns, in stored order).

    Raises :class:`TrailIncomplete` on the first question the trail leaves
    unanswered. ``mid_step`` allows the last node to be entered and not yet left: a
    trail read while a worker runs it. A stored trail never needs it, since a step's
    lines are committed together."""
    _require(bool(wire_lines), None, "an empty trail")
    first = _At(0, wire_lines[0])
    _require(
        first.line.get("message") == "execution.started", first, "a trail not opened by its start"
    )
    started = _metadata(first)
    flow = _flow(started, first, "no flow id and version")
    execution_id = _text(first.line.get("executionId"), first, "no execution id")
    identity = _identity(first)
    _require(
        all(isinstance(v, str) and v for v in identity.values()),
        first,
        "no institution, conversation or contact",
    )
    trace = Trace(execution_id, {key: str(value) for key, value in identity.items()}, [flow])
    actor = started.get("actor")
    trace.state_changes.append(
        StateChange(None, S.RUNNING.value, "started", actor if isinstance(actor, str) else None)
    )
    for index in range(1, len(wire_lines)):
        at = _At(index, wire_lines[index])
        line = at.line
        _require(line.get("executionId") == trace.execution_id, at, "another execution's line")
        _require(isinstance(line.get("timestamp"), str), at, "a line without its time")
        _require(isinstance(line.get("message"), str), at, "a line without its message")
        _require(_identity(at) == identity, at, "a line without the execution's identity")
        # the last node's exit is logged after the end it led to, and its messages are
        # delivered after it; nothing else is
        closing_node = line["message"] == "node.left" and trace.open_node is not None
        delivery = line["message"] in DELIVERY_LINES
        _require(
            trace.ending is None or closing_node or delivery, at, "a line after the execution ended"
        )
        _read_line(trace, at)
    _require(
        trace.open_node is None or mid_step,
        None,
        f"node {trace.open_node and trace.open_node.node_id!r} entered and never left",
    )
    status = S(trace.status)
    if trace.ending is None:
        _require(not status.terminal, None, f"in {status} but no execution.ended line")
    else:
        _require(trace.ending.status == status, None, "ended in another state than it moved to")
    return trace


def _expected_level(message: str, metadata: Mapping[str, Any]) -> str | None:
    if message.startswith("operator."):
        return "INFO"
    if message == "execution.ended":
        return "ERROR" if metadata.get("status") == S.FAILED.value else "INFO"
    return LEVEL_OF.get(message)


def _read_line(trace: Trace, at: _At) -> None:
    """Fold one line (after the start) into ``trace``."""
    line = at.line
    message, level = str(line["message"]), line.get("level")
    metadata = _metadata(at)
    expected = _expected_level(message, metadata)
    _require(expected is None or level == expected, at, f"{message} logged at {level}")
    node_id = line.get("nodeId")
    if message == "node.entered":
        _require(trace.open_node is None, at, "a node entered while another is open")
        entered = _text(node_id, at, "node or attempt", empty=True)
        attempt = _int(metadata.get("attempt"), at, "node or attempt")
        node_type = line.get("nodeType")
        trace.open_node = NodeRun(
            entered, node_type if isinstance(node_type, str) else None, attempt, 0.0, ""
        )
    elif message == "node.left":
        opened = trace.open_node
        if opened is None or opened.node_id != node_id:
            raise TrailIncomplete("left a node not entered", *at)
        duration = _number(_context(at).get("duration"), at, "no duration")
        outcome = metadata.get("outcome")
        _require(duration >= 0, at, "no duration")
        _require(outcome in NODE_OUTCOMES, at, "no outcome")
        _require(
            (outcome == "error") == (opened.error is not None),
            at,
            "an outcome its error contradicts",
        )
        trace.nodes.append(replace(opened, duration=duration, outcome=str(outcome)))
        trace.open_node = None
    elif message in FAILURE_LINES:
        _read_failure(trace, at, message, metadata)
    elif message == "execution.turn_timeout":
        hit = metadata.get("nodeId")
        _number(metadata.get("timeoutSeconds"), at, "no time limit")
        _require(trace.open_node is None, at, "a node cut off without its exit")
        if trace.nodes and trace.nodes[-1].outcome == "timeout":
            _require(trace.nodes[-1].node_id == hit, at, "another node cut off")
        trace.turn_timeouts.append(str(hit))
    elif message == "execution.state_changed" or message.startswith("operator."):
        _state_change(trace, at, message, metadata)
    elif message in ("message.queued", "message.received", "message.held"):
        sent = message == "message.queued"
        key = metadata.get("idempotencyKey" if sent else "messageId")
        key = _text(key, at, "a message without text", empty=True)
        text = _text(metadata.get("text"), at, "a message without text", empty=True)
        _no_personal_data(text, at, "a message")
        sender = ("agent" if metadata.get("agentId") else "bot") if sent else "contact"
        trace.messages.append(Exchange(sender, key, text, held=message == "message.held"))
    elif message in DELIVERY_LINES:
        # which message: whether it was queued is the story's question (bot messages)
        _text(metadata.get("idempotencyKey"), at, "a delivery without its message")
    elif message == "execution.corrupted":
        _read_corruption(trace, at, metadata)
    elif message == "execution.flow_changed":
        flow = _flow(metadata, at, "the new flow")
        _require(
            (metadata.get("fromFlowId"), metadata.get("fromFlowVersion")) == trace.flows[-1],
            at,
            "a flow change from a flow it was not on",
        )
        trace.flows.append(flow)
    elif message == "execution.escalated":
        trace.escalations.append(_text(metadata.get("reason"), at, "an escalation without why"))
    elif message == "execution.ended":
        status, outcome = metadata.get("status"), metadata.get("outcome")
        reason = _text(metadata.get("reason"), at, "an end without why")
        seconds = _number(
            metadata.get("durationSeconds"), at, "an end without the execution's time"
        )
        _require(status in _FINAL_STATUSES, at, "an end in no final state")
        _require(outcome in _OUTCOMES, at, "an end without an outcome")
        trace.ending = Ending(str(status), str(outcome), reason, seconds)
    # any other line (sweeper, dispatcher...) answers no question and is not required


def _read_failure(trace: Trace, at: _At, message: str, metadata: Mapping[str, Any]) -> None:
    """A line that says why the open node failed: the error goes on the node."""
    opened = trace.open_node
    if opened is None or opened.node_id != at.line.get("nodeId"):
        raise TrailIncomplete("a failure outside its node", *at)
    error = _error(at)
    _no_personal_data(error[1], at, "an error message")
    trace.open_node = replace(opened, error=error)
    if message == "node.retry_scheduled":
        _require(metadata.get("attempt") == opened.attempt, at, "a retry of another attempt")
        most = _int(metadata.get("maxAttempts"), at, "schedule")
        delay = _number(metadata.get("delaySeconds"), at, "schedule")
        trace.retries.append(RetryScheduled(opened.node_id, opened.attempt, most, delay, error))
    elif message == "node.degraded":
        trace.degraded.append((opened.node_id, str(metadata.get("dependency"))))


def _read_corruption(trace: Trace, at: _At, metadata: Mapping[str, Any]) -> None:
    """The store's line (a row set aside) or the engine's (restored from a checkpoint)."""
    if "restoredFromCheckpoint" not in metadata:  # the store's line: the row set aside
        what = _mapping(_context(at).get("error")).get("message")
        trace.quarantined.append(_text(what, at, "a row set aside without why"))
        return
    restored = metadata.get("restoredFromCheckpoint")
    flow = _flow(metadata, at, "restored flow")
    seq = restored if isinstance(restored, int) and not isinstance(restored, bool) else None
    restore = Restore(_error(at), seq, flow)
    trace.restores.append(restore)
    if restore.flow != trace.flows[-1]:
        trace.flows.append(restore.flow)


def _state_change(trace: Trace, at: _At, message: str, metadata: Mapping[str, Any]) -> None:
    """An engine's state change, or an operator's action (which is one unless it
    left the state as it was)."""
    source, target = metadata.get("from"), metadata.get("to")
    operation = metadata.get("operation") if message.startswith("operator.") else None
    if operation is not None and source == target:
        return  # an operator's advance of a running execution: not a change of state
    source = _text(metadata.get("from"), at, "from and to")
    target = _text(metadata.get("to"), at, "from and to")
    _require(
        source in _STATUSES and target in _STATUSES, at, f"{source} -> {target}: an unknown state"
    )
    reason = metadata.get("reason")
    if operation is None:
        why, actor = _text(reason, at, "a state change without why"), "engine"
    else:  # the operator's own words, which they may leave out
        why = str(reason) if reason else ""
        actor = _text(metadata.get("actor"), at, "an operator action without who")
    previous = trace.status
    _require(source == previous, at, f"a change from {source} while the trail says {previous}")
    _require(
        S(target) in TRANSITIONS[S(source)],
        at,
        f"{source} -> {target} is not in the transition table",
    )
    _no_personal_data(why, at, "a reason")
    operation = None if operation is None else str(operation)
    trace.state_changes.append(StateChange(source, target, why, actor, operation))


# --------------------------------------------------------------------------- the comparison


#: the side of a comparison that ran out of items
_MISSING: Any = object()


def _show(value: Any) -> str:
    return "nothing" if value is _MISSING else repr(value)


def _first_difference(
    what: str,
    told: Sequence[T],
    stored: Sequence[U],
    same: Callable[[T, U], bool] = lambda a, b: a == b,
) -> list[str]:
    """At most one problem for a list: its lengths and the first pair that differs.
    Everything after a lost or extra item differs too; the first one says why."""
    for i in range(max(len(told), len(stored))):
        a = told[i] if i < len(told) else _MISSING
        b = stored[i] if i < len(stored) else _MISSING
        if a is _MISSING or b is _MISSING or not same(a, b):
            return [
                f"{what}: the trail tells {len(told)}, the store holds {len(stored)};"
                f" #{i + 1} differs: trail {_show(a)}, store {_show(b)}"
            ]
    return []


def _masked_error(cp: Checkpoint) -> tuple[str, str] | None:
    """A checkpoint's error as the trail carries it (masked)."""
    if cp.error is None:
        return None
    return str(cp.error.get("type")), mask_text(str(cp.error.get("message")))


def _checkpoint_flow(cp: Checkpoint) -> tuple[str, int] | None:
    """The flow version a checkpoint's state was on; ``None`` if it cannot be read."""
    try:
        state = json.loads(cp.state)
        flow_id, version = state["flow"]
        return str(flow_id), int(version)
    except (ValueError, TypeError, KeyError):
        return None


def _same_change(told: StateChange, stored: Transition) -> bool:
    if (told.source, told.target, told.actor) != (
        None if stored.source is None else stored.source.value,
        stored.target.value,
        stored.actor,
    ):
        return False
    if told.operation is None:
        return told.reason == stored.reason
    done = DONE_BY_OPERATOR.get(told.operation)
    if done is not None:
        return stored.reason == (f"{done}: {told.reason}" if told.reason else done)
    # advance, retry...: what the operator did is worded from state the trail line does
    # not carry (nodes, attempts); only the operator's own words can be compared
    return not told.reason or stored.reason.endswith(f": {told.reason}")


def story_problems(
    trace: Trace,
    execution: Execution,
    checkpoints: Sequence[Checkpoint],
    transitions: Sequence[Transition],
    outbox: Sequence[OutboundMessage],
    transcript: Sequence[TranscriptEntry],
) -> list[str]:
    """Where what the trail told (``trace``) differs from the rest of the store; empty
    when the trail tells the whole story. Each problem starts with what it is about
    (``identity``, ``flows``, ``steps``, ``turn timeouts``, ``retries``, ``state
    changes``, ``status``, ``contact messages``, ``bot messages``, ``transcript``,
    ``ending``). The records are one execution's, as the store returns them (oldest
    first)."""
    ex = execution
    problems: list[str] = []

    # who it belongs to, and which flow versions it ran
    # the trail shows identities masked (a contact id is often a phone number, a
    # WhatsApp conversation holds one): compare them as the trail shows them
    row_identity = mask_value(Identity.of(ex).wire())
    if mask_value(trace.identity) != row_identity:
        problems.append(f"identity: trail {trace.identity}, execution row {row_identity}")
    flows: list[tuple[str, int]] = [] if checkpoints else [(ex.flow_id, ex.flow_version)]
    for cp in checkpoints:
        flow = _checkpoint_flow(cp)
        # a checkpoint damaged after it was written tells no flow version; the damage
        # is the invariant checker's finding (recovery walks back past it), not the
        # trail's
        if flow is not None and (not flows or flows[-1] != flow):
            flows.append(flow)
    if trace.flows != flows:
        problems.append(f"flows: trail {trace.flows}, checkpoints {flows}")
    if trace.flows[-1] != (ex.flow_id, ex.flow_version):
        problems.append(
            f"flows: trail ends on {trace.flows[-1]}, the execution row is on"
            f" {(ex.flow_id, ex.flow_version)}"
        )

    # each step, in order, with its duration, outcome and error
    ran = [
        NodeRun(
            str(cp.node_id),
            cp.node_type,
            cp.attempt,
            round(cp.duration, 6),
            "error" if cp.error else "ok",
            _masked_error(cp),
        )
        for cp in checkpoints
    ]
    problems += _first_difference("steps", [n for n in trace.nodes if n.outcome != "timeout"], ran)
    timed_out = ex.error is not None and ex.error.get("type") == "TurnTimeout"
    hit = [str(ex.error.get("nodeId"))] if ex.error is not None and timed_out else []
    if trace.turn_timeouts != hit:
        problems.append(f"turn timeouts: trail {trace.turn_timeouts}, execution row {hit}")
    cut = sorted({n.node_id for n in trace.nodes if n.outcome == "timeout"})
    if not set(cut) <= set(trace.turn_timeouts):
        problems.append(
            f"turn timeouts: nodes {cut} cut off, the trail names {trace.turn_timeouts}"
        )

    # every retry: the steps that ended waiting for their next attempt
    retried = [
        (str(cp.node_id), cp.attempt, _masked_error(cp))
        for cp in checkpoints
        if isinstance(cp.output, dict) and {"error", "attempt"} <= cp.output.keys()
    ]
    problems += _first_difference(
        "retries", [(r.node_id, r.attempt, r.error) for r in trace.retries], retried
    )

    # every state change, from, to, why and who
    problems += _first_difference("state changes", trace.state_changes, transitions, _same_change)
    if trace.status != ex.status.value:
        problems.append(f"status: trail leaves it {trace.status}, execution row is {ex.status}")

    # what was said, both ways, in order, masked
    said = [
        Exchange("contact", str(cp.input.get("messageId")), mask_text(str(cp.input.get("text"))))
        for cp in checkpoints
        if isinstance(cp.input, dict)
    ]
    problems += _first_difference(
        "contact messages",
        [m for m in trace.messages if m.sender == "contact" and not m.held],
        said,
    )
    sent = [
        Exchange("bot" if m.agent_id is None else "agent", m.idempotency_key, mask_text(m.text))
        for m in outbox
    ]
    problems += _first_difference(
        "bot messages", [m for m in trace.messages if m.sender != "contact"], sent
    )
    problems += _first_difference(
        "transcript",
        [(m.sender, m.text) for m in trace.messages],
        [(t.sender, mask_text(t.text)) for t in transcript],
    )

    # how it ended
    problems += _ending_problems(trace, ex, transitions)
    return problems


def _ending_problems(trace: Trace, ex: Execution, transitions: Sequence[Transition]) -> list[str]:
    if not ex.status.terminal:
        if trace.ending is not None:
            return [f"ending: trail tells {trace.ending}, the execution is {ex.status}"]
        return []
    if trace.ending is None:
        return [f"ending: the execution is {ex.status}, the trail tells no end"]
    if ex.outcome is None or ex.ended_at is None:
        return [f"ending: the execution row is {ex.status} without its outcome or end time"]
    stored = Ending(
        ex.status.value,
        ex.outcome.value,
        transitions[-1].reason if transitions else "",
        round(ex.ended_at - ex.created_at, 6),
    )
    if trace.ending != stored:
        return [f"ending: trail {trace.ending}, store {stored}"]
    return []


# --------------------------------------------------------------------------- from a store


def trail_lines(records: Iterable[LogRecord]) -> list[dict[str, Any]]:
    """The wire objects of stored trail lines, as ``trilha logs --json`` prints them
    (masked), the identity taken from the trail itself: the row's identity would fill
    in what the trail lacks and hide it from :func:`read_trace`."""
    stored = list(records)
    return lines(stored, Identity.from_records(stored))


def _version(ex: Execution | None) -> tuple[Any, ...] | None:
    """What a step commit, a claim, an operator or the sweeper moves on the row."""
    if ex is None:
        return None
    return (ex.step_seq, ex.updated_at, ex.fencing_token, ex.status, ex.wake_at)


#: how many times :func:`trace_problems` reads an execution that keeps moving
READS = 3


async def _read_row(store: Store, execution_id: str) -> Execution | None:
    try:
        return await store.get_execution(execution_id)
    except CorruptedRecord:
        return None


async def trace_problems(store: Store, execution_id: str) -> list[str]:
    """Whether the stored trail of ``execution_id`` allows a full trace: the problem
    :func:`read_trace` finds (the first, as ``trail: ...``) or those
    :func:`story_problems` finds; empty when it does.

    Best called on executions at rest: the records are read one query at a time, so
    the whole read is done again (up to :data:`READS` times) when the execution row
    moved meanwhile. A row the store cannot read (:class:`~trilha.errors.CorruptedRecord`)
    is a problem, since there is nothing to compare the trail with; the trail is still
    read. :class:`~trilha.errors.ExecutionNotFound` propagates: there is no execution
    to measure."""
    for _ in range(READS):
        row = await _read_row(store, execution_id)
        records = await store.logs(execution_id)
        checkpoints = await store.checkpoints(execution_id)
        transitions = await store.transitions(execution_id)
        outbox = await store.outbox_for(execution_id)
        transcript = await store.transcript(execution_id)
        unread = {
            (m.received_at, m.text)
            for m in await store.inbox_for(execution_id)
            if m.applied_at is None
        }
        moved = _version(await _read_row(store, execution_id)) != _version(row)
        if not moved:
            break
    problems: list[str] = []
    if moved:
        problems.append(
            f"execution row: kept changing over {READS} reads; what follows may be the race"
        )
    if row is None:
        problems.append(
            "execution row: the store cannot read it, nothing to compare the trail with"
        )
    try:
        trace = read_trace(trail_lines(records))
    except TrailIncomplete as exc:
        return [*problems, f"trail: {exc}"]
    if row is None:
        return problems
    # a reply the execution never read (it ended first, or reads it next) is in the
    # transcript but not yet in its story
    told = [t for t in transcript if not (t.sender == "contact" and (t.at, t.text) in unread)]
    return problems + story_problems(trace, row, checkpoints, transitions, outbox, told)
