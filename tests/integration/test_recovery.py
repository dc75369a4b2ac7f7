"""Automatic recovery (DESIGN §4) through the real engine, a real SQLite file and a real
HTTP dependency on 127.0.0.1: retries, timeouts, missing nodes, the fallback chain,
escalation and corrupted state. Each test reads the state history and the log trail."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from typing import Any

from trilha.config import Config, DependencyConfig
from trilha.core.states import ExecutionStatus, Outcome
from trilha.engine.engine import ESCALATION_MESSAGE, FAILURE_MESSAGE

S = ExecutionStatus


def flow(flow_id: str, *nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": flow_id, "start": nodes[0]["id"], "nodes": list(nodes), **extra}


def call(node_id: str = "call", **extra: Any) -> dict[str, Any]:
    node = {
        "id": node_id,
        "type": "http",
        "dependency": "svc",
        "url": "/data",
        "saveAs": "data",
        "next": "ok",
    }
    return node | extra


OK = {"id": "ok", "type": "end", "text": "got {{data.value}}"}


async def run_out(h: Any, execution_id: str, *, step: float = 30, rounds: int = 20) -> Any:
    """Let time pass (fake clock) until the execution stops moving."""
    for _ in range(rounds):
        await h.settle()
        ex = await h.get(execution_id)
        if ex.status.terminal or ex.status is S.WAITING_INPUT:
            return ex
        h.clock.advance(step)
    return await h.get(execution_id)


async def targets(h: Any, execution_id: str) -> list[ExecutionStatus]:
    return [t.target for t in await h.store.transitions(execution_id)]


async def bot(h: Any, execution_id: str) -> list[str]:
    return [t.text for t in await h.store.transcript(execution_id) if t.sender == "bot"]


async def log_messages(h: Any, execution_id: str) -> list[tuple[str, str]]:
    return [(r.level, r.message) for r in await h.store.logs(execution_id)]


def dep_harness(make_harness: Callable[..., Any], url: str) -> Any:
    return make_harness(Config(dependencies={"svc": DependencyConfig(base_url=url)}))


async def test_transient_failures_are_retried_until_success(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """Two 503s then a 200: running -> recovering -> running -> recovering -> running ->
    completed, with a WARN retry line per failure and the attempt count on each step."""
    http_server.route("GET", "/data", body={"value": 42})
    http_server.fail_first("GET", "/data", 2)
    h = dep_harness(make_harness, http_server.url)
    await h.publish(flow("r", call(), OK))
    ex = await h.start("r")
    await h.settle()
    waiting = await h.get(ex.id)
    assert waiting.status is S.RECOVERING and waiting.waiting_for == "retry"
    assert waiting.attempts == 1 and waiting.due_at is not None
    ex = await run_out(h, ex.id, step=5)
    assert ex.status is S.COMPLETED
    assert await bot(h, ex.id) == ["got 42"]
    assert await targets(h, ex.id) == [
        S.RUNNING,
        S.RECOVERING,
        S.RUNNING,
        S.RECOVERING,
        S.RUNNING,
        S.COMPLETED,
    ]
    assert [c.attempt for c in await h.store.checkpoints(ex.id)] == [1, 2, 3, 1]
    retries = [m for m in await log_messages(h, ex.id) if m[1] == "node.retry_scheduled"]
    assert retries == [("WARN", "node.retry_scheduled")] * 2
    assert http_server.count("GET", "/data") == 3


async def test_backoff_survives_a_new_worker(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """The attempt count and the backoff timer are in the store: a fresh engine (a new
    process after a crash) continues the count instead of starting over."""
    http_server.route("GET", "/data", status=503)
    first = dep_harness(make_harness, http_server.url)
    await first.publish(flow("d", call(retry={"maxAttempts": 3, "jitter": False}), OK))
    ex = await first.start("d")
    await first.settle()
    assert (await first.get(ex.id)).attempts == 1
    second = make_harness(first.engine.config, worker_id="w2")  # the first one "died"
    second.clock.advance(1.5)
    await second.settle()
    assert (await second.get(ex.id)).attempts == 2
    second.clock.advance(5)
    await second.settle()
    ex = await second.get(ex.id)
    assert ex.status is S.FAILED
    assert http_server.count("GET", "/data") == 3


async def test_retry_after_is_honoured(make_harness: Callable[..., Any], http_server: Any) -> None:
    """A 429 with Retry-After: 7 waits at least seven seconds before the next attempt."""
    http_server.route("GET", "/data", body={"value": 1})
    http_server.fail_first("GET", "/data", 1, status=429, headers={"Retry-After": "7"})
    h = dep_harness(make_harness, http_server.url)
    await h.publish(flow("ra", call(), OK))
    ex = await h.start("ra")
    await h.settle()
    waiting = await h.get(ex.id)
    assert waiting.due_at is not None and waiting.due_at - h.clock.now() >= 7
    h.clock.advance(6)
    await h.settle()
    assert http_server.count("GET", "/data") == 1
    h.clock.advance(1.5)
    await h.settle()
    assert (await h.get(ex.id)).status is S.COMPLETED


async def test_permanent_errors_are_not_retried(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A 404 is not retried: the node's fallback is taken at once (state fallback)."""
    http_server.route("GET", "/data", status=404)
    h = dep_harness(make_harness, http_server.url)
    await h.publish(
        flow(
            "p", call(fallback={"next": "fb"}), OK, {"id": "fb", "type": "end", "text": "fallback"}
        )
    )
    ex = await h.start("p")
    ex = await run_out(h, ex.id)
    assert await bot(h, ex.id) == ["fallback"]
    assert http_server.count("GET", "/data") == 1
    assert await targets(h, ex.id) == [S.RUNNING, S.FALLBACK, S.COMPLETED]
    assert ex.error is not None and ex.error["kind"] == "client"


