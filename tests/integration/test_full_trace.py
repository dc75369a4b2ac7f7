"""The stored trail alone tells an execution's whole story (DESIGN §5, issue 4).

:func:`~trilha.observability.trace.read_trace` reads nothing but the wire objects of
an execution's stored log lines (what ``trilha logs --json`` prints) and reconstructs
from them: the flow and version it ran, the nodes in order with duration and outcome,
every retry with its attempt and error, every state change with why and who, what was
said to and by the contact (masked), and how it ended. It refuses a trail that cannot
answer one of these (a node entered and never left, a failure without its error, a
state change that does not follow from the previous one, personal data in a message...).

Each scenario then runs a real engine over a real SQLite file (an HTTP dependency on
127.0.0.1 where one is needed) and compares what the reader reconstructed with the
rest of the store (:func:`~trilha.observability.trace.story_problems`): the state
history, the checkpoints, the outbox, the transcript and the execution row. A trail
line that is missing or says something else fails the test.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from typing import Any

import pytest

from trilha.config import BreakerConfig, Config, DependencyConfig
from trilha.core.execution import Execution
from trilha.core.states import ExecutionStatus, Outcome
from trilha.engine.clock import FakeClock
from trilha.engine.engine import ESCALATION_MESSAGE
from trilha.engine.operator import Operator
from trilha.observability.masking import mask_text
from trilha.observability.trace import (
    Exchange,
    Trace,
    TrailIncomplete,
    read_trace,
    story_problems,
    trace_problems,
    trail_lines,
)

S = ExecutionStatus

# --------------------------------------------------------------------------- ground truth


async def trail_of(h: Any, execution_id: str) -> list[dict[str, Any]]:
    """The wire objects of the stored trail, identity taken from the trail itself."""
    return trail_lines(await h.store.logs(execution_id))


async def trace_of(h: Any, execution_id: str, **kwargs: Any) -> Trace:
    return read_trace(await trail_of(h, execution_id), **kwargs)


async def story_of(h: Any, trace: Trace) -> list[str]:
    """Where ``trace`` and the rest of the store disagree."""
    execution_id = trace.execution_id
    return story_problems(
        trace,
        await h.get(execution_id),
        await h.store.checkpoints(execution_id),
        await h.store.transitions(execution_id),
        await h.store.outbox_for(execution_id),
        await h.store.transcript(execution_id),
    )


async def assert_same_story(h: Any, trace: Trace) -> None:
    """What the trail told equals what the rest of the store holds, and the store's
    own trail passes the check ``trilha chaos`` makes of it."""
    assert await story_of(h, trace) == []
    assert await trace_problems(h.store, trace.execution_id) == []


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
    trace = read_trace(wire_lines)
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
    trace = read_trace(wire_lines)
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


#: each damage, and the answer the reader must say is missing
BROKEN_TRAILS: dict[str, tuple[Callable[[list[dict[str, Any]]], None], str]] = {
    "no start": (_drop("execution.started"), "a trail not opened by its start at line 1"),
    "a node never left": (_drop("node.left", 1), "a node entered while another is open"),
    "a failed node without its error": (
        _drop("node.retry_scheduled"),
        "an outcome its error contradicts",
    ),
    "a retry without its error": (
        _edit("node.retry_scheduled", _no_error),
        "a failure without its error type and message",
    ),
    "a node exit without its duration": (_edit("node.left", _no_duration), "no duration"),
    "a missing state change": (
        _drop("execution.state_changed", 1),
        "a change from running while the trail says recovering",
    ),
    "an illegal state change": (
        _edit("execution.state_changed", _illegal),
        "running -> running is not in the transition table",
    ),
    "no end": (_drop("execution.ended"), "in completed but no execution.ended line"),
    "an unmasked message": (_edit("message.queued", _unmask), "an unmasked e-mail in a message"),
    "lines out of order": (_swap_first_two, "a trail not opened by its start"),
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
    read_trace(wire_lines)  # the untouched trail answers everything
    damaged = json.loads(json.dumps(wire_lines))
    damage, missing = BROKEN_TRAILS[broken]
    damage(damaged)
    with pytest.raises(TrailIncomplete, match=re.escape(missing)):
        read_trace(damaged)


def _drop_step(wire_lines: list[dict[str, Any]]) -> None:
    """The first node's entry and exit, as if the step had never run."""
    _drop("node.entered")(wire_lines)
    _drop("node.left")(wire_lines)


