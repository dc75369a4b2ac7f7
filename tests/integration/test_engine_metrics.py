"""Metrics recorded by a real engine over SQLite: a retry, a fallback and the store gauges."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from trilha.config import Config, DependencyConfig
from trilha.core.states import ExecutionStatus
from trilha.observability.metrics import Metrics

S = ExecutionStatus

FLOW = {
    "id": "m",
    "start": "call",
    "nodes": [
        {
            "id": "call",
            "type": "http",
            "dependency": "svc",
            "url": "/data",
            "saveAs": "data",
            "next": "ok",
            "retry": {"maxAttempts": 2},
            "fallback": {"next": "fb"},
        },
        {"id": "ok", "type": "end", "text": "got it"},
        {"id": "fb", "type": "end", "text": "fallback"},
    ],
}


def parse(metrics: Metrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample values by name, then by sorted labels, from the rendered text."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


async def test_engine_records_retries_fallbacks_and_store_gauges(
    make_harness: Callable[..., Any], http_server: Any
) -> None:
    """Two failed calls (one retry) then the node's fallback show up in the counters."""
    http_server.route("GET", "/data", body={"value": 1})
    http_server.fail_first("GET", "/data", 5)
    h = make_harness(Config(dependencies={"svc": DependencyConfig(base_url=http_server.url)}))
    metrics = Metrics()
    h.engine.metrics = metrics
    metrics.watch_breakers(h.engine.breakers.all)
    await h.publish(FLOW)
    ex = await h.start("m", institution_id="inst-9")
    await h.settle()
    waiting = await h.get(ex.id)
    assert waiting.status is S.RECOVERING
    await metrics.refresh_store(h.store, h.clock.now())
    assert parse(metrics)["trilha_executions"][(("status", "recovering"),)] == 1
    for _ in range(10):
        h.clock.advance(30)
        await h.settle()
        if (await h.get(ex.id)).status.terminal:
            break
    assert (await h.get(ex.id)).status is S.COMPLETED
    await metrics.refresh_store(h.store, h.clock.now())

    got = parse(metrics)
    assert got["trilha_retries_total"] == {(("node_type", "http"),): 1}
    assert got["trilha_fallbacks_total"] == {(("kind", "node"),): 1}
    nodes = got["trilha_node_executions_total"]
    assert nodes[(("node_type", "http"), ("outcome", "error"))] == 2
    assert nodes[(("node_type", "end"), ("outcome", "ok"))] == 1
    errors = got["trilha_errors_total"]
    assert sum(v for k, v in errors.items() if ("institution", "inst-9") in k) == 2
    assert got["trilha_turn_duration_seconds_count"][(("flow_id", "m"),)] >= 1
    assert got["trilha_queue_wait_seconds_count"][()] >= 2
    assert got["trilha_breaker_state"] == {(("dependency", "svc"),): 0}
    assert all(v == 0 for v in got["trilha_executions"].values())
    assert got["trilha_queue_due"][()] == 0
    assert got["trilha_outbox_pending"][()] == 0
