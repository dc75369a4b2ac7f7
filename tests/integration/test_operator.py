"""Operator controls over the real engine and SQLite store: pause, resume, cancel, advance."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Literal

import pytest

from trilha.channels.memory import MemoryChannel
from trilha.config import Config, DependencyConfig
from trilha.core.execution import Execution
from trilha.core.flow import NodeBase, load_flow
from trilha.core.states import TRANSITIONS, ExecutionStatus, Outcome
from trilha.engine.clock import FakeClock
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.engine.operator import Operator
from trilha.engine.worker import Worker
from trilha.errors import ExecutionEnded, FlowError, IllegalTransition, StaleLease
from trilha.processors.base import StepContext, StepResult
from trilha.processors.registry import Processors
from trilha.store.base import StepCommit
from trilha.store.sqlite import SQLiteStore

S = ExecutionStatus

ASK = {
    "id": "ask",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "hi", "next": "name"},
        {"id": "name", "type": "question", "text": "your name?", "variable": "name", "next": "bye"},
        {"id": "bye", "type": "message", "text": "thanks {{name}}", "next": "done"},
        {"id": "done", "type": "end"},
    ],
}
DELAY = {
    "id": "nap",
    "start": "before",
    "nodes": [
        {"id": "before", "type": "message", "text": "wait a minute", "next": "nap"},
        {"id": "nap", "type": "delay", "seconds": 60, "next": "after"},
        {"id": "after", "type": "end", "text": "done"},
    ],
}


@pytest.fixture
def operator(harness: Any) -> Operator:
    return Operator(harness.store, harness.engine)


async def bot_texts(h: Any, execution_id: str) -> list[str]:
    return [t.text for t in await h.store.transcript(execution_id) if t.sender == "bot"]


async def history(h: Any, execution_id: str) -> list[tuple[str | None, str, str]]:
    """The state history as (from, to, actor), checked against the one transition table."""
    rows = await h.store.transitions(execution_id)
    for prev, cur in itertools.pairwise(rows):
        assert cur.source is prev.target and cur.target in TRANSITIONS[cur.source], rows
    assert rows[-1].target is (await h.get(execution_id)).status
    return [(t.source.value if t.source else None, t.target.value, t.actor) for t in rows]


async def waiting(h: Any, flow: dict[str, Any]) -> Execution:
    """Start ``flow`` and run it until it waits."""
    await h.publish(flow)
    ex = await h.start(flow["id"])
    await h.settle()
    return await h.get(ex.id)


async def test_reply_while_paused_is_kept_and_applied_after_resume(
    harness: Any, operator: Operator
) -> None:
    """A reply to a paused execution is stored but not applied; resume applies it."""
    ex = await waiting(harness, ASK)
    assert ex.status is S.WAITING_INPUT
    paused = await operator.pause(ex.id, actor="ana", reason="customer called")
    assert paused.status is S.PAUSED and paused.paused_from is S.WAITING_INPUT
    assert paused.wake_at is None and paused.due_at == ex.due_at
    await harness.engine.send(ex.id, "Bia")
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.status is S.PAUSED and "name" not in ex.variables
    assert await bot_texts(harness, ex.id) == ["hi", "your name?"]
    resumed = await operator.resume(ex.id, actor="ana")
    assert resumed.status is S.WAITING_INPUT and resumed.paused_from is None
    assert resumed.wake_at == harness.clock.now()  # the reply is waiting: apply it now
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.status is S.COMPLETED and ex.variables == {"name": "Bia"}
    assert await bot_texts(harness, ex.id) == ["hi", "your name?", "thanks Bia"]
    assert await history(harness, ex.id) == [
        (None, "running", "api"),
        ("running", "waiting_input", "engine"),
        ("waiting_input", "paused", "ana"),
        ("paused", "waiting_input", "ana"),
        ("waiting_input", "running", "engine"),
        ("running", "completed", "engine"),
    ]
    pause_row = (await harness.store.transitions(ex.id))[2]
    assert pause_row.reason == "paused by an operator: customer called"
    assert pause_row.node_id == "name" and pause_row.at == harness.clock.now()
    logs = [r for r in await harness.store.logs(ex.id) if r.message.startswith("operator.")]
    assert [(r.level, r.message) for r in logs] == [
        ("INFO", "operator.pause"),
        ("INFO", "operator.resume"),
    ]
    assert logs[0].context == {
        "operation": "pause",
        "actor": "ana",
        "reason": "customer called",
        "from": "waiting_input",
        "to": "paused",
    }


async def test_resume_without_reply_waits_until_the_input_timeout(
    harness: Any, operator: Operator
) -> None:
    """Resumed with no reply, a question waits on its original input timeout."""
    ex = await waiting(harness, ASK)
    await operator.pause(ex.id)
    resumed = await operator.resume(ex.id)
    assert resumed.status is S.WAITING_INPUT and resumed.waiting_for == "input"
    assert resumed.wake_at == ex.due_at
    await harness.settle()
    assert (await harness.get(ex.id)).status is S.WAITING_INPUT


async def test_delay_due_while_paused_fires_on_resume(harness: Any, operator: Operator) -> None:
    """A delay that falls due while paused makes no progress; resume fires it at once."""
    ex = await waiting(harness, DELAY)
    assert ex.status is S.WAITING_DELAY
    await operator.pause(ex.id, reason="hold on")
    harness.clock.advance(3600)
    await harness.settle()
    held = await harness.get(ex.id)
    assert held.status is S.PAUSED and held.step_seq == ex.step_seq
    assert await bot_texts(harness, ex.id) == ["wait a minute"]
    resumed = await operator.resume(ex.id)
    assert resumed.status is S.WAITING_DELAY and resumed.wake_at == harness.clock.now()
    await harness.settle()
    done = await harness.get(ex.id)
    assert done.status is S.COMPLETED
    assert await bot_texts(harness, ex.id) == ["wait a minute", "done"]
    assert [s for s, _, _ in await history(harness, ex.id)][2:4] == ["waiting_delay", "paused"]


async def test_delay_resumed_before_due_fires_on_time(harness: Any, operator: Operator) -> None:
    """Resumed before its due time, a delay still fires at its due time, not earlier."""
    ex = await waiting(harness, DELAY)
    await operator.pause(ex.id)
    harness.clock.advance(30)
    resumed = await operator.resume(ex.id)
    assert resumed.wake_at == ex.due_at
    await harness.settle()
    assert (await harness.get(ex.id)).status is S.WAITING_DELAY
    harness.clock.advance(31)
    await harness.settle()
    assert (await harness.get(ex.id)).status is S.COMPLETED


async def test_resume_during_a_retry_backoff_retries_now(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A paused retry backoff resumes as running and retries at once (paused ->
    recovering is not in the table); the attempt count is kept."""
    http_server.route("GET", "/data", body={"value": 7})
    http_server.fail_first("GET", "/data", 1)
    h = make_harness(Config(dependencies={"svc": DependencyConfig(base_url=http_server.url)}))
    await h.publish(
        {
            "id": "call",
            "start": "call",
            "nodes": [
                {
                    "id": "call",
                    "type": "http",
                    "dependency": "svc",
                    "url": "/data",
                    "saveAs": "data",
                    "retry": {"maxAttempts": 3, "initialIntervalSeconds": 600},
                    "next": "ok",
                },
                {"id": "ok", "type": "end", "text": "got {{data.value}}"},
            ],
        }
    )
    ex = await h.start("call")
    await h.settle()
    backoff = await h.get(ex.id)
    assert backoff.status is S.RECOVERING and backoff.attempts == 1
    operator = Operator(h.store, h.engine)
    await operator.pause(ex.id)
    resumed = await operator.resume(ex.id)
    assert resumed.status is S.RUNNING and resumed.wake_at == h.clock.now()
    assert resumed.attempts == 1 and resumed.waiting_for is None
    await h.settle()
    done = await h.get(ex.id)
    assert done.status is S.COMPLETED and done.variables == {"data": {"value": 7}}
    assert len(http_server.requests) == 2
    states = [to for _, to, _ in await history(h, ex.id)]
    assert states == ["running", "recovering", "paused", "running", "completed"]


