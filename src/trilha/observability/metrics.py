"""Prometheus metrics (DESIGN §5), kept in a registry of their own.

Each :class:`Metrics` owns a ``CollectorRegistry``, so several engines (and the
tests) in one process never collide on the global one. The engine calls the
cheap ``record`` methods as it works; breaker states and process CPU/memory are
read when the registry is collected, and the store's queue and per-state gauges
are set by :meth:`Metrics.refresh_store`, which a server calls periodically.

Labels that tenants choose are bounded: institutions and flows beyond the first
``top_institutions`` / ``top_flows`` seen are counted under ``other``, so a tenant
publishing flows without end cannot grow the series (or the scrape) without end.
The text spans every institution; it is served to an admin key, or on a separate
private address (:class:`Listener`), never to a tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import psutil  # type: ignore[import-untyped]  # no stubs in the test extras
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from trilha.core.states import ExecutionStatus
from trilha.resilience.breaker import BreakerState

if TYPE_CHECKING:
    from trilha.resilience.breaker import CircuitBreaker
    from trilha.store.base import Store

#: an institution (a flow) beyond the first ``top_institutions`` (``top_flows``) seen is
#: counted under this label
OTHER = "other"

BREAKER_VALUES = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 1.0, BreakerState.OPEN: 2.0}

_TURN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Live(Collector):
    """Gauges read at collection time: breaker states and process CPU/memory."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading primes the counter

    def collect(self) -> Iterable[GaugeMetricFamily]:
        breakers = GaugeMetricFamily(
            "trilha_breaker_state",
            "Circuit breaker state per dependency (0 closed, 1 half-open, 2 open).",
            labels=["dependency"],
        )
        for name, breaker in sorted(self._metrics.breakers().items()):
            breakers.add_metric([name], BREAKER_VALUES[breaker.state])
        yield breakers
        yield GaugeMetricFamily(
            "trilha_process_cpu_percent",
            "CPU used by this process since the previous reading, in percent.",
            value=self._process.cpu_percent(None),
        )
        yield GaugeMetricFamily(
            "trilha_process_resident_memory_bytes",
            "Resident memory of this process.",
            value=float(self._process.memory_info().rss),
        )
        yield GaugeMetricFamily(
            "trilha_system_memory_percent",
            "Memory in use on the host, in percent.",
            value=psutil.virtual_memory().percent,
        )


