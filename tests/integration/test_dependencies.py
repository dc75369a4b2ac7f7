"""Declared dependencies: configuration, the address policy, circuit breakers shared
by the executions of a process, and health probes, against a real HTTP server."""

from __future__ import annotations

import socket
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from trilha.config import BreakerConfig, Config, DependencyConfig, load_config
from trilha.core.flow import RetryPolicy
from trilha.core.states import ExecutionStatus
from trilha.errors import ConfigError
from trilha.resilience.breaker import BreakerSettings, BreakerState
from trilha.resilience.dependencies import DependencyClient, probe

S = ExecutionStatus

EXAMPLE = """
[dependencies.crm]
base_url = "https://crm.example.com/api"
timeout_seconds = 5
health_url = "/health"
headers = { Authorization = "Bearer ${CRM_TOKEN}" }
retry = { max_attempts = 3, initial_interval_seconds = 1 }

[dependencies.crm.breaker]
failure_rate = 0.25
window = 40
min_calls = 8
open_seconds = 30
count = ["timeout", "connect", "5xx"]
"""


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def crm(url: str, **breaker: Any) -> Config:
    return Config(
        dependencies={"crm": DependencyConfig(base_url=url, breaker=BreakerConfig(**breaker))}
    )


def call_flow(path: str = "/customers", **node: Any) -> dict[str, Any]:
    """One http call to the crm, no retries; the fallback says 'sorry', success 'ok'."""
    return {
        "id": "call",
        "start": "call",
        "nodes": [
            {
                "id": "call",
                "type": "http",
                "dependency": "crm",
                "url": path,
                "saveAs": "reply",
                "retry": {"maxAttempts": 1},
                "fallback": {"next": "sorry"},
                "next": "ok",
                **node,
            },
            {"id": "ok", "type": "end", "text": "ok"},
            {"id": "sorry", "type": "end", "text": "sorry"},
        ],
    }


async def run_one(h: Any, conversation: str) -> tuple[Any, list[str]]:
    """Start the flow on a new conversation, run it, return it and its steps' error types."""
    ex = await h.start("call", conversation=conversation)
    await h.settle()
    errors = [c.error["type"] for c in await h.store.checkpoints(ex.id) if c.error]
    return await h.get(ex.id), errors


async def bot_texts(h: Any, execution_id: str) -> list[str]:
    return [t.text for t in await h.store.transcript(execution_id) if t.sender == "bot"]


# ----------------------------------------------------------------------------- configuration