class GateNode(NodeBase):
    type: Literal["gate"]


class GateProcessor:
    """An effect that blocks until the test opens the gate."""

    node_type: ClassVar[str] = "gate"
    node_model: ClassVar[type[GateNode]] = GateNode
    effectful: ClassVar[bool] = True

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()
        self.runs = 0

    async def run(self, node: GateNode, ctx: StepContext) -> StepResult:
        self.runs += 1
        self.entered.set()
        await self.open.wait()
        return StepResult(output={"run": self.runs})


async def test_pause_fences_a_worker_mid_step(sqlite_store: SQLiteStore, clock: FakeClock) -> None:
    """Pausing an execution a worker holds refuses the worker's late commit; after resume
    the step is re-run from the last checkpoint and nothing is applied twice."""
    gate = GateProcessor()
    processors = Processors.from_entry_points(extra={"gate": gate})
    engine = Engine(sqlite_store, processors=processors, config=Config(), clock=clock)
    channel = MemoryChannel()
    worker = Worker(engine, Dispatcher(sqlite_store, channel, clock=clock))
    operator = Operator(sqlite_store, engine)
    flow = {
        "id": "gated",
        "start": "before",
        "nodes": [
            {"id": "before", "type": "message", "text": "before", "next": "gate"},
            {"id": "gate", "type": "gate", "next": "after"},
            {"id": "after", "type": "end", "text": "after"},
        ],
    }
    await engine.publish(load_flow(flow, processors.node_types))
    ex = await engine.start("gated", institution_id="i", conversation_id="c", contact_id="k")
    busy = asyncio.create_task(worker.tick())
    await asyncio.wait_for(gate.entered.wait(), 5)
    held = await sqlite_store.get_execution(ex.id)
    assert held.lease_owner == engine.worker_id and held.step_seq == 1  # "before" committed
    paused = await operator.pause(ex.id, actor="ops", reason="investigating")
    assert paused.status is S.PAUSED and paused.paused_from is S.RUNNING
    gate.open.set()
    await asyncio.wait_for(busy, 5)  # the worker's commit was refused, quietly
    late = StepCommit(held, engine.worker_id, held.fencing_token)
    with pytest.raises(StaleLease):
        await sqlite_store.commit_step(late, now=clock.now())
    ex = await sqlite_store.get_execution(ex.id)
    assert ex.status is S.PAUSED and ex.step_seq == 1 and ex.lease_owner is None
    assert [c.node_id for c in await sqlite_store.checkpoints(ex.id)] == ["before"]
    resumed = await operator.resume(ex.id, actor="ops")
    assert resumed.status is S.RUNNING and resumed.wake_at == clock.now()
    await worker.run_until_idle()
    ex = await sqlite_store.get_execution(ex.id)
    assert ex.status is S.COMPLETED and gate.runs == 2
    checkpoints = await sqlite_store.checkpoints(ex.id)
    assert [(c.seq, c.node_id) for c in checkpoints] == [(1, "before"), (2, "gate"), (3, "after")]
    assert channel.texts(ex.id) == ["before", "after"]
    targets = [t.target.value for t in await sqlite_store.transitions(ex.id)]
    assert targets == ["running", "paused", "running", "completed"]


