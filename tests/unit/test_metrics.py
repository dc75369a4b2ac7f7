"""The Metrics registry: label folding, exposition text, breaker gauges, and where
``[metrics] listen`` serves them."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from trilha.config import MetricsConfig
from trilha.engine.clock import FakeClock
from trilha.observability.metrics import OTHER, Metrics, error_kind
from trilha.resilience.breaker import BreakerRegistry, BreakerSettings, Call

NAMES = [
    "trilha_node_executions_total",
    "trilha_turn_duration_seconds",
    "trilha_errors_total",
    "trilha_retries_total",
    "trilha_fallbacks_total",
    "trilha_escalations_total",
    "trilha_breaker_state",
    "trilha_queue_due",
    "trilha_queue_waiting",
    "trilha_outbox_pending",
    "trilha_queue_wait_seconds",
    "trilha_executions",
    "trilha_process_cpu_percent",
    "trilha_process_resident_memory_bytes",
    "trilha_system_memory_percent",
]


def samples(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called ``name`` in the rendered text, by their sorted labels."""
    text = metrics.render().decode()
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_institutions_beyond_top_n_fold_into_other() -> None:
    """The first N institutions keep their label; later ones are counted as 'other'."""
    m = Metrics(top_institutions=2)
    for inst in ["a", "b", "c", "a", "d"]:
        m.error(inst, "timeout")
    got = samples(m, "trilha_errors_total")
    assert got == {
        (("institution", "a"), ("kind", "timeout")): 2,
        (("institution", "b"), ("kind", "timeout")): 1,
        (("institution", OTHER), ("kind", "timeout")): 2,
    }


def test_flows_beyond_top_n_fold_into_other() -> None:
    """Turn durations keep the first N flows' ids as labels; later flows (an institution
    publishing without end) are observed under 'other'."""
    m = Metrics(top_flows=2)
    for flow in ["acme/a", "beta/b", "acme/c", "acme/a", "acme/d"]:
        m.turn(flow, 0.1)
    got = samples(m, "trilha_turn_duration_seconds_count")
    assert got == {
        (("flow_id", "acme/a"),): 2,
        (("flow_id", "beta/b"),): 1,
        (("flow_id", OTHER),): 2,
    }


def test_the_metrics_listen_address_is_host_and_port() -> None:
    """``[metrics] listen`` takes HOST:PORT or [IPv6]:PORT and refuses anything else,
    saying what it expects."""
    assert MetricsConfig(listen="127.0.0.1:9464").listen_address() == ("127.0.0.1", 9464)
    assert MetricsConfig(listen="[::1]:9464").listen_address() == ("::1", 9464)
    assert MetricsConfig().listen_address() is None
    for bad in ["9464", "host:", ":9464", "host:99999", "host:port", "::1:9464"]:
        with pytest.raises(ValidationError, match="listen") as caught:
            MetricsConfig(listen=bad)
        assert "9464" in str(caught.value) or "HOST:PORT" in str(caught.value)


def test_render_names_every_metric() -> None:
    """render() is the text format and names every metric, even before anything ran."""
    m = Metrics()
    m.node("set", True)
    m.retry("http")
    m.fallback("node")
    m.escalation()
    m.turn("f", 0.2)
    m.waited(0.01)
    m.error("i", "transient")
    text = m.render().decode()
    for name in NAMES:
        assert name in text, name
    assert samples(m, "trilha_node_executions_total") == {
        (("node_type", "set"), ("outcome", "ok")): 1
    }


def test_breaker_gauge_reads_states_at_render_time() -> None:
    """trilha_breaker_state is 0 closed, 1 half-open, 2 open, read when rendered."""
    clock = FakeClock()
    registry = BreakerRegistry(clock)
    m = Metrics()
    m.watch_breakers(registry.all)
    settings = BreakerSettings(failure_threshold=1, open_seconds=10, half_open_probes=1)
    registry.get("crm", settings)
    pay = registry.get("payments", settings)
    assert samples(m, "trilha_breaker_state") == {
        (("dependency", "crm"),): 0,
        (("dependency", "payments"),): 0,
    }
    pay.record(Call("timeout"))
    assert samples(m, "trilha_breaker_state")[(("dependency", "payments"),)] == 2
    clock.advance(11)
    assert pay.allow()
    assert samples(m, "trilha_breaker_state")[(("dependency", "payments"),)] == 1


def test_error_kind_prefers_the_failure_kind() -> None:
    """An error's label is its classified kind, else its exception type."""
    assert error_kind({"type": "HTTPError", "kind": "transient"}) == "transient"
    assert error_kind({"type": "KeyError"}) == "KeyError"