def test_issue_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trilha.toml of the issue loads, with its retry policy and breaker settings."""
    monkeypatch.setenv("CRM_TOKEN", "s3cret")
    path = tmp_path / "trilha.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    dep = load_config(path).dependencies["crm"]
    assert dep.base_url == "https://crm.example.com/api"
    assert dep.timeout_seconds == 5
    assert dep.health_url == "/health"
    assert dep.retry == RetryPolicy(max_attempts=3, initial_interval_seconds=1)
    assert dep.breaker.settings() == BreakerSettings(
        failure_rate=0.25,
        window=40,
        min_calls=8,
        open_seconds=30,
        half_open_probes=3,
        count=("timeout", "connect", "5xx"),
    )
    assert dep.resolved_headers("crm") == {"Authorization": "Bearer s3cret"}


def test_defaults_and_camel_case(tmp_path: Path) -> None:
    """Only base_url is required; camelCase keys are accepted as well."""
    path = tmp_path / "trilha.toml"
    path.write_text(
        '[dependencies.nlp]\nbaseUrl = "http://10.0.0.5:9000"\nbreaker = { openSeconds = 5 }\n',
        encoding="utf-8",
    )
    dep = load_config(path).dependencies["nlp"]
    assert dep.retry is None and dep.health_url is None
    assert dep.breaker.settings() == BreakerSettings(open_seconds=5)
    assert dep.breaker.settings().count == ("timeout", "connect", "429", "502", "503", "504")
    assert dep.timeout_seconds == 10


def test_missing_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A header naming an unset environment variable is a ConfigError saying which."""
    monkeypatch.delenv("CRM_TOKEN", raising=False)
    dep = DependencyConfig(
        base_url="https://crm.example.com", headers={"Authorization": "${CRM_TOKEN}"}
    )
    with pytest.raises(ConfigError, match=r"dependencies\.crm\.headers\.Authorization.*CRM_TOKEN"):
        dep.resolved_headers("crm")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('base_url = "crm.example.com"', "base_url: .*http"),
        ('base_url = "http://a.example"\nhealth_url = "http://b.example/h"', "not on base_url"),
        ('base_url = "http://a.example"\nbreaker = { failure_threshold = 0 }', "failure_threshold"),
        ('base_url = "http://a.example"\nretry = { max_attempts = 0 }', "max_attempts"),
        ('base_url = "http://a.example"\nbreaker = { opn_seconds = 1 }', "opn_seconds"),
        (
            'base_url = "http://a.example"\nbreaker = { count = ["timeout", "5xxx"] }',
            r"dependencies\.crm\.breaker\.count: .*unknown entry '5xxx'",
        ),
        (
            'base_url = "http://a.example"\nbreaker = { count = ["200"] }',
            "unknown entry '200'.*from 400 to 599",
        ),
        ('base_url = "http://a.example"\nbreaker = { failure_rate = 1.5 }', "failure_rate"),
        (
            'base_url = "http://a.example"\nbreaker = { window = 5, min_calls = 6 }',
            r"min_calls \(6\) is larger than window \(5\)",
        ),
    ],
)
def test_bad_dependency_is_refused(tmp_path: Path, body: str, message: str) -> None:
    """A bad dependency is refused when the file loads, naming the key."""
    path = tmp_path / "trilha.toml"
    path.write_text(f"[dependencies.crm]\n{body}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


# ----------------------------------------------------------------------------- address policy


async def test_declared_loopback_dependency_is_allowed_plain_url_is_not(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A dependency on 127.0.0.1 is called; the same server as a plain URL is refused."""
    http_server.route("GET", "/customers", body={"name": "Ana"})
    h = make_harness(crm(http_server.url))
    await h.publish(call_flow())
    ex, errors = await run_one(h, "c1")
    assert ex.status is S.COMPLETED and errors == []
    assert ex.variables["reply"] == {"name": "Ana"}
    await h.publish(
        call_flow(http_server.url + "/customers", dependency=None)
        | {"id": "plain", "start": "call"}
    )
    plain = await h.start("plain", conversation="c2")
    await h.settle()
    (step, *_) = [c for c in await h.store.checkpoints(plain.id) if c.error]
    assert step.error is not None and step.error["type"] == "BlockedAddress"
    assert len(http_server.requests) == 1


# ----------------------------------------------------------------------------- breakers


async def test_breaker_opens_after_failures_then_fails_fast(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """After failure_threshold 503s the breaker opens: the next call fails fast with
    DependencyUnavailable, without reaching the server, and the fallback runs."""
    http_server.route("GET", "/customers", status=503, body={"e": "down"})
    h = make_harness(crm(http_server.url, failure_threshold=3))
    await h.publish(call_flow())
    for i in range(3):
        ex, errors = await run_one(h, f"c{i}")
        assert errors == ["NodeError"]
        assert await bot_texts(h, ex.id) == ["sorry"]
    assert len(http_server.requests) == 3
    assert h.engine.breakers.get("crm").state is BreakerState.OPEN
    ex, errors = await run_one(h, "c-fast")
    assert errors == ["DependencyUnavailable"]
    assert len(http_server.requests) == 3
    assert await bot_texts(h, ex.id) == ["sorry"]
    (step,) = [c for c in await h.store.checkpoints(ex.id) if c.error]
    assert step.error is not None
    assert step.error["details"]["dependency"] == "crm"
    assert step.error["details"]["retry_at"] == h.engine.breakers.get("crm").retry_at()
    assert step.error["details"]["request"] == f"GET {http_server.url}/customers"
    assert "circuit open" in step.error["message"]


async def test_breaker_fallback_shows_degraded(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A node facing an open breaker takes its fallback with the execution degraded."""
    http_server.route("GET", "/customers", status=503)
    h = make_harness(crm(http_server.url, failure_threshold=1))
    await h.publish(call_flow())
    await run_one(h, "c1")
    ex, _ = await run_one(h, "c2")
    history = [t.target for t in await h.store.transitions(ex.id)]
    assert history == [S.RUNNING, S.DEGRADED, S.COMPLETED]


async def test_timeouts_and_connection_errors_count_as_failures(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A call slower than the timeout and a refused connection both count against the
    dependency."""
    http_server.route("GET", "/slow", delay=0.5, body={})
    config = Config(
        dependencies={
            "crm": DependencyConfig(base_url=http_server.url, timeout_seconds=0.1),
            "gone": DependencyConfig(base_url=closed_port_url()),
        }
    )
    h = make_harness(config)
    await h.publish(call_flow("/slow"))
    slow, errors = await run_one(h, "c1")
    assert errors == ["NodeTimeout"]
    (step,) = [c for c in await h.store.checkpoints(slow.id) if c.error]
    assert step.error is not None
    assert step.error["details"]["request"] == f"GET {http_server.url}/slow"
    assert h.engine.breakers.get("crm").snapshot().failures == 1
    await h.publish(call_flow(dependency="gone") | {"id": "gone", "start": "call"})
    gone = await h.start("gone", conversation="c2")
    await h.settle()
    (step,) = [c for c in await h.store.checkpoints(gone.id) if c.error]
    assert step.error is not None and step.error["details"]["kind"] == "connection"
    assert step.error["details"]["request"].startswith("GET http://127.0.0.1:")
    assert h.engine.breakers.get("gone").snapshot().failures == 1


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_client_errors_do_not_open_the_breaker(
    make_harness: Callable[..., Any], http_server: Any, status: int
) -> None:
    """A 4xx is the caller's fault: it fails the node but the breaker stays closed."""
    http_server.route("GET", "/customers", status=status, body={"e": "bad"})
    h = make_harness(crm(http_server.url, failure_threshold=2))
    await h.publish(call_flow())
    for i in range(4):
        _, errors = await run_one(h, f"c{i}")
        assert errors == ["NodeError"]
    assert len(http_server.requests) == 4
    assert h.engine.breakers.get("crm").state is BreakerState.CLOSED


async def test_a_500_fails_the_request_not_the_dependency(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """By default a 500 fails the node (its fallback runs) but counts as the dependency
    answering, so a window full of them leaves the breaker closed; a dependency whose
    count lists 5xx is opened by them."""
    http_server.route("GET", "/customers", status=500)
    h = make_harness(crm(http_server.url, window=4, min_calls=4))
    await h.publish(call_flow())
    for i in range(6):
        ex, errors = await run_one(h, f"c{i}")
        assert errors == ["NodeError"] and await bot_texts(h, ex.id) == ["sorry"]
    snap = h.engine.breakers.get("crm").snapshot()
    assert snap.state is BreakerState.CLOSED and (snap.calls, snap.failures) == (4, 0)
    strict = crm(http_server.url, window=4, min_calls=4, count=["timeout", "connect", "5xx"])
    other = make_harness(strict, worker_id="w2")
    for i in range(4):
        await run_one(other, f"s{i}")
    assert other.engine.breakers.get("crm").state is BreakerState.OPEN
    _, errors = await run_one(other, "s-fast")
    assert errors == ["DependencyUnavailable"] and len(http_server.requests) == 10


async def test_rate_limiting_counts_as_failure(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A 429 counts against the dependency like a 5xx."""
    http_server.route("GET", "/customers", status=429, headers={"Retry-After": "1"})
    h = make_harness(crm(http_server.url, failure_threshold=2))
    await h.publish(call_flow())
    for i in range(2):
        await run_one(h, f"c{i}")
    assert h.engine.breakers.get("crm").state is BreakerState.OPEN


async def test_breaker_is_shared_by_executions_of_a_process_only(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """Failures of different executions add up in one process's breaker; another
    process (engine) has its own, still closed."""
    http_server.route("GET", "/customers", status=502)
    config = crm(http_server.url, failure_threshold=2)
    h = make_harness(config)
    other = make_harness(config, worker_id="w2")
    await h.publish(call_flow())
    await run_one(h, "c1")
    await run_one(h, "c2")
    _, errors = await run_one(h, "c3")
    assert errors == ["DependencyUnavailable"]
    assert len(http_server.requests) == 2
    _, errors = await run_one(other, "c4")
    assert errors == ["NodeError"]
    assert len(http_server.requests) == 3


async def test_half_open_probe_after_open_seconds(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """After open_seconds half_open_probes calls (here one) go through: a failure
    re-opens the breaker, a success closes it."""
    http_server.route("GET", "/customers", status=503)
    h = make_harness(crm(http_server.url, failure_threshold=1, open_seconds=30, half_open_probes=1))
    await h.publish(call_flow())
    await run_one(h, "c1")
    breaker = h.engine.breakers.get("crm")
    assert breaker.state is BreakerState.OPEN
    h.clock.advance(30)
    _, errors = await run_one(h, "c2")
    assert errors == ["NodeError"] and len(http_server.requests) == 2
    assert breaker.state is BreakerState.OPEN
    _, errors = await run_one(h, "c3")
    assert errors == ["DependencyUnavailable"] and len(http_server.requests) == 2
    http_server.route("GET", "/customers", body={"name": "Ana"})
    h.clock.advance(30)
    ex, errors = await run_one(h, "c4")
    assert errors == [] and ex.status is S.COMPLETED
    assert breaker.state is BreakerState.CLOSED
    assert [s for _, s in breaker.changes] == ["open", "half_open", "open", "half_open", "closed"]


async def test_dependency_retry_policy_applies_to_nodes_without_one(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """The dependency's retry policy is used by a node that sets none."""
    http_server.route("GET", "/customers", status=500)
    policy = RetryPolicy(max_attempts=2, initial_interval_seconds=1, jitter=False)
    h = make_harness(
        Config(dependencies={"crm": DependencyConfig(base_url=http_server.url, retry=policy)})
    )
    flow = call_flow()
    del flow["nodes"][0]["retry"]
    await h.publish(flow)
    ex = await h.start("call")
    await h.settle()
    assert (await h.get(ex.id)).status is S.RECOVERING
    h.clock.advance(1)
    await h.settle()
    ex = await h.get(ex.id)
    assert len(http_server.requests) == 2
    assert await bot_texts(h, ex.id) == ["sorry"]


# ----------------------------------------------------------------------------- waiting


async def test_wait_for_dependency_resumes_when_it_is_back(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """With waitForDependency an open breaker parks the execution in recovering; once
    the breaker lets a probe through and the call succeeds, the flow goes on."""
    http_server.route("GET", "/customers", status=503)
    h = make_harness(crm(http_server.url, failure_threshold=1, open_seconds=30))
    await h.publish(call_flow(waitForDependency={"maxWaitSeconds": 300}))
    await run_one(h, "c1")
    ex = await h.start("call", conversation="c2")
    await h.settle()
    ex = await h.get(ex.id)
    assert ex.status is S.RECOVERING and ex.waiting_for == "dependency"
    assert len(http_server.requests) == 1
    http_server.route("GET", "/customers", body={"name": "Ana"})
    h.clock.advance(30)
    await h.settle()
    ex = await h.get(ex.id)
    assert ex.status is S.COMPLETED and ex.variables["reply"] == {"name": "Ana"}
    history = [t.target for t in await h.store.transitions(ex.id)]
    assert history == [S.RUNNING, S.RECOVERING, S.RUNNING, S.COMPLETED]


async def test_wait_for_dependency_is_bounded(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """When the dependency stays down past maxWaitSeconds the node's fallback runs."""
    http_server.route("GET", "/customers", status=503)
    h = make_harness(crm(http_server.url, failure_threshold=1, open_seconds=30))
    await h.publish(call_flow(waitForDependency={"maxWaitSeconds": 60}))
    await run_one(h, "c1")
    ex = await h.start("call", conversation="c2")
    for _ in range(10):
        await h.settle()
        if (await h.get(ex.id)).status.terminal:
            break
        h.clock.advance(30)
    ex = await h.get(ex.id)
    assert ex.status is S.COMPLETED
    assert await bot_texts(h, ex.id) == ["sorry"]
    assert h.clock.now() - ex.created_at <= 90


# ----------------------------------------------------------------------------- probe


async def test_probe_asks_the_health_url(http_server: Any) -> None:
    """probe() is true on a 2xx from the health URL, false otherwise or when down;
    without a health URL it is true (the half-open breaker's next call is the probe)."""
    http_server.route("GET", "/api/health", body={"ok": True})
    http_server.route("GET", "/api/sick", status=503)
    base = http_server.url + "/api"
    async with aclosing(DependencyClient()) as client:
        assert await probe(DependencyConfig(base_url=base, health_url="/health"), client)
        absolute = DependencyConfig(base_url=base, health_url=http_server.url + "/api/health")
        assert await probe(absolute, client)
        assert not await probe(DependencyConfig(base_url=base, health_url="sick"), client)
        assert not await probe(
            DependencyConfig(base_url=closed_port_url(), health_url="/health"), client
        )
        assert await probe(DependencyConfig(base_url=closed_port_url()), client)
    assert [r["path"] for r in http_server.requests] == ["/api/health", "/api/health", "/api/sick"]


async def test_healthy_probe_closes_the_breaker(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """A healthy probe given the dependency's breaker closes it at once."""
    http_server.route("GET", "/health", body={})
    http_server.route("GET", "/customers", status=503)
    h = make_harness(crm(http_server.url, failure_threshold=1))
    await h.publish(call_flow())
    await run_one(h, "c1")
    breaker = h.engine.breakers.get("crm")
    assert breaker.state is BreakerState.OPEN
    dep = DependencyConfig(base_url=http_server.url, health_url="/health")
    async with aclosing(DependencyClient()) as client:
        assert await probe(dep, client, name="crm", breaker=breaker)
    assert breaker.state is BreakerState.CLOSED