async def test_node_timeout_cancels_the_call_and_retries(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A dependency slower than the node's timeoutSeconds is cut off, retried, then the
    fallback runs; every attempt is logged with its timeout."""
    http_server.route("GET", "/data", body={"value": 1}, delay=1.0)
    h = dep_harness(make_harness, http_server.url)
    await h.publish(
        flow(
            "t",
            call(timeoutSeconds=0.2, retry={"maxAttempts": 2}, fallback={"next": "fb"}),
            OK,
            {"id": "fb", "type": "end", "text": "slow"},
        )
    )
    ex = await h.start("t")
    ex = await run_out(h, ex.id, step=5)
    assert await bot(h, ex.id) == ["slow"]
    steps = await h.store.checkpoints(ex.id)
    assert [c.error["type"] for c in steps if c.error] == ["NodeTimeout", "NodeTimeout"]
    assert await targets(h, ex.id) == [S.RUNNING, S.RECOVERING, S.RUNNING, S.FALLBACK, S.COMPLETED]


async def test_turn_timeout_ends_in_timeout_with_the_message(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """settings.fallback.timeoutSeconds bounds a turn: a call still running when it passes
    is cancelled, the execution ends in timeout and the contact gets timeoutMessage."""
    http_server.route("GET", "/data", body={"value": 1}, delay=2.0)
    h = dep_harness(make_harness, http_server.url)
    settings = {"fallback": {"timeoutSeconds": 0.3}, "timeoutMessage": "Taking too long."}
    await h.publish(
        flow(
            "tt",
            {"id": "hi", "type": "message", "text": "hi", "next": "call"},
            call(),
            OK,
            settings=settings,
        )
    )
    ex = await h.start("tt")
    await h.settle()
    ex = await h.get(ex.id)
    assert ex.status is S.TIMEOUT and ex.outcome is Outcome.TIMEOUT
    assert await bot(h, ex.id) == ["hi", "Taking too long."]
    assert ("WARN", "execution.turn_timeout") in await log_messages(h, ex.id)


async def test_retries_stop_at_the_turn_deadline(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A retry that would outlast the turn is not waited for: the node gives up at once and
    the fallback path runs (here: none, so the execution fails with a message)."""
    http_server.route("GET", "/data", status=503)
    h = dep_harness(make_harness, http_server.url)
    settings = {"fallback": {"timeoutSeconds": 10}}
    await h.publish(
        flow(
            "td",
            call(retry={"maxAttempts": 10, "initialIntervalSeconds": 8, "jitter": False}),
            OK,
            settings=settings,
        )
    )
    ex = await h.start("td")
    ex = await run_out(h, ex.id, step=4)
    assert ex.status is S.FAILED
    assert http_server.count("GET", "/data") == 2
    assert ex.error is not None and "would outlast the turn" in str(
        [t.reason for t in await h.store.transitions(ex.id)]
    )


async def test_missing_node_follows_on_missing_node(harness: Any) -> None:
    """A jump into a node the target flow lacks: WARN with the id, then onMissingNode."""
    await harness.publish(
        flow(
            "target",
            {"id": "t1", "type": "end", "text": "start"},
            {"id": "lost", "type": "end", "text": "recovered"},
            onMissingNode="lost",
        )
    )
    await harness.publish(
        flow("src", {"id": "j", "type": "jump", "flowId": "target", "nodeId": "ghost"})
    )
    ex = await harness.start("src")
    ex = await run_out(harness, ex.id)
    assert await bot(harness, ex.id) == ["recovered"]
    assert S.FALLBACK in await targets(harness, ex.id)
    logs = await harness.store.logs(ex.id)
    missing = [r for r in logs if r.message == "node.missing"]
    assert missing[0].level == "WARN" and missing[0].context["missingNodeId"] == "ghost"


async def test_missing_node_without_any_fallback_ends_gracefully(harness: Any) -> None:
    """With no fallback of any kind the contact is told and the execution ends failed."""
    await harness.publish(flow("target2", {"id": "t1", "type": "end"}))
    await harness.publish(
        flow("src2", {"id": "j", "type": "jump", "flowId": "target2", "nodeId": "ghost"})
    )
    ex = await harness.start("src2")
    ex = await run_out(harness, ex.id)
    assert ex.status is S.FAILED
    assert await bot(harness, ex.id) == [FAILURE_MESSAGE]
    assert ex.error is not None and ex.error["code"] == "node_not_found"


async def test_global_fallback_flow_gets_the_error(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """Exhausted retries with no node fallback run settings.fallback.fallbackFlowId, with
    the failed node's error in the variables."""
    http_server.route("GET", "/data", status=500)
    h = dep_harness(make_harness, http_server.url)
    await h.publish(
        flow(
            "help",
            {"id": "h1", "type": "end", "text": "Help: {{error.nodeId}} failed ({{error.kind}})"},
        )
    )
    await h.publish(
        flow(
            "main",
            call(retry={"maxAttempts": 2}),
            OK,
            settings={"fallback": {"fallbackFlowId": "help"}},
        )
    )
    ex = await h.start("main")
    ex = await run_out(h, ex.id)
    assert ex.status is S.COMPLETED and ex.flow_id == "help"
    assert await bot(h, ex.id) == ["Help: call failed (server)"]
    assert await targets(h, ex.id) == [S.RUNNING, S.RECOVERING, S.RUNNING, S.FALLBACK, S.COMPLETED]


async def test_escalation_when_the_fallback_flow_fails_too(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """If the fallback flow fails as well and escalateToHuman is set, a handoff is recorded,
    the contact is told, and the execution completes with outcome escalated."""
    http_server.route("GET", "/data", status=400)
    h = dep_harness(make_harness, http_server.url)
    await h.publish(flow("help2", call("again"), OK))
    await h.publish(
        flow(
            "main2",
            call(),
            OK,
            settings={"fallback": {"fallbackFlowId": "help2", "escalateToHuman": True}},
        )
    )
    ex = await h.start("main2")
    ex = await run_out(h, ex.id)
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.ESCALATED
    assert await bot(h, ex.id) == [ESCALATION_MESSAGE]
    (handoff,) = await h.store.handoffs(ex.id)
    assert handoff.queue == "escalation" and "failed" in (handoff.reason or "")
    assert ("WARN", "execution.escalated") in await log_messages(h, ex.id)


async def test_fallback_disabled_fails_with_a_message(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """With settings.fallback.enabled false the execution fails and the contact is told."""
    http_server.route("GET", "/data", status=400)
    h = dep_harness(make_harness, http_server.url)
    await h.publish(
        flow(
            "off",
            call(),
            OK,
            settings={
                "fallback": {"enabled": False, "fallbackFlowId": "x", "escalateToHuman": True}
            },
        )
    )
    ex = await h.start("off")
    ex = await run_out(h, ex.id)
    assert ex.status is S.FAILED
    assert await bot(h, ex.id) == [FAILURE_MESSAGE]
    assert ("ERROR", "execution.ended") in await log_messages(h, ex.id)


def corrupt(h: Any, execution_id: str, column: str, value: Any) -> None:
    """Write straight into the SQLite file, behind the store's back."""
    with closing(sqlite3.connect(h.store.path)) as conn, conn:
        conn.execute(
            f"UPDATE executions SET {column} = ? WHERE id = ?",  # noqa: S608
            (value, execution_id),
        )


QUESTION_FLOW = flow(
    "ask",
    {"id": "hello", "type": "set", "variables": {"greeted": True}, "next": "q"},
    {"id": "q", "type": "question", "text": "Name?", "variable": "name", "next": "bye"},
    {"id": "bye", "type": "end", "text": "Bye {{name}} {{greeted}}"},
)


async def test_corrupted_variables_restore_from_the_last_checkpoint(harness: Any) -> None:
    """Garbage in the variables column: the row is quarantined, the execution goes
    recovering, is restored from its last valid checkpoint (the question is not asked
    again), and an ERROR line names the corruption."""
    await harness.publish(QUESTION_FLOW)
    ex = await harness.start("ask", variables={"vip": True})
    await harness.settle()
    corrupt(harness, ex.id, "variables", '{"truncated": ')
    ex = await harness.reply(ex.id, "Ana")
    assert ex.status is S.COMPLETED
    assert ex.variables == {"vip": True, "greeted": True, "name": "Ana"}
    assert await bot(harness, ex.id) == ["Name?", "Bye Ana true"]
    assert await targets(harness, ex.id) == [
        S.RUNNING,
        S.WAITING_INPUT,
        S.RECOVERING,
        S.RUNNING,
        S.COMPLETED,
    ]
    (kept,) = await harness.store.quarantined(ex.id)
    assert kept["kind"] == "execution" and "truncated" in kept["payload"]
    levels = await log_messages(harness, ex.id)
    assert ("ERROR", "execution.corrupted") in levels


async def test_corrupted_current_node_restores_too(harness: Any) -> None:
    """A current node overwritten with garbage fails the checksum and is restored."""
    await harness.publish(QUESTION_FLOW)
    ex = await harness.start("ask")
    await harness.settle()
    corrupt(harness, ex.id, "current_node_id", "\x00garbage")
    ex = await harness.reply(ex.id, "Bia")
    assert ex.status is S.COMPLETED and ex.variables["name"] == "Bia"


async def test_no_valid_checkpoint_restarts_from_the_start(harness: Any) -> None:
    """With every checkpoint bad too, the flow restarts from its start with the original
    start variables (settings.onCorruption = restart, the default)."""
    await harness.publish(QUESTION_FLOW)
    ex = await harness.start("ask", variables={"vip": True})
    await harness.settle()
    corrupt(harness, ex.id, "variables", "garbage")
    with closing(sqlite3.connect(harness.store.path)) as conn, conn:
        conn.execute("UPDATE checkpoints SET state = 'x' WHERE execution_id = ?", (ex.id,))
    await harness.engine.send(ex.id, "Caio")
    ex = await run_out(harness, ex.id)
    assert ex.variables == {"vip": True, "greeted": True, "name": "Caio"}
    assert await bot(harness, ex.id) == ["Name?", "Name?", "Bye Caio true"]
    kinds = [q["kind"] for q in await harness.store.quarantined(ex.id)]
    assert kinds.count("execution") == 1 and kinds.count("checkpoint") == 2


async def test_no_valid_checkpoint_can_end_instead(harness: Any) -> None:
    """settings.onCorruption = end: the execution ends with a message instead."""
    data = QUESTION_FLOW | {"id": "ask-end", "settings": {"onCorruption": "end"}}
    await harness.publish(data)
    ex = await harness.start("ask-end")
    await harness.settle()
    corrupt(harness, ex.id, "variables", "garbage")
    with closing(sqlite3.connect(harness.store.path)) as conn, conn:
        conn.execute("DELETE FROM checkpoints WHERE execution_id = ?", (ex.id,))
    ex = await harness.reply(ex.id, "x")
    assert ex.status is S.FAILED
    assert (await bot(harness, ex.id))[-1] == FAILURE_MESSAGE


async def test_open_breaker_without_fallback_waits_then_escalates(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A node with no fallback facing an open breaker waits for the dependency (recovering,
    waitingFor dependency) instead of burning attempts; one that comes back is resumed,
    one that stays down past the bound escalates."""
    from trilha.config import BreakerConfig

    http_server.route("GET", "/data", status=503)
    dep = DependencyConfig(
        base_url=http_server.url, breaker=BreakerConfig(failure_threshold=1, open_seconds=20)
    )
    h = make_harness(Config(dependencies={"svc": dep}))
    settings = {"fallback": {"timeoutSeconds": 120, "escalateToHuman": True}}
    await h.publish(flow("br", call(retry={"maxAttempts": 1}), OK, settings=settings))
    first = await h.start("br", conversation="c1")
    await h.settle()  # fails once: 1 attempt, no fallback -> escalated; breaker now open
    assert (await h.get(first.id)).outcome is Outcome.ESCALATED
    second = await h.start("br", conversation="c2")
    await h.settle()
    waiting = await h.get(second.id)
    assert waiting.status is S.RECOVERING and waiting.waiting_for == "dependency"
    assert http_server.count("GET", "/data") == 1  # refused by the breaker, no request
    http_server.route("GET", "/data", body={"value": 5})  # the service comes back
    ex = await run_out(h, second.id, step=10)
    assert ex.status is S.COMPLETED and ex.outcome is Outcome.COMPLETED
    assert await bot(h, second.id) == ["got 5"]
    assert ("WARN", "dependency.waiting") in await log_messages(h, second.id)

    http_server.route("GET", "/data", status=503)  # down again, for good
    third = await h.start("br", conversation="c3")
    h.clock.advance(1)
    ex = await run_out(h, third.id, step=15, rounds=30)
    assert ex.outcome is Outcome.ESCALATED