def _longer(line: dict[str, Any]) -> None:
    line["context"]["duration"] += 0.5


def _other_error(line: dict[str, Any]) -> None:
    line["context"]["error"]["message"] = "GET /data answered 500"


#: each damage, and what the comparison must find it in
UNSEEN_DAMAGE: dict[str, tuple[Callable[[list[dict[str, Any]]], None], set[str]]] = {
    "a lost message": (_drop("message.queued"), {"bot messages", "transcript"}),
    "a lost step": (_drop_step, {"steps"}),
    "a wrong duration": (_edit("node.left", _longer), {"steps"}),
    "a wrong error": (_edit("node.retry_scheduled", _other_error), {"steps", "retries"}),
}


@pytest.mark.parametrize("damage", list(UNSEEN_DAMAGE))
async def test_damage_the_checker_cannot_see_fails_the_comparison(
    retried_trail: Any, damage: str
) -> None:
    """A lost message or step, a wrong duration or error still read as a story; the
    rest of the store says otherwise, and the comparison with it fails."""
    h, _, wire_lines = retried_trail
    await assert_same_story(h, read_trace(wire_lines))
    damaged = json.loads(json.dumps(wire_lines))
    change, found_in = UNSEEN_DAMAGE[damage]
    change(damaged)
    trace = read_trace(damaged)
    problems = await story_of(h, trace)
    assert {problem.split(":")[0] for problem in problems} == found_in


async def test_a_step_in_flight_is_open_only_when_allowed(retried_trail: Any) -> None:
    """A trail read while a node runs ends on its entry: refused as a finished story,
    answered when the caller says the execution is mid-step."""
    _, _, wire_lines = retried_trail
    cut = next(i for i, line in enumerate(wire_lines) if line["message"] == "node.entered")
    in_flight = wire_lines[: cut + 1]
    with pytest.raises(TrailIncomplete):
        read_trace(in_flight)
    trace = read_trace(in_flight, mid_step=True)
    assert trace.open_node is not None and trace.open_node.node_id == "hi"
    assert trace.status == "running" and trace.ending is None


# --------------------------------------------------------------------------- damage in the store


def delete_log(h: Any, execution_id: str, message: str) -> None:
    """Lose one stored trail line, behind the store's back."""
    with closing(sqlite3.connect(h.store.path)) as conn, conn:
        conn.execute(
            "DELETE FROM execution_logs WHERE id ="
            " (SELECT min(id) FROM execution_logs WHERE execution_id = ? AND message = ?)",
            (execution_id, message),
        )


async def test_trace_problems_names_a_trail_that_cannot_be_read(retried_trail: Any) -> None:
    """A stored trail the reader refuses is one problem, ``trail: ...``, naming what is
    missing; nothing is compared with a story that cannot be read."""
    h, execution_id, _ = retried_trail
    assert await trace_problems(h.store, execution_id) == []
    delete_log(h, execution_id, "execution.ended")
    assert await trace_problems(h.store, execution_id) == [
        "trail: in completed but no execution.ended line"
    ]


async def test_trace_problems_names_a_story_the_store_contradicts(retried_trail: Any) -> None:
    """A stored trail that reads as a story but lost a message: the comparison with the
    outbox and the transcript finds it."""
    h, execution_id, _ = retried_trail
    delete_log(h, execution_id, "message.queued")
    problems = await trace_problems(h.store, execution_id)
    assert [problem.split(":")[0] for problem in problems] == ["bot messages", "transcript"]
    assert "Um momento..." in problems[0]


async def test_trace_problems_on_an_unreadable_row(harness: Any) -> None:
    """An execution row the store cannot read leaves nothing to compare the trail with:
    that is the problem, and the trail is still read."""
    await harness.publish(PHONE_FLOW)
    ex = await harness.start("phone")
    await harness.settle()
    corrupt(harness, ex.id, "variables", '{"truncated": ')
    problems = await trace_problems(harness.store, ex.id)
    assert len(problems) == 1 and "the store cannot read it" in problems[0]
