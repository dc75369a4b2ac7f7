"""Rounds of retries (issue 17) through the real engine, a real SQLite file and a real
HTTP dependency on 127.0.0.1: a round is the node's ``max_attempts``; when all of them
failed in a way that counts against the dependency, another round follows after a
longer pause, up to ``retry_rounds``; a failure that is the request's own (a 500) ends
the node after one round, and so does a node that sets its own ``retry``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from trilha.config import BreakerConfig, Config, DependencyConfig
from trilha.core.flow import RetryPolicy
from trilha.core.states import ExecutionStatus, Outcome

Harness = Any
S = ExecutionStatus

#: the dependency's policy: three attempts a round, 1 s then 2 s apart (no jitter), so
#: the round's pause is told apart
RETRY = RetryPolicy(max_attempts=3, initial_interval_seconds=1, jitter=False)


def flow(**node: Any) -> dict[str, Any]:
    return {
        "id": "rounds",
        "start": "call",
        "nodes": [
            {
                "id": "call",
                "type": "http",
                "dependency": "svc",
                "url": "/data",
                "saveAs": "data",
                "fallback": {"next": "sorry"},
                "next": "ok",
                **node,
            },
            {"id": "ok", "type": "end", "text": "got {{data.value}}"},
            {"id": "sorry", "type": "end", "text": "sorry"},
        ],
    }


def config(url: str, **dependency: Any) -> Config:
    dependency.setdefault("retry", RETRY)
    return Config(dependencies={"svc": DependencyConfig(base_url=url, **dependency)})


async def run_out(h: Harness, execution_id: str) -> Any:
    """Let fake time pass, half a second at a time, until the execution ends."""
    for _ in range(200):
        await h.settle()
        ex = await h.get(execution_id)
        if ex.status.terminal:
            return ex
        h.clock.advance(0.5)
    return await h.get(execution_id)


async def scheduled(h: Harness, execution_id: str) -> list[dict[str, Any]]:
    """The ``node.retry_scheduled`` lines' attempt, round and delay, in order."""
    return [
        {k: r.context[k] for k in ("attempt", "round", "rounds", "delaySeconds")}
        for r in await h.store.logs(execution_id)
        if r.message == "node.retry_scheduled"
    ]


async def test_a_round_of_503s_is_followed_by_another_after_a_longer_pause(
    make_harness: Callable[..., Harness], http_server: Any
) -> None:
    http_server.route("GET", "/data", body={"value": 7})
    http_server.fail_first("GET", "/data", 4)  # round 1 (3 calls) and round 2's first
    h = make_harness(config(http_server.url))
    await h.publish(flow())
    ex = await h.start("rounds")
    done = await run_out(h, ex.id)
    assert (done.status, done.outcome) == (S.COMPLETED, Outcome.COMPLETED)
    assert http_server.count("GET", "/data") == 5
    lines = await scheduled(h, ex.id)
    assert [(x["attempt"], x["round"], x["rounds"]) for x in lines] == [
        (1, 1, 3),
        (2, 1, 3),
        (3, 1, 3),  # the round is spent: the next one begins after its pause
        (1, 2, 3),
    ]
    assert [x["delaySeconds"] for x in lines[:2]] == [1.0, 2.0]
    assert 0.5 <= lines[2]["delaySeconds"] <= 1.0  # retry_round_seconds 1, jittered
    transitions = [t.target for t in await h.store.transitions(ex.id)]
    assert transitions.count(S.RECOVERING) == 4  # it stayed recovering between rounds
    assert done.error is None and done.attempts == 0


async def test_every_round_failing_ends_in_the_fallback_after_all_of_them(
    make_harness: Callable[..., Harness], http_server: Any
) -> None:
    http_server.route("GET", "/data", status=503, body={"error": "down"})
    h = make_harness(config(http_server.url, retry_round_seconds=2))
    await h.publish(flow())
    ex = await h.start("rounds")
    done = await run_out(h, ex.id)
    assert done.status is S.COMPLETED and done.current_node_id == "sorry"
    assert http_server.count("GET", "/data") == 9  # 3 rounds of 3: bounded
    lines = await scheduled(h, ex.id)
    assert [x["round"] for x in lines] == [1, 1, 1, 2, 2, 2, 3, 3]
    assert 1.0 <= lines[2]["delaySeconds"] <= 2.0  # before round 2: 0.5-1 x 2 s
    assert 2.0 <= lines[5]["delaySeconds"] <= 4.0  # before round 3: doubled
    failed = [r for r in await h.store.logs(ex.id) if r.message == "node.failed"]
    assert "3 of 3 attempts failed, in each of 3 rounds" in failed[-1].context["reason"]


@pytest.mark.parametrize(
    ("status", "dependency", "why"),
    [
        (500, {}, "a 500 is the request's own failure: another round would meet it again"),
        (503, {"retry_rounds": 1}, "retry_rounds = 1 turns rounds off"),
        (503, {"breaker": BreakerConfig(count=["timeout"])}, "503 does not count here"),
        (503, {"node": {"retry": {"maxAttempts": 3}}}, "the node's own retry is exact"),
    ],
)
async def test_one_round_only_when_the_failure_does_not_count_or_rounds_are_off(
    make_harness: Callable[..., Harness],
    http_server: Any,
    status: int,
    dependency: dict[str, Any],
    why: str,
) -> None:
    http_server.route("GET", "/data", status=status, body={"error": "no"})
    node = dependency.pop("node", {})
    h = make_harness(config(http_server.url, **dependency))
    await h.publish(flow(**node))
    ex = await h.start("rounds")
    done = await run_out(h, ex.id)
    assert done.status is S.COMPLETED and done.current_node_id == "sorry", why
    assert http_server.count("GET", "/data") == 3, why
    assert {x["round"] for x in await scheduled(h, ex.id)} == {1}, why


async def test_the_round_survives_a_worker_change(
    make_harness: Callable[..., Harness], http_server: Any
) -> None:
    """The round is kept with the node's state in the store: another worker (as after a
    crash) carries on in round 2, not back in round 1."""
    http_server.route("GET", "/data", status=503, body={"error": "down"})
    first = make_harness(config(http_server.url), worker_id="w1")
    await first.publish(flow())
    ex = await first.start("rounds")
    for _ in range(20):  # until round 1 is spent and round 2 scheduled
        await first.settle()
        if http_server.count("GET", "/data") == 3:
            break
        first.clock.advance(0.5)
    assert (await first.get(ex.id)).node_state.get("retryRound") == 2
    second = make_harness(config(http_server.url), worker_id="w2")
    done = await run_out(second, ex.id)
    assert done.current_node_id == "sorry"
    assert http_server.count("GET", "/data") == 9