class Interleaved:
    """The real store, with something else (a claim, a commit) run just before the
    operator's first write: the race the operator must survive, made certain."""

    def __init__(self, store: SQLiteStore, meanwhile: Callable[[], Awaitable[Any]]) -> None:
        self.store, self.meanwhile, self.raced = store, meanwhile, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def operator_write(self, execution: Execution, **kwargs: Any) -> Execution:
        if not self.raced:
            self.raced = True
            await self.meanwhile()
        return await self.store.operator_write(execution, **kwargs)


async def test_operator_write_racing_a_claim_retries(harness: Any) -> None:
    """A claim between the operator's read and write makes it try again from a fresh read."""
    ex = await waiting(harness, DELAY)
    harness.clock.advance(61)
    racing = Interleaved(
        harness.store,
        lambda: harness.store.claim_due("w2", now=harness.clock.now(), lease_seconds=30, limit=1),
    )
    paused = await Operator(racing, harness.engine).pause(ex.id)
    assert racing.raced and paused.status is S.PAUSED
    assert paused.fencing_token == ex.fencing_token + 2  # the claim's, then the operator's
    assert [t.target for t in await harness.store.transitions(ex.id)][-1] is S.PAUSED


async def test_pause_racing_a_commit_never_rolls_it_back(harness: Any) -> None:
    """A worker's commit landing between the operator's read and write is not overwritten:
    the operator reads again and finds the execution as the commit left it."""
    await harness.publish(ASK)
    ex = await harness.start("ask")
    (claimed,) = await harness.store.claim_due(
        "w1", now=harness.clock.now(), lease_seconds=30, limit=1
    )
    harness.clock.advance(1)
    racing = Interleaved(harness.store, lambda: harness.engine.advance(claimed))
    paused = await Operator(racing, harness.engine).pause(ex.id)
    assert paused.status is S.PAUSED and paused.paused_from is S.WAITING_INPUT
    assert paused.step_seq == 2 and paused.current_node_id == "name"
    assert [c.seq for c in await harness.store.checkpoints(ex.id)] == [1, 2]


