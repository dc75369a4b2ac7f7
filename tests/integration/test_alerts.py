"""Alerts over real executions: a real engine and SQLite store on a fake clock, real
HTTP dependencies and a real webhook receiver on 127.0.0.1.

Each of DESIGN §5's four rules is driven to fire by what the engine really does
(failing calls, a turn held open, a backlog, the host's memory) and then to
resolve; the log lines and the webhook's POSTs are read back as they left."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trilha.config import (
    AlertRuleConfig,
    AlertsConfig,
    AlertWebhookConfig,
    BreakerConfig,
    Config,
    DependencyConfig,
)
from trilha.core.alerts import DEFAULT_RULES, AlertState, AlertStatus
from trilha.observability.alerts import AlertEvaluator, run_alerts
from trilha.store.sqlite import SQLiteStore

A = AlertStatus
RULE_KEYS = tuple(rule.key for rule in DEFAULT_RULES)

CALL = {
    "id": "call",
    "start": "call",
    "nodes": [
        {
            "id": "call",
            "type": "http",
            "dependency": "svc",
            "url": "/data",
            "saveAs": "data",
            "next": "ok",
            "retry": {"maxAttempts": 1},
            "fallback": {"next": "sorry"},
        },
        {"id": "ok", "type": "end", "text": "done"},
        {"id": "sorry", "type": "end", "text": "try later"},
    ],
}
HELLO = {
    "id": "hello",
    "start": "hi",
    "nodes": [
        {"id": "hi", "type": "message", "text": "hi", "next": "bye"},
        {"id": "bye", "type": "end"},
    ],
}


def only(
    rules: dict[str, AlertRuleConfig],
    *,
    webhook: AlertWebhookConfig | None = None,
    server: Any = None,
) -> Config:
    """A configuration watching only ``rules`` (the others disabled, so the host's real
    memory or a neighbour rule cannot interfere), with the ``svc`` dependency on
    ``server`` whose breaker never opens (every call really fails)."""
    deps = {}
    if server is not None:
        deps["svc"] = DependencyConfig(base_url=server.url, breaker=BreakerConfig(count=[]))
    all_rules = {key: AlertRuleConfig(enabled=False) for key in RULE_KEYS} | rules
    return Config(dependencies=deps, alerts=AlertsConfig(rules=all_rules, webhook=webhook))


def alert_lines(process_log: Any) -> list[dict[str, Any]]:
    return [line for line in process_log.lines() if line["message"].startswith("alert")]


async def run_calls(h: Any, count: int, prefix: str) -> None:
    for i in range(count):
        await h.start("call", f"{prefix}-{i}")
    await h.settle()


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll a condition another thread or task makes true (the HTTP server's request
    log), in small real steps."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- error rate


async def test_error_rate_fires_on_failing_calls_and_resolves_on_successes(
    make_harness: Callable[..., Any], http_server: Any, process_log: Any
) -> None:
    """Calls to a dependency answering 500 make half the steps fail: pending, then
    (after ``for_seconds``) firing with a CRITICAL line; too few steps are not judged;
    once the failures leave the window, successes resolve it with an INFO line."""
    http_server.route("GET", "/data", status=500, body={"error": "down"})
    config = only(
        {"error_rate": AlertRuleConfig(min_events=6, for_seconds=60, window_seconds=300)},
        server=http_server,
    )
    h = make_harness(config)
    await h.publish(CALL)
    alerts = AlertEvaluator(h.store, config, h.clock, instance="host-a")

    await run_calls(h, 2, "few")  # 4 steps, 2 failed: 50 %, but fewer than 6 steps
    (state,) = await alerts.evaluate()
    assert state.status is A.INACTIVE and state.value is None
    assert await h.store.alerts() == []  # nothing worth a row yet

    await run_calls(h, 2, "more")  # 8 steps, 4 failed
    assert http_server.count("GET", "/data") == 4
    (state,) = await alerts.evaluate()
    assert state.status is A.PENDING and state.value == pytest.approx(0.5)
    assert alert_lines(process_log) == []  # pending is nobody's business

    h.clock.advance(60)
    (state,) = await alerts.evaluate()
    assert state.status is A.FIRING and state.instance == ""
    assert state.summary == "step error rate 50.0% over 5m (threshold 5.0%)"
    (line,) = alert_lines(process_log)
    assert (line["level"], line["message"]) == ("CRITICAL", "alert.firing")
    meta = line["context"]["metadata"]
    assert meta["rule"] == "TrilhaErrorRateHigh" and meta["severity"] == "critical"
    assert meta["value"] == pytest.approx(0.5) and meta["threshold"] == 0.05

    h.clock.advance(15)
    (state,) = await alerts.evaluate()
    assert state.status is A.FIRING and len(alert_lines(process_log)) == 1  # told once

    http_server.route("GET", "/data", body={"ok": True})
    h.clock.advance(300)  # the failures leave the 5-minute window
    await run_calls(h, 4, "ok")  # 8 steps, none failed
    (state,) = await alerts.evaluate()
    assert state.status is A.RESOLVED and state.value == 0.0
    assert state.resolved_at == h.clock.now()
    last = alert_lines(process_log)[-1]
    assert (last["level"], last["message"]) == ("INFO", "alert.resolved")
    history = await h.store.alert_history()
    assert [c.status for c in reversed(history)] == [A.PENDING, A.FIRING, A.RESOLVED]


# --------------------------------------------------------------------------- slow turn


async def test_a_turn_held_open_by_a_slow_dependency_fires_the_slow_turn_alert(
    make_harness: Callable[..., Any], http_server: Any, process_log: Any
) -> None:
    """While a call hangs, the turn is seen running (and already too long); once it ends
    its recorded length keeps the alert firing for the window, then it resolves."""
    http_server.route("GET", "/data", body={"ok": True}, delay=0.5)
    config = only({"slow_turn": AlertRuleConfig()}, server=http_server)
    h = make_harness(config)
    await h.publish(CALL)
    alerts = AlertEvaluator(h.store, config, h.clock)
    (state,) = await alerts.evaluate()
    assert state.status is A.INACTIVE

    ex = await h.start("call", "slow")
    running = asyncio.create_task(h.settle())
    await eventually(lambda: http_server.count("GET", "/data") == 1)
    h.clock.advance(40)  # the contact has been waiting 40 s on this turn
    (state,) = await alerts.evaluate()
    assert not running.done()  # the call is still in flight
    assert state.status is A.FIRING and state.value == pytest.approx(40)
    (line,) = alert_lines(process_log)
    assert (line["level"], line["message"]) == ("WARN", "alert.firing")
    assert line["context"]["metadata"]["rule"] == "TrilhaTurnTooSlow"
    await running
    assert (await h.get(ex.id)).status.value == "completed"

    turn = await h.store.longest_turn(h.clock.now() - 300, h.clock.now())
    assert turn is not None and not turn.running and turn.execution_id == ex.id
    h.clock.advance(200)
    (state,) = await alerts.evaluate()
    assert state.status is A.FIRING  # the finished 40 s turn is still in the window
    h.clock.advance(101)
    (state,) = await alerts.evaluate()
    assert state.status is A.RESOLVED and state.value is None
    assert [x["message"] for x in alert_lines(process_log)] == ["alert.firing", "alert.resolved"]


# --------------------------------------------------------------------------- queue backlog


async def test_a_backlog_without_workers_fires_and_draining_it_resolves(
    make_harness: Callable[..., Any], process_log: Any
) -> None:
    """Executions started with no worker running pile up as due; after a minute over
    the threshold the alert fires; a worker draining the queue resolves it."""
    config = only({"queue_backlog": AlertRuleConfig(threshold=3)})
    h = make_harness(config)
    await h.publish(HELLO)
    alerts = AlertEvaluator(h.store, config, h.clock)
    for i in range(5):
        await h.start("hello", f"q-{i}")
    (state,) = await alerts.evaluate()
    assert state.status is A.PENDING and state.value == 5
    h.clock.advance(30)
    (state,) = await alerts.evaluate()
    assert state.status is A.PENDING
    h.clock.advance(30)
    (state,) = await alerts.evaluate()
    assert state.status is A.FIRING
    assert state.summary == "executions due and unclaimed 5 (threshold 3)"

    await h.settle()  # a worker comes and runs them all
    (state,) = await alerts.evaluate()
    assert state.status is A.RESOLVED and state.value == 0
    assert [(x["level"], x["message"]) for x in alert_lines(process_log)] == [
        ("WARN", "alert.firing"),
        ("INFO", "alert.resolved"),
    ]


async def test_a_short_backlog_goes_back_to_inactive_without_a_word(
    make_harness: Callable[..., Any], process_log: Any
) -> None:
    config = only({"queue_backlog": AlertRuleConfig(threshold=3)})
    h = make_harness(config)
    await h.publish(HELLO)
    alerts = AlertEvaluator(h.store, config, h.clock)
    for i in range(5):
        await h.start("hello", f"q-{i}")
    (state,) = await alerts.evaluate()
    assert state.status is A.PENDING
    await h.settle()
    h.clock.advance(30)
    (state,) = await alerts.evaluate()
    assert state.status is A.INACTIVE and state.active_at is None
    assert alert_lines(process_log) == []
    assert [c.status for c in await h.store.alert_history()] == [A.INACTIVE, A.PENDING]


# --------------------------------------------------------------------------- memory


async def test_memory_fires_per_host_and_resolves(
    sqlite_store: SQLiteStore, clock: Any, process_log: Any
) -> None:
    """The host's real memory against a threshold of 0 (always over) fires, per host;
    against 100 % (never over) it resolves; another host's alert is its own."""
    low = only({"memory": AlertRuleConfig(threshold=0, for_seconds=0)})
    high = only({"memory": AlertRuleConfig(threshold=1.0, for_seconds=0)})
    (state,) = await AlertEvaluator(sqlite_store, low, clock, instance="host-a").evaluate()
    assert state.status is A.FIRING and state.instance == "host-a"
    assert 0 < (state.value or 0) <= 1
    await AlertEvaluator(sqlite_store, low, clock, instance="host-b").evaluate()
    clock.advance(15)
    (state,) = await AlertEvaluator(sqlite_store, high, clock, instance="host-a").evaluate()
    assert state.status is A.RESOLVED
    stored = {(s.instance, s.status) for s in await sqlite_store.alerts()}
    assert stored == {("host-a", A.RESOLVED), ("host-b", A.FIRING)}
    lines = [(x["message"], x["context"]["metadata"]["instance"]) for x in alert_lines(process_log)]
    assert lines == [
        ("alert.firing", "host-a"),
        ("alert.firing", "host-b"),
        ("alert.resolved", "host-a"),
    ]


