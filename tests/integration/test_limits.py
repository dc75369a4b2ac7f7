"""Bounds on what a flow builds and how long it runs (issue 14, findings 4-6, 10, 14):
each is hit by the worst a flow author can publish, and ends in a clear error of kind
``limit`` on the usual fallback path, never an internal error or a stall."""

from __future__ import annotations

import time
from typing import Any

import pytest

from trilha.config import Config, EngineConfig
from trilha.core.answers import is_email
from trilha.core.patterns import full_match
from trilha.core.states import ExecutionStatus

# the root conftest's fixtures (its module name is shared with other folders')
Harness = Any

S = ExecutionStatus


def _set_flow(expressions: dict[str, str], **settings: Any) -> dict[str, Any]:
    return {
        "id": "build",
        "start": "make",
        "settings": settings,
        "nodes": [
            {
                "id": "make",
                "type": "set",
                "expressions": expressions,
                "fallback": {"next": "too_big"},
                "next": "done",
            },
            {"id": "done", "type": "end", "text": "built"},
            {"id": "too_big", "type": "end", "text": "that was too much"},
        ],
    }


async def _run(h: Harness, flow: dict[str, Any], **start: Any) -> Any:
    await h.publish(flow)
    ex = await h.start(flow["id"], **start)
    await h.settle(ex.id)
    return await h.get(ex.id)


async def test_a_value_of_shared_references_fails_the_node_as_it_is_built(
    harness: Harness,
) -> None:
    """Finding 5: lists of references to one large string fail with kind limit (the
    node's fallback), before gigabytes exist; the execution's variables are untouched."""
    # stored flows keep their keys sorted, so the names give the order of evaluation
    row = "[" + ", ".join(["a_s"] * 30) + "]"
    table = "[" + ", ".join(["b_rows"] * 30) + "]"
    flow = _set_flow({"a_s": "'" + "x" * 1_000 + "'", "b_rows": row, "c_table": table})
    started = time.monotonic()
    ex = await _run(harness, flow)
    assert time.monotonic() - started < 5  # the attack took 101 s and 4.9 GB
    assert ex.status is S.COMPLETED
    assert harness.channel.texts(ex.id) == ["that was too much"]
    assert ex.variables == {}
    failed = (await harness.store.checkpoints(ex.id))[0]
    assert failed.error is not None
    assert failed.error["kind"] == "limit"
    assert "larger than 65536 bytes" in failed.error["message"]


async def test_integers_beyond_64_bits_fail_the_node_not_the_worker(harness: Harness) -> None:
    """Finding 6: a chain of x*x fails the node with kind limit, never an internal error."""
    flow = _set_flow({"x": "x * x * x * x * x * x * x * x * x * x"})
    ex = await _run(harness, flow, variables={"x": 99})
    assert harness.channel.texts(ex.id) == ["that was too much"]
    failed = (await harness.store.checkpoints(ex.id))[0]
    assert failed.error is not None and failed.error["kind"] == "limit"
    assert "64 bits" in failed.error["message"]


async def test_the_state_budget_counts_every_variable(make_harness: Any) -> None:
    """Values each under max_value_bytes still fail once the variables pass max_state_bytes."""
    h: Harness = make_harness(
        Config(engine=EngineConfig(max_value_bytes=1_000, max_state_bytes=2_500))
    )
    text = "'" + "y" * 900 + "'"
    flow = _set_flow({"a": text, "b": text, "c": text})
    ex = await _run(h, flow)
    assert h.channel.texts(ex.id) == ["that was too much"]
    failed = (await h.store.checkpoints(ex.id))[0]
    assert failed.error is not None and "max_state_bytes" in failed.error["message"]
    assert ex.variables == {}


async def test_a_template_repeating_a_large_variable_is_refused(make_harness: Any) -> None:
    """A message or set value rendering a large variable over and over stops at the
    budget instead of building the whole text."""
    h: Harness = make_harness(Config(engine=EngineConfig(max_value_bytes=10_000)))
    flow = {
        "id": "render",
        "start": "make",
        "nodes": [
            {
                "id": "make",
                "type": "set",
                "variables": {"copies": ["{{big}}"] * 100, "text": "{{big}}" * 100},
                "fallback": {"next": "say"},
                "next": "end",
            },
            {
                "id": "say",
                "type": "message",
                "text": "{{big}}{{big}}{{big}}{{big}}{{big}}",
                "fallback": {"next": "end"},
                "next": "end",
            },
            {"id": "end", "type": "end", "text": "ok"},
        ],
    }
    ex = await _run(h, flow, variables={"big": "z" * 3_000})
    assert h.channel.texts(ex.id) == ["ok"]
    steps = await h.store.checkpoints(ex.id)
    assert [s.error["kind"] for s in steps if s.error] == ["limit", "limit"]