async def test_cancel(harness: Any, operator: Operator) -> None:
    """Cancel ends an active (or paused) execution; it takes no more replies."""
    ex = await waiting(harness, ASK)
    cancelled = await operator.cancel(ex.id, actor="ana", reason="duplicate conversation")
    assert cancelled.status is S.CANCELLED and cancelled.outcome is Outcome.CANCELLED
    assert cancelled.wake_at is None and cancelled.due_at is None
    assert cancelled.ended_at == harness.clock.now()
    with pytest.raises(ExecutionEnded):
        await harness.engine.send(ex.id, "late")
    await harness.settle()
    assert (await harness.get(ex.id)).status is S.CANCELLED
    assert (await history(harness, ex.id))[-1] == ("waiting_input", "cancelled", "ana")

    other = await harness.start("ask", conversation="conv-2")
    await harness.settle()
    await operator.pause(other.id)
    cancelled = await operator.cancel(other.id)
    assert cancelled.status is S.CANCELLED and cancelled.paused_from is None
    assert [s for s, _, _ in await history(harness, other.id)][-2:] == ["waiting_input", "paused"]


async def test_advance_to_a_node(harness: Any, operator: Operator) -> None:
    """Advance to a named node skips the wait and runs from there."""
    ex = await waiting(harness, ASK)
    moved = await operator.advance(ex.id, "bye", actor="ana", reason="no need to ask")
    assert moved.status is S.RUNNING and moved.current_node_id == "bye"
    assert moved.node_state == {} and moved.waiting_for is None and moved.due_at is None
    assert moved.wake_at == moved.turn_started_at == harness.clock.now()
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.status is S.COMPLETED and "name" not in ex.variables
    assert await bot_texts(harness, ex.id) == ["hi", "your name?", "thanks "]
    row = (await harness.store.transitions(ex.id))[2]
    assert (row.source, row.target, row.actor) == (S.WAITING_INPUT, S.RUNNING, "ana")
    assert row.reason == "advanced by an operator from 'name' to 'bye': no need to ask"
    await history(harness, ex.id)