class TopN:
    """A bounded label: a value keeps its own label while among the first ``n`` seen,
    later ones share :data:`OTHER`."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._seen: set[str] = set()

    def label(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self.n:
            self._seen.add(value)
            return value
        return OTHER


class Metrics:
    """The engine's Prometheus metrics; ``render()`` gives the text exposition format."""

    def __init__(self, *, top_institutions: int = 50, top_flows: int = 50) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._institutions = TopN(top_institutions)
        self._flows = TopN(top_flows)
        self._breakers: Callable[[], Mapping[str, CircuitBreaker]] = dict
        self._nodes: dict[tuple[str, bool], Any] = {}
        r = self.registry
        self.node_executions = Counter(
            "trilha_node_executions",
            "Node executions by node type and outcome (ok or error).",
            ["node_type", "outcome"],
            registry=r,
        )
        self.turn_duration = Histogram(
            "trilha_turn_duration_seconds",
            "Time from a turn's start until the execution waits or ends, by flow"
            " (top N, the rest as 'other').",
            ["flow_id"],
            buckets=_TURN_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "trilha_errors",
            "Node errors by institution (top N, the rest as 'other') and kind.",
            ["institution", "kind"],
            registry=r,
        )
        self.retries = Counter(
            "trilha_retries", "Retries scheduled, by node type.", ["node_type"], registry=r
        )
        self.fallbacks = Counter(
            "trilha_fallbacks",
            "Fallbacks taken: node, flow or degraded.",
            ["kind"],
            registry=r,
        )
        self.escalations = Counter(
            "trilha_escalations", "Executions escalated to a person.", registry=r
        )
        self.queue_due = Gauge("trilha_queue_due", "Executions due now, not leased.", registry=r)
        self.queue_waiting = Gauge(
            "trilha_queue_waiting", "Executions waiting for input or a timer.", registry=r
        )
        self.outbox_pending = Gauge(
            "trilha_outbox_pending", "Outbound messages not yet delivered.", registry=r
        )
        self.outbox_dead = Gauge(
            "trilha_outbox_dead",
            "Outbound messages given up after their last attempt, until redriven.",
            registry=r,
        )
        self.delivery_failures = Counter(
            "trilha_outbox_delivery_failures",
            "Failed attempts to deliver an outbound message, by institution (top N, the"
            " rest as 'other') and reason (http_4xx, http_5xx, timeout, connection, error).",
            ["institution", "reason"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "trilha_queue_wait_seconds",
            "Time from an execution's wake time until a worker claimed it.",
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.executions = Gauge(
            "trilha_executions", "Active executions by status.", ["status"], registry=r
        )
        r.register(_Live(self))

    # wiring -------------------------------------------------------------------------------

    def watch_breakers(self, source: Callable[[], Mapping[str, CircuitBreaker]]) -> None:
        """Read breaker states from ``source`` (e.g. ``engine.breakers.all``) at scrape time."""
        self._breakers = source

    def breakers(self) -> Mapping[str, CircuitBreaker]:
        return dict(self._breakers())

    # recording (the engine's hot path: keep these cheap) ---------------------------------

    def institution(self, institution_id: str | None) -> str:
        """The label for ``institution_id``: itself while among the first N seen, else 'other'."""
        return self._institutions.label(institution_id or "none")

    def flow(self, flow_id: str) -> str:
        """The label for ``flow_id`` (``INSTITUTION/NAME`` for an institution's own):
        itself while among the first N seen, else 'other'."""
        return self._flows.label(flow_id)

    def node(self, node_type: str, ok: bool) -> None:
        # called once per step: the labelled child is cached, sparing labels()' lock and lookup
        child = self._nodes.get((node_type, ok))
        if child is None:
            child = self._nodes[(node_type, ok)] = self.node_executions.labels(
                node_type, "ok" if ok else "error"
            )
        child.inc()

    def error(self, institution_id: str | None, kind: str) -> None:
        self.errors.labels(self.institution(institution_id), kind).inc()

    def retry(self, node_type: str) -> None:
        self.retries.labels(node_type).inc()

    def fallback(self, kind: str) -> None:
        self.fallbacks.labels(kind).inc()

    def escalation(self) -> None:
        self.escalations.inc()

    def turn(self, flow_id: str, seconds: float) -> None:
        self.turn_duration.labels(self.flow(flow_id)).observe(max(seconds, 0.0))

    def waited(self, seconds: float) -> None:
        self.queue_wait.observe(max(seconds, 0.0))

    def delivery_failed(self, institution_id: str, reason: str) -> None:
        self.delivery_failures.labels(self.institution(institution_id), reason).inc()

    # the store's gauges ------------------------------------------------------------------

    async def refresh_store(self, store: Store, now: float) -> None:
        """Set the queue, outbox and per-state gauges from ``store``."""
        stats = await store.queue_stats(now)
        self.queue_due.set(stats.due)
        self.queue_waiting.set(stats.waiting)
        self.outbox_pending.set(stats.pending_outbox)
        self.outbox_dead.set(await store.count_dead_outbox())
        counts = await store.count_by_status()
        for status in ExecutionStatus:
            if not status.terminal:
                self.executions.labels(status.value).set(counts.get(status.value, 0))

    def render(self) -> bytes:
        """The registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)


class Listener:
    """``/metrics`` on an address of its own, without a key: for ``[metrics] listen``
    and ``trilha metrics-server``, whose address the operator chooses (a private one:
    the text names every institution). Served from a thread, so a scrape never waits
    on the event loop and a busy loop never fails a scrape."""

    def __init__(self, host: str, port: int, metrics: Metrics) -> None:
        self.host = host
        self._server, self._thread = start_http_server(port, host, registry=metrics.registry)
        self.port: int = self._server.server_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def error_kind(error: Mapping[str, Any]) -> str:
    """A bounded label for a described error: its failure kind, else its exception type."""
    return str(error.get("kind") or error.get("type") or "error")