async def test_a_delay_loop_ends_failed(make_harness: Any) -> None:
    """Finding 10: a loop through a positive delay ends failed after
    max_steps_without_input, with the reason in its history and trail."""
    h: Harness = make_harness(Config(engine=EngineConfig(max_steps_without_input=60)))
    flow = {
        "id": "loop",
        "start": "wait",
        "nodes": [
            {"id": "wait", "type": "delay", "seconds": 1, "next": "count"},
            {"id": "count", "type": "set", "expressions": {"n": "n + 1"}, "next": "wait"},
        ],
    }
    await h.publish(flow)
    ex = await h.start("loop", variables={"n": 0})
    for _ in range(200):
        await h.settle(ex.id)
        if (await h.get(ex.id)).status.terminal:
            break
        h.clock.advance(1.5)
    done = await h.get(ex.id)
    assert done.status is S.FAILED
    assert done.step_seq <= 62
    assert done.error is not None and done.error["kind"] == "limit"
    history = await h.store.transitions(ex.id)
    assert "max_steps_without_input" in history[-1].reason
    trail = await h.store.logs(ex.id)
    assert any(r.message == "execution.limit" for r in trail)


async def test_replies_reset_the_quiet_count_but_not_the_lifetime_one(make_harness: Any) -> None:
    """A conversation that keeps answering runs past max_steps_without_input, and still
    ends at max_steps_per_execution."""
    h: Harness = make_harness(
        Config(engine=EngineConfig(max_steps_without_input=5, max_steps_per_execution=30))
    )
    flow = {
        "id": "chat",
        "start": "ask",
        "nodes": [
            {"id": "ask", "type": "question", "text": "again?", "variable": "a", "next": "m1"},
            {"id": "m1", "type": "message", "text": "one", "next": "m2"},
            {"id": "m2", "type": "message", "text": "two", "next": "ask"},
        ],
    }
    await h.publish(flow)
    ex = await h.start("chat")
    await h.settle(ex.id)
    for i in range(20):
        ex = await h.reply(ex.id, f"answer {i}")
        if ex.status.terminal:
            break
    assert ex.status is S.FAILED
    assert ex.error is not None and "max_steps_per_execution" in ex.error["message"]
    assert ex.step_seq >= 30


async def test_an_overlong_reply_takes_the_invalid_path_before_any_check(
    make_harness: Any,
) -> None:
    """A reply longer than max_input_chars is refused with the question's invalid-answer
    path; the pattern never sees it."""
    h: Harness = make_harness(Config(engine=EngineConfig(max_input_chars=100)))
    flow = {
        "id": "ask",
        "start": "q",
        "nodes": [
            {
                "id": "q",
                "type": "question",
                "text": "code?",
                "variable": "code",
                "validate": {"kind": "regex", "pattern": "(a+)+$"},
                "invalidText": "too long or wrong",
                "next": "end",
            },
            {"id": "end", "type": "end", "text": "got {{code}}"},
        ],
    }
    await h.publish(flow)
    ex = await h.start("ask")
    await h.settle(ex.id)
    ex = await h.reply(ex.id, "a" * 101)
    assert h.channel.texts(ex.id)[-1] == "too long or wrong"
    steps = await h.store.checkpoints(ex.id)
    assert steps[-1].output["invalid"] == "longer than 100 characters (max_input_chars)"
    ex = await h.reply(ex.id, "a" * 100)
    assert h.channel.texts(ex.id)[-1] == "got " + "a" * 100


def test_answer_patterns_run_in_linear_time() -> None:
    """Finding 4: the pattern that took Python 41 s on 31 characters answers a
    10,000-character reply at once (Python's engine would not finish)."""
    started = time.monotonic()
    assert not full_match("(a+)+$", "a" * 9_999 + "!")
    assert full_match("(a+)+$", "a" * 10_000)
    assert not full_match("(x+x+)+y", "x" * 10_000)
    assert time.monotonic() - started < 10  # milliseconds; Python's engine never ends


@pytest.mark.parametrize("size", [10_000, 100_000])
def test_the_email_check_is_linear(size: int) -> None:
    """Finding 14: the e-mail check of a reply full of dots takes time linear in it
    (the old pattern took 0.4 s on 10,000 characters, and 40 s on 100,000)."""
    reply = "a@b" + ".b" * (size // 2) + " "
    started = time.monotonic()
    assert not is_email(reply)
    assert is_email(reply.strip())
    # milliseconds; the old pattern's 40 s on 100,000 is what the bound tells apart
    assert time.monotonic() - started < 5
