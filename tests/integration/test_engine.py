"""The step loop over a real SQLite store: each node type, waits, timers and leases."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from trilha.config import Config, DependencyConfig, EngineConfig
from trilha.core.states import ExecutionStatus, Outcome, is_allowed
from trilha.errors import ConversationBusy, FlowNotFound, StaleLease

S = ExecutionStatus


def flow(flow_id: str, *nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": flow_id, "start": nodes[0]["id"], "nodes": list(nodes), **extra}


async def bot_texts(h: Any, execution_id: str) -> list[str]:
    return [t.text for t in await h.store.transcript(execution_id) if t.sender == "bot"]


async def assert_history_consistent(h: Any, execution_id: str) -> None:
    history = await h.store.transitions(execution_id)
    assert history[0].source is None and history[0].target is S.RUNNING
    for prev, cur in itertools.pairwise(history):
        assert cur.source is prev.target
        assert is_allowed(cur.source, cur.target)
    assert history[-1].target is (await h.get(execution_id)).status


async def test_message_set_condition_end(harness: Any) -> None:
    """Pure nodes run in one turn: templates, set (literal, template, expression), branch."""
    await harness.publish(
        flow(
            "f",
            {
                "id": "a",
                "type": "set",
                "variables": {"greet": "Hi {{name}}", "n": 2},
                "expressions": {"double": "n * 2"},
                "next": "b",
            },
            {"id": "b", "type": "message", "text": "{{greet}}, you have {{double}}", "next": "c"},
            {
                "id": "c",
                "type": "condition",
                "branches": [{"when": "double >= 4", "next": "d"}],
                "default": "e",
            },
            {"id": "d", "type": "end", "text": "big"},
            {"id": "e", "type": "end", "text": "small"},
        )
    )
    ex = await harness.start("f", variables={"name": "Ana"})
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.COMPLETED
    assert ex.variables == {"name": "Ana", "greet": "Hi Ana", "n": 2, "double": 4}
    assert await bot_texts(harness, ex.id) == ["Hi Ana, you have 4", "big"]
    assert harness.channel.texts(ex.id) == ["Hi Ana, you have 4", "big"]
    checkpoints = await harness.store.checkpoints(ex.id)
    assert [c.node_id for c in checkpoints] == ["a", "b", "c", "d"]
    assert [c.seq for c in checkpoints] == [1, 2, 3, 4]
    await assert_history_consistent(harness, ex.id)


async def test_question_reasks_then_on_invalid(harness: Any) -> None:
    """A question re-asks with invalidText up to maxInvalid, then follows onInvalid."""
    await harness.publish(
        flow(
            "q",
            {
                "id": "ask",
                "type": "question",
                "text": "Age?",
                "variable": "age",
                "validate": {"kind": "number"},
                "invalidText": "A number, please.",
                "maxInvalid": 1,
                "onInvalid": "bye",
                "next": "ok",
            },
            {"id": "ok", "type": "end", "text": "Thanks {{age}}"},
            {"id": "bye", "type": "end", "text": "Giving up"},
        )
    )
    ex = await harness.start("q")
    await harness.settle()
    assert (await harness.get(ex.id)).status is S.WAITING_INPUT
    ex = await harness.reply(ex.id, "old")
    assert ex.status is S.WAITING_INPUT and ex.node_state == {"asked": True, "invalid": 1}
    ex = await harness.reply(ex.id, "very old")
    assert ex.status is S.COMPLETED
    assert await bot_texts(harness, ex.id) == ["Age?", "A number, please.", "Giving up"]
    transcript = [(t.sender, t.text) for t in await harness.store.transcript(ex.id)]
    assert transcript == [
        ("bot", "Age?"),
        ("contact", "old"),
        ("bot", "A number, please."),
        ("contact", "very old"),
        ("bot", "Giving up"),
    ]


async def test_question_without_on_invalid_ends(harness: Any) -> None:
    """Without onInvalid, too many invalid answers end with outcome invalid_input."""
    await harness.publish(
        flow(
            "q2",
            {
                "id": "ask",
                "type": "question",
                "text": "Email?",
                "variable": "email",
                "validate": {"kind": "email"},
                "maxInvalid": 0,
                "next": "ok",
            },
            {"id": "ok", "type": "end"},
        )
    )
    ex = await harness.start("q2")
    await harness.settle()
    ex = await harness.reply(ex.id, "nope")
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.INVALID_INPUT


async def test_messages_sent_early_are_applied_in_order(harness: Any) -> None:
    """Replies that arrive before the flow asks are kept and applied in order."""
    await harness.publish(
        flow(
            "two",
            {"id": "a", "type": "question", "text": "First?", "variable": "first", "next": "b"},
            {"id": "b", "type": "question", "text": "Second?", "variable": "second", "next": "c"},
            {"id": "c", "type": "end"},
        )
    )
    ex = await harness.start("two")
    await harness.engine.send(ex.id, "one")
    await harness.engine.send(ex.id, "two")
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.status is S.COMPLETED
    assert ex.variables == {"first": "one", "second": "two"}


async def test_delay_is_a_durable_timer(harness: Any) -> None:
    """A delay waits in the store (not in memory) and resumes when the clock passes it."""
    await harness.publish(
        flow(
            "d",
            {"id": "a", "type": "message", "text": "wait", "next": "w"},
            {"id": "w", "type": "delay", "seconds": 60, "next": "b"},
            {"id": "b", "type": "end", "text": "done"},
        )
    )
    ex = await harness.start("d")
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.status is S.WAITING_DELAY and ex.waiting_for == "timer"
    assert ex.due_at == pytest.approx(harness.clock.now() + 60)
    harness.clock.advance(59)
    await harness.settle()
    assert (await harness.get(ex.id)).status is S.WAITING_DELAY
    harness.clock.advance(2)
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.status is S.COMPLETED
    assert await bot_texts(harness, ex.id) == ["wait", "done"]
    await assert_history_consistent(harness, ex.id)


async def test_jump_continues_in_another_flow(harness: Any) -> None:
    """A jump moves the same execution to another flow's start, keeping variables."""
    await harness.publish(flow("other", {"id": "o1", "type": "end", "text": "in other {{x}}"}))
    await harness.publish(
        flow(
            "main",
            {"id": "s", "type": "set", "variables": {"x": 1}, "next": "j"},
            {"id": "j", "type": "jump", "flowId": "other"},
        )
    )
    ex = await harness.start("main")
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.status is S.COMPLETED and ex.flow_id == "other"
    assert await bot_texts(harness, ex.id) == ["in other 1"]