async def test_advance_to_next_skips_a_delay(harness: Any, operator: Operator) -> None:
    """Advance without a target follows the current node's next: a paused delay is skipped."""
    ex = await waiting(harness, DELAY)
    await operator.pause(ex.id)
    moved = await operator.advance(ex.id)
    assert moved.status is S.RUNNING and moved.current_node_id == "after"
    assert moved.paused_from is None
    await harness.settle()
    assert (await harness.get(ex.id)).status is S.COMPLETED
    assert await bot_texts(harness, ex.id) == ["wait a minute", "done"]
    states = [to for _, to, _ in await history(harness, ex.id)]
    assert states == ["running", "waiting_delay", "paused", "running", "completed"]


async def test_advance_of_a_running_execution_is_logged(harness: Any, operator: Operator) -> None:
    """Advancing a running execution stays running: no transition row, an audited log row."""
    await harness.publish(ASK)
    ex = await harness.start("ask")
    moved = await operator.advance(ex.id, "done", actor="ana")
    assert moved.status is S.RUNNING and moved.current_node_id == "done"
    assert [t.target for t in await harness.store.transitions(ex.id)] == [S.RUNNING]
    (log,) = [r for r in await harness.store.logs(ex.id) if r.message == "operator.advance"]
    assert log.context["actor"] == "ana"
    assert (log.context["fromNode"], log.context["toNode"]) == ("hello", "done")
    await harness.settle()
    assert (await harness.get(ex.id)).status is S.COMPLETED
    assert await bot_texts(harness, ex.id) == []


async def test_advance_refuses_unknown_targets(harness: Any, operator: Operator) -> None:
    """Advance to a node the pinned flow version lacks, or past a node without next, is
    refused with the node named, and changes nothing."""
    ex = await waiting(harness, ASK)
    with pytest.raises(FlowError, match="no node 'nowhere' in flow 'ask' v1"):
        await operator.advance(ex.id, "nowhere")
    assert (await harness.get(ex.id)).fencing_token == ex.fencing_token
    await harness.publish(
        {
            "id": "branch",
            "start": "pick",
            "nodes": [
                {
                    "id": "pick",
                    "type": "condition",
                    "branches": [{"when": "true", "next": "end"}],
                    "default": "end",
                },
                {"id": "end", "type": "end"},
            ],
        }
    )
    branch = await harness.start("branch", conversation="conv-2")
    with pytest.raises(FlowError, match="node 'pick' has no next node"):
        await operator.advance(branch.id)
    assert (await harness.get(branch.id)).fencing_token == branch.fencing_token


@pytest.mark.parametrize(
    ("setup", "operation", "state"),
    [
        ("running", "resume", "running"),
        ("waiting", "resume", "waiting_input"),
        ("paused", "pause", "paused"),
        ("completed", "pause", "completed"),
        ("completed", "resume", "completed"),
        ("completed", "cancel", "completed"),
        ("completed", "advance", "completed"),
        ("cancelled", "cancel", "cancelled"),
    ],
)
async def test_illegal_operations_name_the_state(
    harness: Any, operator: Operator, setup: str, operation: str, state: str
) -> None:
    """An operation the table (or the operation) does not allow is refused, naming the
    current state, and leaves the execution as it was."""
    await harness.publish(ASK)
    ex = await harness.start("ask")
    if setup != "running":
        await harness.settle()
    if setup == "paused":
        await operator.pause(ex.id)
    elif setup == "completed":
        await harness.reply(ex.id, "Ana")
    elif setup == "cancelled":
        await operator.cancel(ex.id)
    before = await harness.get(ex.id)
    call: Callable[..., Any] = getattr(operator, operation)
    with pytest.raises(
        IllegalTransition, match=rf"^cannot {operation} execution \w+: it is {state}$"
    ):
        await call(ex.id)
    after = await harness.get(ex.id)
    assert (after.status, after.fencing_token) == (before.status, before.fencing_token)