async def test_a_vanished_hosts_memory_alert_is_resolved_by_another_host(
    sqlite_store: SQLiteStore, clock: Any, process_log: Any
) -> None:
    """host-b fired and stopped; host-a resolves host-b's alert once it has not been
    evaluated for 10 intervals (at least 5 min), not before, and never its own."""
    low = only({"memory": AlertRuleConfig(threshold=0, for_seconds=0)})
    await AlertEvaluator(sqlite_store, low, clock, instance="host-b").evaluate()
    clock.advance(299)
    await AlertEvaluator(sqlite_store, low, clock, instance="host-a").evaluate()
    stored = {(s.instance, s.status) for s in await sqlite_store.alerts()}
    assert stored == {("host-a", A.FIRING), ("host-b", A.FIRING)}  # 299 s: not yet
    clock.advance(2)
    await AlertEvaluator(sqlite_store, low, clock, instance="host-a").evaluate()
    stored = {(s.instance, s.status) for s in await sqlite_store.alerts()}
    assert stored == {("host-a", A.FIRING), ("host-b", A.RESOLVED)}
    lines = [(x["message"], x["context"]["metadata"]["instance"]) for x in alert_lines(process_log)]
    assert lines[-1] == ("alert.resolved", "host-b")
    assert lines.count(("alert.resolved", "host-b")) == 1