async def test_jump_to_missing_flow_ends_gracefully(harness: Any) -> None:
    """A jump to a flow that does not exist ends the execution with a message, no crash."""
    await harness.publish(flow("main2", {"id": "j", "type": "jump", "flowId": "ghost"}))
    ex = await harness.start("main2")
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.status is S.FAILED
    assert len(await bot_texts(harness, ex.id)) == 1
    assert any(r.message == "flow.jump_target_missing" for r in await harness.store.logs(ex.id))


async def test_handoff_records_and_escalates(harness: Any) -> None:
    """A handoff records a handoff row and ends with outcome escalated."""
    await harness.publish(
        flow(
            "h",
            {
                "id": "x",
                "type": "handoff",
                "queue": "desk",
                "text": "A person will help",
                "reason": "asked for {{topic}}",
            },
        )
    )
    ex = await harness.start("h", variables={"topic": "refund"})
    await harness.settle()
    ex = await harness.get(ex.id)
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    (handoff,) = await harness.store.handoffs(ex.id)
    assert handoff.queue == "desk" and handoff.reason == "asked for refund"


async def test_one_active_execution_per_conversation(harness: Any) -> None:
    """A second start on a busy conversation is refused unless it replaces the first."""
    await harness.publish(flow("w", {"id": "a", "type": "question", "text": "?", "variable": "v"}))
    first = await harness.start("w", conversation="c")
    with pytest.raises(ConversationBusy):
        await harness.start("w", conversation="c")
    second = await harness.start("w", conversation="c", replace=True)
    assert (await harness.get(first.id)).status is S.CANCELLED
    assert (await harness.get(second.id)).status is S.RUNNING


async def test_unknown_flow(harness: Any) -> None:
    """Starting a flow that was never published is a FlowNotFound."""
    with pytest.raises(FlowNotFound):
        await harness.start("nothing")


