"""Operator ``retry`` and ``set_variables`` over the real engine and SQLite store."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from trilha.channels.memory import MemoryChannel
from trilha.config import Config, DependencyConfig
from trilha.core.flow import load_flow
from trilha.core.states import TRANSITIONS, ExecutionStatus
from trilha.engine.clock import FakeClock
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.engine.operator import Operator, unset_path
from trilha.engine.worker import Worker
from trilha.errors import ConfigError, FlowError, IllegalTransition, StaleLease
from trilha.processors.registry import Processors
from trilha.store.base import StepCommit
from trilha.store.sqlite import SQLiteStore

S = ExecutionStatus

ASK = {
    "id": "ask",
    "start": "name",
    "nodes": [
        {"id": "name", "type": "question", "text": "your name?", "variable": "name", "next": "bye"},
        {"id": "bye", "type": "end", "text": "thanks {{name}}, {{customer.tier}} customer"},
    ],
}


def calling(max_attempts: int = 3) -> dict[str, Any]:
    """A flow whose only effect is a GET of the ``svc`` dependency, retried after long
    backoffs (so only an operator's retry makes it happen soon)."""
    return {
        "id": "call",
        "start": "call",
        "settings": {"fallback": {"timeoutSeconds": 86_400}},
        "nodes": [
            {
                "id": "call",
                "type": "http",
                "dependency": "svc",
                "url": "/data",
                "saveAs": "data",
                "retry": {
                    "maxAttempts": max_attempts,
                    "initialIntervalSeconds": 600,
                    "maxIntervalSeconds": 600,
                    "backoffCoefficient": 1,
                    "jitter": False,
                },
                "next": "ok",
            },
            {"id": "ok", "type": "end", "text": "got {{data.value}}"},
        ],
    }


async def history(h: Any, execution_id: str) -> list[tuple[str | None, str, str]]:
    """(from, to, actor) of each state change, checked against the transition table."""
    rows = await h.store.transitions(execution_id)
    for prev, cur in itertools.pairwise(rows):
        assert cur.source is prev.target and cur.target in TRANSITIONS[cur.source], rows
    return [(t.source.value if t.source else None, t.target.value, t.actor) for t in rows]


async def backing_off(make_harness: Any, http_server: Any, *, fails: int, attempts: int = 3) -> Any:
    """A harness whose ``call`` execution failed its first attempt and waits to retry."""
    http_server.route("GET", "/data", body={"value": 7})
    http_server.fail_first("GET", "/data", fails)
    h = make_harness(Config(dependencies={"svc": DependencyConfig(base_url=http_server.url)}))
    await h.publish(calling(attempts))
    ex = await h.start("call")
    await h.settle()
    h.ex = await h.get(ex.id)
    assert h.ex.status is S.RECOVERING and h.ex.attempts == 1 and h.ex.waiting_for == "retry"
    assert h.ex.wake_at == h.clock.now() + 600
    return h


async def test_retry_runs_the_failed_step_now(make_harness: Any, http_server: Any) -> None:
    """A retry moves a backing-off execution to running now, audited; the worker runs the
    node again as its next attempt."""
    h = await backing_off(make_harness, http_server, fails=1)
    operator = Operator(h.store, h.engine)
    retried = await operator.retry(h.ex.id, actor="key:abc", reason="the CRM is back")
    assert retried.status is S.RUNNING and retried.wake_at == h.clock.now()
    assert retried.waiting_for is None and retried.due_at is None and retried.attempts == 1
    row = (await h.store.transitions(h.ex.id))[-1]
    assert (row.source, row.target, row.actor) == (S.RECOVERING, S.RUNNING, "key:abc")
    assert row.reason == (
        "retry requested by an operator: node 'call' retried now (attempt 2): the CRM is back"
    )
    (log,) = [r for r in await h.store.logs(h.ex.id) if r.message == "operator.retry"]
    assert log.context["actor"] == "key:abc" and log.context["to"] == "running"
    await h.settle()  # no clock advance: only the retry makes it run before 600 s
    done = await h.get(h.ex.id)
    assert done.status is S.COMPLETED and done.variables == {"data": {"value": 7}}
    assert http_server.count("GET", "/data") == 2
    assert h.channel.texts(h.ex.id) == ["got 7"]
    assert [to for _, to, _ in await history(h, h.ex.id)] == [
        "running",
        "recovering",
        "running",
        "completed",
    ]


async def test_a_retry_is_an_attempt(make_harness: Any, http_server: Any) -> None:
    """Retried attempts count toward maxAttempts: the last one failing follows the
    failure path (here: no fallback, so the execution fails)."""
    h = await backing_off(make_harness, http_server, fails=5, attempts=2)
    await Operator(h.store, h.engine).retry(h.ex.id)
    await h.settle()
    failed = await h.get(h.ex.id)
    assert failed.status is S.FAILED and failed.error is not None
    assert http_server.count("GET", "/data") == 2
    with pytest.raises(IllegalTransition, match=r"it is failed \(it is final") as caught:
        await Operator(h.store, h.engine).retry(h.ex.id)
    assert caught.value.details["source"] is S.FAILED


async def test_retry_refuses_what_is_not_backing_off(harness: Any) -> None:
    """Only a recovering execution can be retried; the refusal names the state and
    changes nothing."""
    operator = Operator(harness.store, harness.engine)
    await harness.publish(ASK)
    ex = await harness.start("ask")
    await harness.settle()
    waiting = await harness.get(ex.id)
    with pytest.raises(IllegalTransition, match="it is waiting_input") as caught:
        await operator.retry(ex.id)
    assert caught.value.details["source"] is S.WAITING_INPUT
    await operator.pause(ex.id)
    with pytest.raises(IllegalTransition, match="it is paused"):
        await operator.retry(ex.id)
    after = await harness.get(ex.id)
    assert after.fencing_token == waiting.fencing_token + 1  # the pause's bump only


async def test_retry_refuses_an_execution_a_worker_holds(
    make_harness: Any, http_server: Any
) -> None:
    """An execution a worker claimed is being retried already: no second run is forced."""
    h = await backing_off(make_harness, http_server, fails=1)
    h.clock.advance(600)
    (claimed,) = await h.store.claim_due("w2", now=h.clock.now(), lease_seconds=30, limit=1)
    assert claimed.execution.status is S.RECOVERING
    with pytest.raises(IllegalTransition, match="a worker is running it right now"):
        await Operator(h.store, h.engine).retry(h.ex.id)


async def test_set_variables_on_a_waiting_execution(harness: Any) -> None:
    """Variables set and unset by an operator are what the flow reads next; the change
    is a log row (paths only, no values), not a state change."""
    operator = Operator(harness.store, harness.engine)
    await harness.publish(ASK)
    ex = await harness.start("ask", variables={"customer": {"tier": "basic", "cpf": "x"}})
    await harness.settle()
    changed = await operator.set_variables(
        ex.id,
        {"customer.tier": "gold", "notes.first": "called"},
        ["customer.cpf", "not.there"],
        actor="key:abc",
        reason="upgrade",
    )
    assert changed.status is S.WAITING_INPUT
    assert changed.variables == {"customer": {"tier": "gold"}, "notes": {"first": "called"}}
    assert (await harness.get(ex.id)).variables == changed.variables
    assert [to for _, to, _ in await history(harness, ex.id)] == ["running", "waiting_input"]
    (log,) = [r for r in await harness.store.logs(ex.id) if r.message.startswith("operator.")]
    assert log.message == "operator.set_variables"
    assert log.context == {
        "operation": "set_variables",
        "actor": "key:abc",
        "reason": "upgrade",
        "from": "waiting_input",
        "to": "waiting_input",
        "set": ["customer.tier", "notes.first"],
        "unset": ["customer.cpf", "not.there"],
    }
    done = await harness.reply(ex.id, "Ana")
    assert done.status is S.COMPLETED
    assert harness.channel.texts(ex.id) == ["your name?", "thanks Ana, gold customer"]


async def test_set_variables_never_overwrites_a_value_through_a_path(harness: Any) -> None:
    """Setting ``cpf.x`` where ``cpf`` holds a string would silently replace the CPF:
    refused, naming the variable, and nothing is changed."""
    operator = Operator(harness.store, harness.engine)
    await harness.publish(ASK)
    ex = await harness.start("ask", variables={"cpf": "111.222.333-44", "customer": {}})
    await harness.settle()
    with pytest.raises(FlowError, match="'cpf' holds a str"):
        await operator.set_variables(ex.id, {"customer.tier": "gold", "cpf.x": 1})
    assert (await harness.get(ex.id)).variables == {"cpf": "111.222.333-44", "customer": {}}
    replaced = await operator.set_variables(ex.id, {"cpf": {"x": 1}})  # said outright: fine
    assert replaced.variables["cpf"] == {"x": 1}


async def test_set_variables_while_paused_and_refused_once_ended(harness: Any) -> None:
    """Paused executions can be changed (pause, fix, resume); ended ones cannot."""
    operator = Operator(harness.store, harness.engine)
    await harness.publish(ASK)
    ex = await harness.start("ask")
    await harness.settle()
    await operator.pause(ex.id)
    paused = await operator.set_variables(ex.id, {"customer": {"tier": "vip"}})
    assert paused.status is S.PAUSED and paused.variables == {"customer": {"tier": "vip"}}
    await operator.cancel(ex.id)
    with pytest.raises(IllegalTransition, match="it is cancelled") as caught:
        await operator.set_variables(ex.id, {"x": 1})
    assert caught.value.details["source"] is S.CANCELLED


@pytest.mark.parametrize(
    ("assign", "unset", "message"),
    [
        ({}, [], "nothing to change"),
        ({"a b": 1}, [], "expected dotted names"),
        ({"items.0": 1}, [], "cannot be set by index"),
        ({"a": 1}, ["a"], "named twice"),
        ({f"v{i}": i for i in range(101)}, [], "at most 100"),
    ],
)
async def test_set_variables_refuses_bad_paths(
    harness: Any, assign: dict[str, Any], unset: list[str], message: str
) -> None:
    await harness.publish(ASK)
    ex = await harness.start("ask")
    with pytest.raises(ConfigError, match=message):
        await Operator(harness.store, harness.engine).set_variables(ex.id, assign, unset)
    assert (await harness.get(ex.id)).fencing_token == ex.fencing_token


def test_unset_path_leaves_what_is_not_there() -> None:
    variables: dict[str, Any] = {"a": {"b": 1, "c": 2}, "s": "text"}
    unset_path(variables, "a.b")
    unset_path(variables, "s.x")
    unset_path(variables, "nope.x")
    assert variables == {"a": {"c": 2}, "s": "text"}


async def test_set_variables_fences_a_worker_mid_step(
    sqlite_store: SQLiteStore, clock: FakeClock
) -> None:
    """A change of variables while a worker runs a step refuses the worker's commit, so
    the step (re-run from the row) never overwrites the operator's change."""
    processors = Processors.from_entry_points()
    engine = Engine(sqlite_store, processors=processors, config=Config(), clock=clock)
    worker = Worker(engine, Dispatcher(sqlite_store, MemoryChannel(), clock=clock))
    flow = {
        "id": "greet",
        "start": "set",
        "nodes": [
            {"id": "set", "type": "set", "variables": {"greeted": True}, "next": "end"},
            {"id": "end", "type": "end", "text": "hi {{name}}"},
        ],
    }
    await engine.publish(load_flow(flow, processors.node_types))
    ex = await engine.start("greet", institution_id="i", conversation_id="c", contact_id="k")
    (claimed,) = await engine.claim()
    changed = await Operator(sqlite_store, engine).set_variables(ex.id, {"name": "Bia"})
    assert changed.lease_owner is None
    late = StepCommit(claimed.execution, engine.worker_id, claimed.execution.fencing_token)
    with pytest.raises(StaleLease):
        await sqlite_store.commit_step(late, now=clock.now())
    await engine.advance(claimed)  # the worker's own run: its commit is refused quietly
    assert (await sqlite_store.get_execution(ex.id)).step_seq == 0
    await asyncio.wait_for(worker.run_until_idle(), 5)
    done = await sqlite_store.get_execution(ex.id)
    assert done.status is S.COMPLETED
    assert done.variables == {"name": "Bia", "greeted": True}