async def test_a_rule_disabled_while_firing_resolves_instead_of_firing_forever(
    sqlite_store: SQLiteStore, clock: Any
) -> None:
    low = only({"memory": AlertRuleConfig(threshold=0, for_seconds=0)})
    await AlertEvaluator(sqlite_store, low, clock, instance="h").evaluate()
    (state,) = await AlertEvaluator(sqlite_store, only({}), clock, instance="h").evaluate()
    assert state.status is A.RESOLVED and state.value is None


# --------------------------------------------------------------------------- the webhook


def memory_alerts(webhook: AlertWebhookConfig) -> Config:
    return only({"memory": AlertRuleConfig(threshold=0, for_seconds=0)}, webhook=webhook)


async def test_the_webhook_gets_firing_then_resolved_retried_in_order_without_blocking(
    sqlite_store: SQLiteStore,
    clock: Any,
    http_server: Any,
    process_log: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first two POSTs get 503 (slowly): evaluation returns at once, the sink
    retries, and the resolved notice waits for the firing one, so the receiver sees
    them in order; the secret header is sent, and retries are WARN lines."""
    monkeypatch.setenv("TRILHA_TEST_ALERT_TOKEN", "s3cr3t-token")
    http_server.route("POST", "/alerts", status=202)
    http_server.fail_first("POST", "/alerts", 2, delay=0.2)
    hook = AlertWebhookConfig(
        url=f"{http_server.url}/alerts",
        headers={"Authorization": "Bearer ${TRILHA_TEST_ALERT_TOKEN}"},
        max_attempts=4,
    )
    firing = AlertEvaluator(
        sqlite_store, memory_alerts(hook), clock, instance="host-a", backoff_seconds=0.01
    )
    (state,) = await firing.evaluate()
    assert state.status is A.FIRING
    assert firing.webhook is not None and firing.webhook.pending == 1  # not waited for
    clock.advance(15)
    resolving = only({"memory": AlertRuleConfig(threshold=1.0)}, webhook=hook)
    firing.config = resolving
    (state,) = await firing.evaluate()
    assert state.status is A.RESOLVED
    await firing.aclose()

    posts = [r for r in http_server.requests if r["path"] == "/alerts"]
    assert [p["body"]["status"] for p in posts] == ["firing"] * 3 + ["resolved"]
    body = posts[-1]["body"]
    assert set(body) == {
        "status",
        "rule",
        "instance",
        "severity",
        "value",
        "threshold",
        "summary",
        "activeAt",
        "firedAt",
        "resolvedAt",
    }
    assert body["rule"] == "TrilhaMemoryHigh" and body["instance"] == "host-a"
    assert body["threshold"] == 1.0 and body["severity"] == "warning"
    assert body["firedAt"].endswith("Z") and body["resolvedAt"].endswith("Z")
    assert posts[0]["body"]["resolvedAt"] is None
    assert all(p["headers"]["Authorization"] == "Bearer s3cr3t-token" for p in posts)
    assert firing.webhook.delivered == 2 and firing.webhook.failed == 0
    retries = [x for x in process_log.lines() if x["message"] == "alert.webhook_retry"]
    assert len(retries) == 2 and all(x["level"] == "WARN" for x in retries)
    assert "s3cr3t-token" not in process_log.text()


async def test_a_refused_or_unreachable_webhook_is_logged_not_raised(
    sqlite_store: SQLiteStore, clock: Any, http_server: Any, process_log: Any
) -> None:
    """A 4xx is not retried (the receiver refuses the body); a closed port is retried
    up to ``max_attempts``; both end in one ERROR line naming the URL without its
    query string, and evaluation goes on."""
    http_server.route("POST", "/refuse", status=400)
    refused = AlertEvaluator(
        sqlite_store,
        memory_alerts(AlertWebhookConfig(url=f"{http_server.url}/refuse?token=abc123")),
        clock,
        instance="host-a",
        backoff_seconds=0.01,
    )
    await refused.evaluate()
    await refused.aclose()
    assert http_server.count("POST", "/refuse?token=abc123") == 1

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    unreachable = AlertEvaluator(
        sqlite_store,
        memory_alerts(AlertWebhookConfig(url=f"http://127.0.0.1:{closed}/x", max_attempts=3)),
        clock,
        instance="host-b",
        backoff_seconds=0.01,
    )
    (state,) = await unreachable.evaluate()
    assert state.status is A.FIRING
    await unreachable.aclose()
    assert unreachable.webhook is not None and unreachable.webhook.failed == 1

    failed = [x for x in process_log.lines() if x["message"] == "alert.webhook_failed"]
    assert [x["level"] for x in failed] == ["ERROR", "ERROR"]
    assert failed[0]["context"]["metadata"]["url"] == f"{http_server.url}/refuse"
    assert failed[0]["context"]["metadata"]["attempts"] == 1
    assert failed[1]["context"]["metadata"]["attempts"] == 3
    assert "abc123" not in process_log.text()


# --------------------------------------------------------------------------- many processes


class ReadTogether:
    """The real store, except that ``alerts()`` returns only once ``parties`` callers
    have read: every evaluator then works from the same previous state, the race
    compare-and-set exists for, made certain instead of likely."""

    def __init__(self, store: SQLiteStore, parties: int) -> None:
        self._store = store
        self._barrier = asyncio.Barrier(parties)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def alerts(self) -> list[AlertState]:
        states = await self._store.alerts()
        await self._barrier.wait()
        return states


async def test_several_evaluators_on_one_store_notify_each_change_once(
    sqlite_store: SQLiteStore, clock: Any, http_server: Any, process_log: Any
) -> None:
    """Three processes evaluate at the same moment from the same stored state: each
    computes 'firing', one write wins, one line and one POST go out."""
    http_server.route("POST", "/alerts", status=200)
    hook = AlertWebhookConfig(url=f"{http_server.url}/alerts")
    config = memory_alerts(hook)
    shared = ReadTogether(sqlite_store, 3)
    evaluators = [AlertEvaluator(shared, config, clock, instance="h") for _ in range(3)]  # type: ignore[arg-type]
    results = await asyncio.gather(*(e.evaluate() for e in evaluators))
    assert all(r[0].status is A.FIRING for r in results)
    for evaluator in evaluators:
        await evaluator.aclose()
    assert http_server.count("POST", "/alerts") == 1
    assert [x["message"] for x in alert_lines(process_log)] == ["alert.firing"]
    assert [c.status for c in await sqlite_store.alert_history()] == [A.FIRING]


# --------------------------------------------------------------------------- in the worker


async def test_the_worker_evaluates_alerts_while_it_runs_executions(
    make_harness: Callable[..., Any], process_log: Any
) -> None:
    config = only({"memory": AlertRuleConfig(threshold=0, for_seconds=0)})
    h = make_harness(config)
    await h.publish(HELLO)
    ex = await h.start("hello", "w")
    stop = asyncio.Event()
    worker = asyncio.create_task(h.worker.run_forever(stop))
    try:
        for _ in range(500):
            stored = await h.store.alerts()
            if stored and (await h.get(ex.id)).status.terminal:
                break
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await worker
    (state,) = await h.store.alerts()
    assert state.rule == "TrilhaMemoryHigh" and state.status is A.FIRING
    assert state.instance == socket.gethostname()
    assert (await h.get(ex.id)).status.value == "completed"


async def test_a_failing_evaluation_is_logged_and_the_worker_carries_on(
    make_harness: Callable[..., Any], tmp_path: Path, process_log: Any
) -> None:
    """With the alerts table gone (a botched manual migration, say) every evaluation
    fails; the worker logs it and still runs executions to the end."""
    config = only({"queue_backlog": AlertRuleConfig()})
    h = make_harness(config)
    await h.publish(HELLO)
    with sqlite3.connect(tmp_path / "trilha.db") as conn:
        conn.execute("DROP TABLE alerts")
    ids = [(await h.start("hello", f"f-{i}")).id for i in range(3)]
    stop = asyncio.Event()
    worker = asyncio.create_task(h.worker.run_forever(stop))
    try:
        for _ in range(500):
            done = [(await h.get(i)).status.terminal for i in ids]
            if all(done) and "alerts.evaluation_failed" in process_log.messages():
                break
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await worker
    assert [(await h.get(i)).status.value for i in ids] == ["completed"] * 3
    failure = next(x for x in process_log.lines() if x["message"] == "alerts.evaluation_failed")
    assert failure["level"] == "ERROR"
    assert failure["context"]["error"]["type"] == "StoreError"
    assert "no such table: alerts" in failure["context"]["error"]["message"]


async def test_run_alerts_evaluates_until_stopped(sqlite_store: SQLiteStore, clock: Any) -> None:
    """The loop for processes without a worker: evaluates at once, then every interval."""
    config = only({"memory": AlertRuleConfig(threshold=0, for_seconds=0)})
    evaluator = AlertEvaluator(sqlite_store, config, clock, instance="h")
    stop = asyncio.Event()
    loop = asyncio.create_task(run_alerts(evaluator, 0.01, stop))
    for _ in range(200):
        if await sqlite_store.alerts():
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(loop, 1)
    (state,) = await sqlite_store.alerts()
    assert state.status is A.FIRING