async def test_input_timeout_follows_on_timeout_or_ends(harness: Any) -> None:
    """After inputTimeoutSeconds the question's onTimeout is followed; without it the
    execution ends in timeout with the flow's timeoutMessage."""
    settings = {"inputTimeoutSeconds": 30, "timeoutMessage": "Too slow"}
    await harness.publish(
        flow(
            "t1",
            {"id": "a", "type": "question", "text": "?", "variable": "v", "onTimeout": "late"},
            {"id": "late", "type": "end", "text": "late"},
            settings=settings,
        )
    )
    await harness.publish(
        flow(
            "t2",
            {"id": "a", "type": "question", "text": "?", "variable": "v"},
            settings=settings,
        )
    )
    one = await harness.start("t1", conversation="c1")
    two = await harness.start("t2", conversation="c2")
    await harness.settle()
    harness.clock.advance(31)
    await harness.settle()
    one, two = await harness.get(one.id), await harness.get(two.id)
    assert one.status is S.COMPLETED and await bot_texts(harness, one.id) == ["?", "late"]
    assert two.status is S.TIMEOUT and two.outcome is Outcome.TIMEOUT
    assert await bot_texts(harness, two.id) == ["?", "Too slow"]


async def test_http_saves_json_and_sends_headers(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """The http node calls a declared dependency with a templated path, headers and body."""
    http_server.route("POST", "/customers/123", body={"vip": True, "name": "Ana"})
    h = make_harness(
        Config(
            dependencies={"crm": DependencyConfig(base_url=http_server.url, headers={"X-Api": "k"})}
        )
    )
    await h.publish(
        flow(
            "http",
            {
                "id": "call",
                "type": "http",
                "dependency": "crm",
                "method": "POST",
                "url": "/customers/{{cpf}}",
                "body": {"cpf": "{{cpf}}"},
                "saveAs": "customer",
                "next": "route",
            },
            {
                "id": "route",
                "type": "condition",
                "branches": [{"when": "customer.vip == true", "next": "vip"}],
                "default": "end",
            },
            {"id": "vip", "type": "end", "text": "VIP {{customer.name}}"},
            {"id": "end", "type": "end"},
        )
    )
    ex = await h.start("http", variables={"cpf": "123"})
    await h.settle()
    ex = await h.get(ex.id)
    assert ex.status is S.COMPLETED, ex.error
    assert await bot_texts(h, ex.id) == ["VIP Ana"]
    (request,) = http_server.requests
    assert request["headers"]["X-Api"] == "k" and request["body"] == {"cpf": "123"}


async def test_http_refuses_loopback_without_declaration(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A plain URL to 127.0.0.1 is refused (no request made); the node fallback is taken."""
    h = make_harness()
    await h.publish(
        flow(
            "ssrf",
            {
                "id": "call",
                "type": "http",
                "url": http_server.url + "/x",
                "fallback": {"next": "fb"},
                "next": "ok",
            },
            {"id": "ok", "type": "end", "text": "reached"},
            {"id": "fb", "type": "end", "text": "fallback"},
        )
    )
    ex = await h.start("ssrf")
    await h.settle()
    ex = await h.get(ex.id)
    assert await bot_texts(h, ex.id) == ["fallback"]
    assert http_server.requests == []
    assert ex.error is not None and ex.error["type"] == "BlockedAddress"
    statuses = [t.target for t in await h.store.transitions(ex.id)]
    assert S.FALLBACK in statuses


async def test_http_failure_is_retried_then_fails(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A 500 is retried with backoff (recovering, durable attempts); with no fallback and
    no fallback chain the execution then fails, each attempt on the step timeline."""
    http_server.route("GET", "/boom", status=500, body={"e": 1})
    h = make_harness(Config(dependencies={"svc": DependencyConfig(base_url=http_server.url)}))
    await h.publish(
        flow(
            "boom",
            {"id": "call", "type": "http", "dependency": "svc", "url": "/boom", "next": "x"},
            {"id": "x", "type": "end"},
        )
    )
    ex = await h.start("boom")
    for _ in range(10):
        await h.settle()
        h.clock.advance(120)
    await h.settle()
    ex = await h.get(ex.id)
    assert ex.status is S.FAILED and ex.outcome is Outcome.FAILED
    assert len(http_server.requests) == 3
    steps = await h.store.checkpoints(ex.id)
    assert [c.attempt for c in steps] == [1, 2, 3]
    assert all("answered 500" in c.error["message"] for c in steps)
    targets = [t.target for t in await h.store.transitions(ex.id)]
    assert targets == [S.RUNNING, S.RECOVERING, S.RUNNING, S.RECOVERING, S.RUNNING, S.FAILED]
    await assert_history_consistent(h, ex.id)


async def test_stale_worker_cannot_commit(make_harness: Callable[..., Any]) -> None:
    """A worker whose lease expired and was taken over cannot commit (fencing token)."""
    config = Config(engine=EngineConfig(lease_seconds=5))
    h1 = make_harness(config, worker_id="w1")
    h2 = make_harness(config, worker_id="w2")
    await h1.publish(
        flow(
            "s",
            {"id": "a", "type": "message", "text": "once", "next": "b"},
            {"id": "b", "type": "end"},
        )
    )
    ex = await h1.start("s")
    (zombie,) = await h1.store.claim_due("w1", now=h1.clock.now(), lease_seconds=5, limit=1)
    h1.clock.advance(6)
    await h2.settle()
    assert (await h2.get(ex.id)).status is S.COMPLETED
    from trilha.engine.engine import _Turn
    from trilha.store.base import StepCommit

    turn = _Turn(StepCommit(zombie.execution, "w1", zombie.execution.fencing_token), None, None)
    await h1.engine._run_nodes(zombie.execution, await h1.engine.flow("s"), turn)
    with pytest.raises(StaleLease):
        await h1.store.commit_step(turn.commit, now=h1.clock.now())
    assert await bot_texts(h2, ex.id) == ["once"]


async def test_step_limit_stops_loops(make_harness: Callable[..., Any]) -> None:
    """A flow that loops without waiting is stopped after max_steps_per_turn."""
    h = make_harness(Config(engine=EngineConfig(max_steps_per_turn=50)))
    await h.publish(
        flow(
            "loop",
            {"id": "a", "type": "set", "variables": {"x": 1}, "next": "b"},
            {"id": "b", "type": "set", "variables": {"y": 1}, "next": "a"},
        )
    )
    ex = await h.start("loop")
    await h.settle()
    ex = await h.get(ex.id)
    assert ex.status is S.FAILED
    assert len(await h.store.checkpoints(ex.id)) == 50


async def test_flow_version_is_pinned(harness: Any) -> None:
    """Editing a flow does not change the version an execution in flight runs."""
    v1 = flow(
        "p",
        {"id": "a", "type": "question", "text": "?", "variable": "v", "next": "b"},
        {"id": "b", "type": "end", "text": "v1"},
    )
    await harness.publish(v1)
    ex = await harness.start("p")
    await harness.settle()
    v2 = flow(
        "p",
        {"id": "a", "type": "question", "text": "?", "variable": "v", "next": "b"},
        {"id": "b", "type": "end", "text": "v2"},
    )
    await harness.publish(v2)
    newer = await harness.start("p", conversation="other")
    ex = await harness.reply(ex.id, "x")
    assert await bot_texts(harness, ex.id) == ["?", "v1"]
    assert ex.flow_version == 1 and newer.flow_version == 2


async def test_internal_error_fails_the_execution_with_a_trail(
    sqlite_store: Any, clock: Any
) -> None:
    """A processor that breaks the contract (returns None) fails the execution with an
    ERROR log instead of killing the worker or retrying for ever."""
    from typing import ClassVar, Literal

    from trilha.channels.memory import MemoryChannel
    from trilha.core.flow import NodeBase, load_flow
    from trilha.engine.dispatcher import Dispatcher
    from trilha.engine.engine import Engine
    from trilha.engine.worker import Worker
    from trilha.processors.registry import Processors

    class BrokenNode(NodeBase):
        type: Literal["broken"]

    class BrokenProcessor:
        node_type: ClassVar[str] = "broken"
        node_model: ClassVar[type[BrokenNode]] = BrokenNode
        effectful: ClassVar[bool] = False

        async def run(self, node: Any, ctx: Any) -> Any:
            return None

    processors = Processors.from_entry_points({"broken": BrokenProcessor()})
    engine = Engine(sqlite_store, processors=processors, clock=clock)
    worker = Worker(engine, Dispatcher(sqlite_store, MemoryChannel(), clock=clock))
    await engine.publish(
        load_flow(
            flow("b", {"id": "x", "type": "broken", "next": "y"}, {"id": "y", "type": "end"}),
            processors.node_types,
        )
    )
    ex = await engine.start("b", institution_id="i", conversation_id="c", contact_id="k")
    await worker.run_until_idle()
    ex = await sqlite_store.get_execution(ex.id)
    assert ex.status is S.FAILED
    assert ex.error is not None and ex.error["type"] == "AttributeError"
    logs = await sqlite_store.logs(ex.id)
    assert any(r.level == "ERROR" and r.message == "execution.internal_error" for r in logs)
