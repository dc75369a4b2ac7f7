"""The stored trail alone tells an execution's whole story (DESIGN §5, issue 4).

:func:`trace_answers` reads nothing but the wire objects of an execution's stored log
lines (what ``trilha logs --json`` prints) and reconstructs from them: the flow and
version it ran, the nodes in order with duration and outcome, every retry with its
attempt and error, every state change with why and who, what was said to and by the
contact (masked), and how it ended. It refuses a trail that cannot answer one of
these (a node entered and never left, a failure without its error, a state change
that does not follow from the previous one, personal data in a message...).

Each scenario then runs a real engine over a real SQLite file (an HTTP dependency on
127.0.0.1 where one is needed) and compares what the checker reconstructed with the
rest of the store: the state history, the checkpoints, the outbox, the transcript and
the execution row. A trail line that is missing or says something else fails the test.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from trilha.config import BreakerConfig, Config, DependencyConfig
from trilha.core.execution import Checkpoint, Execution
from trilha.core.states import TRANSITIONS, ExecutionStatus, Outcome
from trilha.engine.clock import FakeClock
from trilha.engine.engine import ESCALATION_MESSAGE
from trilha.engine.operator import Operator
from trilha.observability.masking import mask_text
from trilha.observability.trail import IDENTITY_KEYS, Identity, lines

S = ExecutionStatus

# --------------------------------------------------------------------------- the checker

#: what a log line at this level is for (DESIGN §5); ``execution.ended`` is ERROR only
#: when the execution failed, and ``operator.*`` lines are INFO
LEVEL_OF: dict[str, str] = {
    "execution.started": "INFO",
    "execution.state_changed": "INFO",
    "message.sent": "INFO",
    "message.received": "INFO",
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
#: how a node can leave: done, failed (with an error in the trail), cut by the turn timeout
NODE_OUTCOMES = frozenset({"ok", "error", "timeout"})
#: lines that tell why a node failed; the error is on the line
FAILURE_LINES = frozenset(
    {"node.retry_scheduled", "node.failed", "node.degraded", "dependency.waiting"}
)

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
#: a phone, CPF, CNPJ or card number: eight digits or more, separators allowed
LONG_NUMBER = re.compile(r"\d(?:[\s().-]?\d){7,}")
HEX_ID = re.compile(r"\b[0-9a-f]{32}\b")


class TrailIncomplete(AssertionError):
    """The stored trail cannot answer one of the questions an operator asks of it."""


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
    node_id: str
    attempt: int
    max_attempts: int
    delay_seconds: float
    error: tuple[str, str]


@dataclass(frozen=True, slots=True)
class StateChange:
    source: str | None
    target: str
    reason: str
    #: who: ``engine``, an operator's name; ``None`` where the trail does not say
    actor: str | None
    #: the operator's operation (``pause``...) when an operator made the change
    operation: str | None = None


@dataclass(frozen=True, slots=True)
class Exchange:
    """A message to (``bot``) or from (``contact``) the contact."""

    sender: str
    #: the outbox idempotency key, or the inbound message id
    key: str
    text: str


@dataclass(frozen=True, slots=True)
class Restore:
    """A corrupted execution brought back (the engine's ``execution.corrupted`` line)."""

    error: tuple[str, str]
    from_checkpoint: int | None
    flow: tuple[str, int]


@dataclass(frozen=True, slots=True)
class Ending:
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
        return self.flows[0]

    @property
    def status(self) -> str:
        return self.state_changes[-1].target


def _require(condition: bool, line: Mapping[str, Any] | None, what: str) -> None:
    if not condition:
        where = "" if line is None else f" at {json.dumps(line, default=str)}"
        raise TrailIncomplete(f"{what}{where}")


def _metadata(line: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata: Mapping[str, Any] = line["context"].get("metadata") or {}
    return metadata


def _error(line: Mapping[str, Any]) -> tuple[str, str]:
    """The line's ``{type, message}``; both must be there."""
    error = line["context"].get("error") or {}
    kind, message = error.get("type"), error.get("message")
    _require(bool(kind) and bool(message), line, "a failure without its error type and message")
    return str(kind), str(message)


def _no_personal_data(text: str, line: Mapping[str, Any], what: str) -> None:
    text = HEX_ID.sub("", text)  # execution and message ids are not personal data
    _require(EMAIL.search(text) is None, line, f"an unmasked e-mail in {what}")
    _require(LONG_NUMBER.search(text) is None, line, f"an unmasked number in {what}")


def trace_answers(wire_lines: Sequence[Mapping[str, Any]], *, mid_step: bool = False) -> Trace:
    """Reconstruct an execution from its trail's wire objects alone, refusing a trail
    that leaves one of the questions unanswered. ``mid_step`` allows the last node to
    be entered and not yet left (a trail read while a worker runs it)."""
    _require(bool(wire_lines), None, "an empty trail")
    first = wire_lines[0]
    _require(first.get("message") == "execution.started", first, "a trail not opened by its start")
    started = _metadata(first)
    flow_id, version = started.get("flowId"), started.get("flowVersion")
    _require(isinstance(flow_id, str) and isinstance(version, int), first, "no flow id and version")
    context = first["context"]
    identity = {key: context.get(key) for key in IDENTITY_KEYS}
    _require(all(identity.values()), first, "no institution, conversation or contact")
    trace = Trace(first["executionId"], identity, [(str(flow_id), int(version))])
    trace.state_changes.append(StateChange(None, S.RUNNING.value, "started", started.get("actor")))
    for line in wire_lines[1:]:
        _require(line.get("executionId") == trace.execution_id, line, "another execution's line")
        _require(isinstance(line.get("timestamp"), str), line, "a line without its time")
        _require(
            {key: line["context"].get(key) for key in IDENTITY_KEYS} == identity,
            line,
            "a line without the execution's identity",
        )
        # the last node's exit is logged after the end it led to, nothing else is
        closing_node = line["message"] == "node.left" and trace.open_node is not None
        _require(trace.ending is None or closing_node, line, "a line after the execution ended")
        _read_line(trace, line)
    _require(
        trace.open_node is None or mid_step,
        None,
        f"node {trace.open_node and trace.open_node.node_id!r} entered and never left",
    )
    status = ExecutionStatus(trace.status)
    if trace.ending is None:
        _require(not status.terminal, None, f"in {status} but no execution.ended line")
    else:
        _require(trace.ending.status == status, None, "ended in another state than it moved to")
    return trace


def _read_line(trace: Trace, line: Mapping[str, Any]) -> None:
    message, level = str(line["message"]), line["level"]
    metadata = _metadata(line)
    expected = LEVEL_OF.get(message)
    if message.startswith("operator."):
        expected = "INFO"
    elif message == "execution.ended":
        expected = "ERROR" if metadata.get("status") == S.FAILED.value else "INFO"
    _require(expected is None or level == expected, line, f"{message} logged at {level}")
    node_id = line.get("nodeId")
    if message == "node.entered":
        _require(trace.open_node is None, line, "a node entered while another is open")
        attempt = metadata.get("attempt")
        _require(isinstance(node_id, str) and isinstance(attempt, int), line, "node or attempt")
        trace.open_node = NodeRun(str(node_id), line.get("nodeType"), int(attempt), 0.0, "")
    elif message == "node.left":
        opened = trace.open_node
        _require(opened is not None and opened.node_id == node_id, line, "left a node not entered")
        assert opened is not None
        duration, outcome = line["context"].get("duration"), metadata.get("outcome")
        _require(isinstance(duration, int | float) and duration >= 0, line, "no duration")
        _require(outcome in NODE_OUTCOMES, line, "no outcome")
        _require(
            (outcome == "error") == (opened.error is not None),
            line,
            "an outcome its error contradicts",
        )
        trace.nodes.append(replace(opened, duration=float(duration), outcome=str(outcome)))
        trace.open_node = None
    elif message in FAILURE_LINES:
        opened = trace.open_node
        _require(
            opened is not None and opened.node_id == node_id, line, "a failure outside its node"
        )
        assert opened is not None
        error = _error(line)
        _no_personal_data(error[1], line, "an error message")
        trace.open_node = replace(opened, error=error)
        if message == "node.retry_scheduled":
            attempt, most = metadata.get("attempt"), metadata.get("maxAttempts")
            delay = metadata.get("delaySeconds")
            _require(attempt == opened.attempt, line, "a retry of another attempt")
            _require(isinstance(most, int) and isinstance(delay, int | float), line, "schedule")
            trace.retries.append(
                RetryScheduled(opened.node_id, opened.attempt, int(most), float(delay), error)
            )
        elif message == "node.degraded":
            trace.degraded.append((opened.node_id, str(metadata.get("dependency"))))
    elif message == "execution.turn_timeout":
        hit = metadata.get("nodeId")
        _require(isinstance(metadata.get("timeoutSeconds"), int | float), line, "no time limit")
        _require(trace.open_node is None, line, "a node cut off without its exit")
        if trace.nodes and trace.nodes[-1].outcome == "timeout":
            _require(trace.nodes[-1].node_id == hit, line, "another node cut off")
        trace.turn_timeouts.append(str(hit))
    elif message == "execution.state_changed" or message.startswith("operator."):
        _state_change(trace, line, message, metadata)
    elif message in ("message.sent", "message.received"):
        sent = message == "message.sent"
        key = metadata.get("idempotencyKey" if sent else "messageId")
        text = metadata.get("text")
        _require(isinstance(key, str) and isinstance(text, str), line, "a message without text")
        _no_personal_data(str(text), line, "a message")
        trace.messages.append(Exchange("bot" if sent else "contact", str(key), str(text)))
    elif message == "execution.corrupted":
        if "restoredFromCheckpoint" not in metadata:  # the store's line: the row set aside
            what = (line["context"].get("error") or {}).get("message")
            _require(isinstance(what, str) and bool(what), line, "a row set aside without why")
            trace.quarantined.append(str(what))
            return
        restored = metadata.get("restoredFromCheckpoint")
        flow = (metadata.get("flowId"), metadata.get("flowVersion"))
        _require(isinstance(flow[0], str) and isinstance(flow[1], int), line, "restored flow")
        restore = Restore(_error(line), restored, (str(flow[0]), int(flow[1])))
        trace.restores.append(restore)
        if restore.flow != trace.flows[-1]:
            trace.flows.append(restore.flow)
    elif message == "execution.flow_changed":
        flow = (metadata.get("flowId"), metadata.get("flowVersion"))
        _require(isinstance(flow[0], str) and isinstance(flow[1], int), line, "the new flow")
        _require(
            (metadata.get("fromFlowId"), metadata.get("fromFlowVersion")) == trace.flows[-1],
            line,
            "a flow change from a flow it was not on",
        )
        trace.flows.append((str(flow[0]), int(flow[1])))
    elif message == "execution.escalated":
        reason = metadata.get("reason")
        _require(isinstance(reason, str) and bool(reason), line, "an escalation without why")
        trace.escalations.append(str(reason))
    elif message == "execution.ended":
        status, outcome = metadata.get("status"), metadata.get("outcome")
        reason, seconds = metadata.get("reason"), metadata.get("durationSeconds")
        _require(isinstance(reason, str) and bool(reason), line, "an end without why")
        _require(isinstance(seconds, int | float), line, "an end without the execution's time")
        _require(status in {s.value for s in S if s.terminal}, line, "an end in no final state")
        _require(outcome in {o.value for o in Outcome}, line, "an end without an outcome")
        trace.ending = Ending(str(status), str(outcome), str(reason), float(seconds))


def _state_change(
    trace: Trace, line: Mapping[str, Any], message: str, metadata: Mapping[str, Any]
) -> None:
    source, target = metadata.get("from"), metadata.get("to")
    operation = metadata.get("operation") if message.startswith("operator.") else None
    if operation is not None and source == target:
        return  # an operator's advance of a running execution: not a change of state
    _require(isinstance(source, str) and isinstance(target, str), line, "from and to")
    reason = metadata.get("reason")
    if operation is None:
        _require(isinstance(reason, str) and bool(reason), line, "a state change without why")
        actor: Any = "engine"
    else:
        actor = metadata.get("actor")
        _require(isinstance(actor, str) and bool(actor), line, "an operator action without who")
    previous = trace.state_changes[-1].target
    _require(source == previous, line, f"a change from {source} while the trail says {previous}")
    _require(
        ExecutionStatus(str(target)) in TRANSITIONS[ExecutionStatus(str(source))],
        line,
        f"{source} -> {target} is not in the transition table",
    )
    _no_personal_data(str(reason or ""), line, "a reason")
    trace.state_changes.append(
        StateChange(str(source), str(target), str(reason or ""), str(actor), operation)
    )


# --------------------------------------------------------------------------- ground truth

#: an operator's transition reason begins with what it did (operator.py ``_apply``)
DONE_BY_OPERATOR = {
    "pause": "paused by an operator",
    "resume": "resumed by an operator",
    "cancel": "cancelled by an operator",
}


async def trail_of(h: Any, execution_id: str) -> list[dict[str, Any]]:
    """The wire objects of the stored trail, identity taken from the trail itself."""
    records = await h.store.logs(execution_id)
    return lines(records, Identity.from_records(records))


async def trace_of(h: Any, execution_id: str, **kwargs: Any) -> Trace:
    return trace_answers(await trail_of(h, execution_id), **kwargs)


def _masked_error(cp: Checkpoint) -> tuple[str, str] | None:
    if cp.error is None:
        return None
    return str(cp.error["type"]), mask_text(str(cp.error["message"]))


async def assert_same_story(h: Any, trace: Trace) -> Execution:
    """What the trail told equals what the rest of the store holds."""
    ex: Execution = await h.get(trace.execution_id)
    checkpoints: list[Checkpoint] = await h.store.checkpoints(ex.id)
    history = await h.store.transitions(ex.id)

    # who it belongs to, and which flow versions it ran
    assert trace.identity == Identity.of(ex).wire()
    flows: list[tuple[str, int]] = [(ex.flow_id, ex.flow_version)] if not checkpoints else []
    for cp in checkpoints:
        flow_id, version = json.loads(cp.state)["flow"]
        if not flows or flows[-1] != (flow_id, version):
            flows.append((flow_id, version))
    assert trace.flows == flows
    assert trace.flows[-1] == (ex.flow_id, ex.flow_version)

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
    assert [n for n in trace.nodes if n.outcome != "timeout"] == ran
    timed_out = ex.error is not None and ex.error.get("type") == "TurnTimeout"
    assert trace.turn_timeouts == ([str(ex.error["nodeId"])] if ex.error and timed_out else [])
    assert {n.node_id for n in trace.nodes if n.outcome == "timeout"} <= set(trace.turn_timeouts)

    # every retry: the steps that ended waiting for their next attempt
    retried = [
        (str(cp.node_id), cp.attempt, _masked_error(cp))
        for cp in checkpoints
        if isinstance(cp.output, dict) and {"error", "attempt"} <= cp.output.keys()
    ]
    assert [(r.node_id, r.attempt, r.error) for r in trace.retries] == retried

    # every state change, from, to, why and who
    assert len(trace.state_changes) == len(history)
    for told, stored in zip(trace.state_changes, history, strict=True):
        assert (told.source, told.target) == (stored.source, stored.target.value)
        if told.operation is None:
            assert told.reason == stored.reason
        else:
            done = DONE_BY_OPERATOR[told.operation]
            assert stored.reason == (f"{done}: {told.reason}" if told.reason else done)
        assert told.actor == stored.actor
    assert trace.status == ex.status.value

    # what was said, both ways, in order, masked
    said = [
        Exchange("contact", str(cp.input["messageId"]), mask_text(str(cp.input["text"])))
        for cp in checkpoints
        if isinstance(cp.input, dict)
    ]
    told_contact = [m for m in trace.messages if m.sender == "contact"]
    assert told_contact == said
    outbox = await h.store.outbox_for(ex.id)
    sent = [Exchange("bot", m.idempotency_key, mask_text(m.text)) for m in outbox]
    assert [m for m in trace.messages if m.sender == "bot"] == sent
    transcript = await h.store.transcript(ex.id)
    assert [(m.sender, m.text) for m in trace.messages] == [
        (t.sender, mask_text(t.text)) for t in transcript
    ]

    # how it ended
    if ex.status.terminal:
        assert trace.ending is not None and ex.outcome is not None and ex.ended_at is not None
        assert trace.ending == Ending(
            ex.status.value,
            ex.outcome.value,
            history[-1].reason,
            round(ex.ended_at - ex.created_at, 6),
        )
    else:
        assert trace.ending is None
    return ex


def assert_nothing_personal(wire_lines: Sequence[Mapping[str, Any]], *raw: str) -> None:
    """None of ``raw`` (nor its digits alone) appears anywhere in the trail."""
    printed = json.dumps(list(wire_lines), ensure_ascii=False)
    for value in raw:
        assert value not in printed
        digits = re.sub(r"\D", "", value)
        if len(digits) >= 8:
            assert digits not in re.sub(r"[^\d\"]", "", printed)


# --------------------------------------------------------------------------- the engine


class SteppingClock(FakeClock):
    """A fake clock that also moves one millisecond each time it is read: every node
    takes a measurable, repeatable time, so a wrong duration in the trail shows."""

    def now(self) -> float:
        self.advance(0.001)
        return super().now()


@pytest.fixture
def clock() -> FakeClock:
    return SteppingClock()


def dependency(url: str, **breaker: Any) -> Config:
    dep = DependencyConfig(base_url=url, breaker=BreakerConfig(**breaker))
    return Config(dependencies={"svc": dep})


def flow(flow_id: str, *nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": flow_id, "start": nodes[0]["id"], "nodes": list(nodes), **extra}


def call(node_id: str, url: str, **extra: Any) -> dict[str, Any]:
    node = {"id": node_id, "type": "http", "dependency": "svc", "url": url, "saveAs": "data"}
    return node | extra


async def run_out(h: Any, execution_id: str, *, step: float = 5, rounds: int = 20) -> Execution:
    """Let fake time pass until the execution ends or waits for the contact."""
    for _ in range(rounds):
        await h.settle()
        ex: Execution = await h.get(execution_id)
        if ex.status.terminal or ex.status is S.WAITING_INPUT:
            return ex
        h.clock.advance(step)
    return await h.get(execution_id)


def names(trace: Trace) -> list[tuple[str, str]]:
    return [(n.node_id, n.outcome) for n in trace.nodes]


def moves(trace: Trace) -> list[tuple[str | None, str, str | None]]:
    """The state changes after the start, with who made each."""
    return [(c.source, c.target, c.actor) for c in trace.state_changes[1:]]


EMAIL_ADDRESS = "ana.souza@example.com.br"
CPF = "123.456.789-09"
PHONE = "+55 11 98765-4321"

SIGNUP = flow(
    "signup",
    {"id": "hello", "type": "message", "text": "Olá! Vamos fazer seu cadastro.", "next": "ask"},
    {
        "id": "ask",
        "type": "question",
        "text": "Qual o seu e-mail e CPF?",
        "variable": "contato",
        "next": "thanks",
    },
    {"id": "thanks", "type": "message", "text": "Anotamos: {{contato}}", "next": "done"},
    {"id": "done", "type": "end", "text": "Até logo!"},
)


# --------------------------------------------------------------------------- scenarios


async def test_happy_path_with_personal_data_and_an_operator_pause(harness: Any) -> None:
    """Question and answer (an e-mail and a CPF in the reply, echoed back), paused and
    resumed by an operator while waiting: the trail tells all of it, masked, and is
    complete (nothing open, no end) while the execution waits too."""
    operator = Operator(harness.store, harness.engine)
    await harness.publish(SIGNUP)
    ex = await harness.start("signup")
    await harness.settle()
    waiting = await trace_of(harness, ex.id)
    assert waiting.status == S.WAITING_INPUT.value and waiting.ending is None
    assert names(waiting) == [("hello", "ok"), ("ask", "ok")]
    await assert_same_story(harness, waiting)

    await operator.pause(ex.id, actor="ops:maria", reason="checking the contact's data")
    await operator.resume(ex.id, actor="ops:joao")
    reply = f"meu e-mail é {EMAIL_ADDRESS} e o CPF {CPF}"
    done = await harness.reply(ex.id, reply)
    assert done.status is S.COMPLETED

    wire_lines = await trail_of(harness, ex.id)
    trace = trace_answers(wire_lines)
    assert trace.flow == ("signup", 1)
    assert names(trace) == [
        ("hello", "ok"),
        ("ask", "ok"),
        ("ask", "ok"),
        ("thanks", "ok"),
        ("done", "ok"),
    ]
    assert all(n.duration > 0 for n in trace.nodes)
    assert moves(trace) == [
        ("running", "waiting_input", "engine"),
        ("waiting_input", "paused", "ops:maria"),
        ("paused", "waiting_input", "ops:joao"),
        ("waiting_input", "running", "engine"),
        ("running", "completed", "engine"),
    ]
    assert trace.state_changes[2].reason == "checking the contact's data"
    assert [(m.sender, m.text) for m in trace.messages][:3] == [
        ("bot", "Olá! Vamos fazer seu cadastro."),
        ("bot", "Qual o seu e-mail e CPF?"),
        ("contact", mask_text(reply)),
    ]
    assert trace.messages[-1] == Exchange("bot", trace.messages[-1].key, "Até logo!")
    assert trace.ending is not None
    assert (trace.ending.status, trace.ending.outcome) == ("completed", "completed")
    await assert_same_story(harness, trace)
    assert_nothing_personal(wire_lines, EMAIL_ADDRESS, CPF)


LOOKUP = flow(
    "lookup",
    {"id": "hi", "type": "message", "text": "Um momento...", "next": "call"},
    call(
        "call",
        "/data",
        retry={"maxAttempts": 3, "initialIntervalSeconds": 1, "jitter": False},
        next="ok",
    ),
    {"id": "ok", "type": "end", "text": "got {{data.value}}"},
)


async def test_retries_with_their_errors_and_a_pause_in_the_backoff(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """An http node answered 503 twice, then 200 by a real server: each attempt, its
    error and the schedule of the next are in the trail; an operator pause during the
    backoff is a state change with its actor, and the resumed attempt keeps its count."""
    http_server.route("GET", "/data", body={"value": 42})
    http_server.fail_first("GET", "/data", 2)
    h = make_harness(dependency(http_server.url))
    operator = Operator(h.store, h.engine)
    await h.publish(LOOKUP)
    ex = await h.start("lookup")
    await h.settle()
    assert (await h.get(ex.id)).status is S.RECOVERING
    await operator.pause(ex.id, actor="ops:maria")
    await operator.resume(ex.id, actor="ops:maria", reason="the service is back")
    done = await run_out(h, ex.id)
    assert done.status is S.COMPLETED and http_server.count("GET", "/data") == 3

    trace = await trace_of(h, ex.id)
    assert names(trace) == [
        ("hi", "ok"),
        ("call", "error"),
        ("call", "error"),
        ("call", "ok"),
        ("ok", "ok"),
    ]
    assert [n.attempt for n in trace.nodes if n.node_id == "call"] == [1, 2, 3]
    assert [(r.attempt, r.max_attempts) for r in trace.retries] == [(1, 3), (2, 3)]
    for retry in trace.retries:
        assert retry.error[0] == "NodeError" and "503" in retry.error[1]
        assert retry.delay_seconds > 0
    assert moves(trace) == [
        ("running", "recovering", "engine"),
        ("recovering", "paused", "ops:maria"),
        ("paused", "running", "ops:maria"),
        ("running", "recovering", "engine"),
        ("recovering", "running", "engine"),
        ("running", "completed", "engine"),
    ]
    assert [m.text for m in trace.messages] == ["Um momento...", "got 42"]
    await assert_same_story(h, trace)


SUPPORT = flow(
    "support",
    call(
        "call",
        "/data",
        retry={"maxAttempts": 2, "initialIntervalSeconds": 1, "jitter": False},
        fallback={"next": "sorry"},
        next="ok",
    ),
    {"id": "ok", "type": "end", "text": "ok"},
    {"id": "sorry", "type": "message", "text": "Sistema fora do ar.", "next": "ticket"},
    call("ticket", "/ticket", method="POST", next="ok"),
    settings={"fallback": {"escalateToHuman": True}},
)


async def test_retries_exhausted_node_fallback_then_escalation(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """Retries run out, the node's fallback runs (state fallback), its own call fails
    for good (a 400, not retried) and the execution is escalated to a person: every
    failure with its error, the escalation and the handoff message are in the trail."""
    http_server.route("GET", "/data", status=503)
    http_server.route("POST", "/ticket", status=400)
    h = make_harness(dependency(http_server.url))
    await h.publish(SUPPORT)
    ex = await h.start("support")
    done = await run_out(h, ex.id)
    assert done.outcome is Outcome.ESCALATED

    trace = await trace_of(h, ex.id)
    assert names(trace) == [
        ("call", "error"),
        ("call", "error"),
        ("sorry", "ok"),
        ("ticket", "error"),
    ]
    assert [(r.node_id, r.attempt) for r in trace.retries] == [("call", 1)]
    errors = [n.error for n in trace.nodes if n.error]
    assert [e[0] for e in errors] == ["NodeError", "NodeError", "NodeError"]
    assert "503" in errors[1][1] and "400" in errors[2][1]
    assert [c.target for c in trace.state_changes] == [
        "running",
        "recovering",
        "running",
        "fallback",
        "completed",
    ]
    assert "following its fallback" in trace.state_changes[3].reason
    assert len(trace.escalations) == 1 and "ticket" in trace.escalations[0]
    assert [m.text for m in trace.messages] == ["Sistema fora do ar.", ESCALATION_MESSAGE]
    assert trace.ending is not None and trace.ending.outcome == "escalated"
    await assert_same_story(h, trace)


HELP = flow(
    "help",
    {
        "id": "h1",
        "type": "message",
        "text": "Tivemos um problema em {{error.nodeId}}.",
        "next": "h2",
    },
    {"id": "h2", "type": "end", "text": "Tente mais tarde."},
)
MAIN = flow(
    "main",
    call("call", "/data", retry={"maxAttempts": 2, "jitter": False}, next="ok"),
    {"id": "ok", "type": "end"},
    settings={"fallback": {"fallbackFlowId": "help"}},
)


async def test_global_fallback_flow_switch_names_the_flow_version(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """Retries exhausted with no node fallback: the global fallback flow runs; the trail
    names the version of the flow it switched to, as it names the one it started on."""
    http_server.route("GET", "/data", status=500)
    h = make_harness(dependency(http_server.url))
    await h.publish(HELP)
    await h.publish(MAIN)
    ex = await h.start("main")
    done = await run_out(h, ex.id)
    assert done.status is S.COMPLETED and done.flow_id == "help"

    trace = await trace_of(h, ex.id)
    assert names(trace) == [("call", "error"), ("call", "error"), ("h1", "ok"), ("h2", "ok")]
    assert [c.target for c in trace.state_changes][-2:] == ["fallback", "completed"]
    assert [m.text for m in trace.messages] == ["Tivemos um problema em call.", "Tente mais tarde."]
    assert trace.flows == [("main", 1), ("help", 1)]
    await assert_same_story(h, trace)


REMIND = flow(
    "remind",
    {
        "id": "ask",
        "type": "question",
        "text": "Ainda está aí?",
        "variable": "x",
        "onTimeout": "nudge",
        "next": "bye",
    },
    {"id": "nudge", "type": "message", "text": "Vou esperar mais um pouco.", "next": "ask2"},
    {"id": "ask2", "type": "question", "text": "Pode responder?", "variable": "y", "next": "bye"},
    {"id": "bye", "type": "end"},
    settings={"inputTimeoutSeconds": 60, "timeoutMessage": "Encerrando por falta de resposta."},
)


async def test_input_timeouts_follow_on_timeout_then_end(harness: Any) -> None:
    """No reply in time: the question's onTimeout runs; no reply to the next question
    either (it has no onTimeout) ends the execution in timeout with timeoutMessage."""
    await harness.publish(REMIND)
    ex = await harness.start("remind")
    await harness.settle()
    harness.clock.advance(61)
    await harness.settle()
    assert (await harness.get(ex.id)).current_node_id == "ask2"
    harness.clock.advance(61)
    await harness.settle()
    assert (await harness.get(ex.id)).status is S.TIMEOUT

    trace = await trace_of(harness, ex.id)
    assert names(trace) == [("ask", "ok"), ("nudge", "ok"), ("ask2", "ok")]
    assert [(c.source, c.target) for c in trace.state_changes] == [
        (None, "running"),
        ("running", "waiting_input"),
        ("waiting_input", "running"),
        ("running", "waiting_input"),
        ("waiting_input", "timeout"),
    ]
    assert "onTimeout" in trace.state_changes[2].reason
    assert [m.text for m in trace.messages] == [
        "Ainda está aí?",
        "Vou esperar mais um pouco.",
        "Pode responder?",
        "Encerrando por falta de resposta.",
    ]
    assert trace.ending is not None and (trace.ending.status, trace.ending.outcome) == (
        "timeout",
        "timeout",
    )
    await assert_same_story(harness, trace)


async def test_turn_timeout_cuts_the_slow_node(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A call still running when the turn's time is up is cut off: the trail closes that
    node with outcome timeout, says which node the deadline hit, and how it ended."""
    http_server.route("GET", "/slow", body={"value": 1}, delay=1.0)
    h = make_harness(dependency(http_server.url))
    settings = {"fallback": {"timeoutSeconds": 0.3}, "timeoutMessage": "Demorou demais."}
    await h.publish(
        flow(
            "slow",
            {"id": "hi", "type": "message", "text": "Consultando...", "next": "call"},
            call("call", "/slow", next="ok"),
            {"id": "ok", "type": "end"},
            settings=settings,
        )
    )
    ex = await h.start("slow")
    await h.settle()
    assert (await h.get(ex.id)).status is S.TIMEOUT

    trace = await trace_of(h, ex.id)
    assert names(trace) == [("hi", "ok"), ("call", "timeout")]
    assert trace.turn_timeouts == ["call"]
    assert [m.text for m in trace.messages] == ["Consultando...", "Demorou demais."]
    assert trace.ending is not None and trace.ending.status == "timeout"
    await assert_same_story(h, trace)


def corrupt(h: Any, execution_id: str, column: str, value: Any) -> None:
    """Write straight into the SQLite file, behind the store's back."""
    with closing(sqlite3.connect(h.store.path)) as conn, conn:
        conn.execute(
            f"UPDATE executions SET {column} = ? WHERE id = ?",  # noqa: S608
            (value, execution_id),
        )


PHONE_FLOW = flow(
    "phone",
    {"id": "hello", "type": "set", "variables": {"greeted": True}, "next": "q"},
    {"id": "q", "type": "question", "text": "Seu telefone?", "variable": "phone", "next": "bye"},
    {"id": "bye", "type": "end", "text": "Vamos ligar para {{phone}}."},
)


async def test_corrupted_row_restored_from_its_checkpoint(harness: Any) -> None:
    """Garbage in the execution row of the SQLite file: the store sets the row aside,
    the engine restores the last valid checkpoint (recovering -> running) and goes on;
    the trail names the corruption, the checkpoint and the flow version it resumed on."""
    await harness.publish(PHONE_FLOW)
    ex = await harness.start("phone")
    await harness.settle()
    last = (await harness.store.checkpoints(ex.id))[-1].seq
    corrupt(harness, ex.id, "variables", '{"truncated": ')
    done = await harness.reply(ex.id, f"é {PHONE}")
    assert done.status is S.COMPLETED

    wire_lines = await trail_of(harness, ex.id)
    trace = trace_answers(wire_lines)
    assert len(trace.quarantined) == 1
    (restore,) = trace.restores
    assert restore.from_checkpoint == last and restore.flow == ("phone", 1)
    assert restore.error[0] == "CorruptedRecord"
    assert [(c.source, c.target) for c in trace.state_changes][2:] == [
        ("waiting_input", "recovering"),
        ("recovering", "running"),
        ("running", "completed"),
    ]
    assert trace.state_changes[3].reason == f"restored from checkpoint {last}"
    assert names(trace) == [("hello", "ok"), ("q", "ok"), ("q", "ok"), ("bye", "ok")]
    assert [m.sender for m in trace.messages] == ["bot", "contact", "bot"]
    await assert_same_story(harness, trace)
    assert_nothing_personal(wire_lines, PHONE)
    assert len(await harness.store.quarantined(ex.id)) == len(trace.quarantined)


CRM = flow(
    "crm",
    call(
        "call",
        "/customers",
        retry={"maxAttempts": 1},
        fallback={"next": "sorry"},
        next="ok",
    ),
    {"id": "ok", "type": "end", "text": "ok"},
    {"id": "sorry", "type": "end", "text": "sorry"},
)


async def test_fallback_and_degraded_under_an_open_breaker(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A 503 opens the dependency's breaker (the first execution takes its node's
    fallback); the next finds the breaker open and runs degraded through the fallback,
    with the refusal's error and the dependency named in the trail."""
    http_server.route("GET", "/customers", status=503)
    h = make_harness(dependency(http_server.url, failure_threshold=1))
    await h.publish(CRM)
    first = await h.start("crm", conversation="c1")
    await h.settle()
    second = await h.start("crm", conversation="c2")
    await h.settle()
    assert http_server.count("GET", "/customers") == 1

    failed = await trace_of(h, first.id)
    assert names(failed) == [("call", "error"), ("sorry", "ok")]
    assert [c.target for c in failed.state_changes] == ["running", "fallback", "completed"]
    await assert_same_story(h, failed)

    degraded = await trace_of(h, second.id)
    assert names(degraded) == [("call", "error"), ("sorry", "ok")]
    assert degraded.degraded == [("call", "svc")]
    assert degraded.nodes[0].error is not None
    assert degraded.nodes[0].error[0] == "DependencyUnavailable"
    assert [c.target for c in degraded.state_changes] == ["running", "degraded", "completed"]
    await assert_same_story(h, degraded)


async def test_the_trail_names_who_started_it(harness: Any) -> None:
    """The start is a state change with its actor too, as every later one."""
    await harness.publish(SIGNUP)
    ex = await harness.start("signup", actor="api:crm-sync")
    trace = await trace_of(harness, ex.id)
    assert trace.state_changes[0].actor == "api:crm-sync"


# --------------------------------------------------------------------------- the checker fails


def _drop(message: str, nth: int = 0) -> Callable[[list[dict[str, Any]]], None]:
    def change(wire_lines: list[dict[str, Any]]) -> None:
        found = [i for i, line in enumerate(wire_lines) if line["message"] == message]
        del wire_lines[found[nth]]

    return change


def _edit(message: str, edit: Callable[[dict[str, Any]], None]) -> Callable[[list[Any]], None]:
    def change(wire_lines: list[dict[str, Any]]) -> None:
        edit(next(line for line in wire_lines if line["message"] == message))

    return change


def _unmask(line: dict[str, Any]) -> None:
    line["context"]["metadata"]["text"] = f"write to {EMAIL_ADDRESS}"


def _no_error(line: dict[str, Any]) -> None:
    del line["context"]["error"]


def _no_duration(line: dict[str, Any]) -> None:
    del line["context"]["duration"]


def _illegal(line: dict[str, Any]) -> None:
    line["context"]["metadata"]["to"] = line["context"]["metadata"]["from"]


def _swap_first_two(wire_lines: list[dict[str, Any]]) -> None:
    wire_lines[0], wire_lines[1] = wire_lines[1], wire_lines[0]


BROKEN_TRAILS: dict[str, Callable[[list[dict[str, Any]]], None]] = {
    "no start": _drop("execution.started"),
    "a node never left": _drop("node.left", 1),
    "a failed node without its error": _drop("node.retry_scheduled"),
    "a retry without its error": _edit("node.retry_scheduled", _no_error),
    "a node exit without its duration": _edit("node.left", _no_duration),
    "a missing state change": _drop("execution.state_changed", 1),
    "an illegal state change": _edit("execution.state_changed", _illegal),
    "no end": _drop("execution.ended"),
    "an unmasked message": _edit("message.sent", _unmask),
    "lines out of order": _swap_first_two,
}


@pytest.fixture
async def retried_trail(make_harness: Callable[..., Any], http_server: Any) -> Any:
    """A finished execution that went through retries, and its stored trail."""
    http_server.route("GET", "/data", body={"value": 42})
    http_server.fail_first("GET", "/data", 2)
    h = make_harness(dependency(http_server.url))
    await h.publish(LOOKUP)
    ex = await h.start("lookup")
    await run_out(h, ex.id)
    return h, ex.id, await trail_of(h, ex.id)


@pytest.mark.parametrize("broken", list(BROKEN_TRAILS))
async def test_the_checker_refuses_an_incomplete_trail(retried_trail: Any, broken: str) -> None:
    """Each question the trail can no longer answer is a failure of the checker."""
    _, _, wire_lines = retried_trail
    trace_answers(wire_lines)  # the untouched trail answers everything
    damaged = json.loads(json.dumps(wire_lines))
    BROKEN_TRAILS[broken](damaged)
    with pytest.raises(TrailIncomplete):
        trace_answers(damaged)


def _drop_step(wire_lines: list[dict[str, Any]]) -> None:
    """The first node's entry and exit, as if the step had never run."""
    _drop("node.entered")(wire_lines)
    _drop("node.left")(wire_lines)


def _longer(line: dict[str, Any]) -> None:
    line["context"]["duration"] += 0.5


def _other_error(line: dict[str, Any]) -> None:
    line["context"]["error"]["message"] = "GET /data answered 500"


UNSEEN_DAMAGE: dict[str, Callable[[list[dict[str, Any]]], None]] = {
    "a lost message": _drop("message.sent"),
    "a lost step": _drop_step,
    "a wrong duration": _edit("node.left", _longer),
    "a wrong error": _edit("node.retry_scheduled", _other_error),
}


@pytest.mark.parametrize("damage", list(UNSEEN_DAMAGE))
async def test_damage_the_checker_cannot_see_fails_the_comparison(
    retried_trail: Any, damage: str
) -> None:
    """A lost message or step, a wrong duration or error still read as a story; the
    rest of the store says otherwise, and the comparison with it fails."""
    h, _, wire_lines = retried_trail
    await assert_same_story(h, trace_answers(wire_lines))
    damaged = json.loads(json.dumps(wire_lines))
    UNSEEN_DAMAGE[damage](damaged)
    trace = trace_answers(damaged)
    with pytest.raises(AssertionError):
        await assert_same_story(h, trace)


async def test_a_step_in_flight_is_open_only_when_allowed(retried_trail: Any) -> None:
    """A trail read while a node runs ends on its entry: refused as a finished story,
    answered when the caller says the execution is mid-step."""
    _, _, wire_lines = retried_trail
    cut = next(i for i, line in enumerate(wire_lines) if line["message"] == "node.entered")
    in_flight = wire_lines[: cut + 1]
    with pytest.raises(TrailIncomplete):
        trace_answers(in_flight)
    trace = trace_answers(in_flight, mid_step=True)
    assert trace.open_node is not None and trace.open_node.node_id == "hi"
    assert trace.status == "running" and trace.ending is None
