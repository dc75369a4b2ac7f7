"""Automatic recovery against a flaky HTTP dependency: retries, escalations, time to recover.

    python bench/recovery.py [--executions 1000] [--failure-rate 0.3] [--seed 1]
                             [--max-attempts 3] [--retry-initial 0.05] [--retry-cap 0.5]
                             [--retry-rounds 3] [--retry-round-seconds 1]
                             [--faults mixed|503|reset|slow|429]
                             [--node-timeout 0.5] [--rate 0] [--workers 2] [--concurrency 32]
                             [--breaker-failure-rate 0.7] [--breaker-window 40]
                             [--breaker-min-calls 20] [--breaker-threshold N]
                             [--breaker-open-seconds 30] [--breaker-count LIST]
                             [--timeout 300] [--store-dir DIR]

A real HTTP server on 127.0.0.1 (a free port, one thread per connection, in a
process of its own so it does not share the engine's GIL) plays the
dependency ``svc``: each request fails with probability ``--failure-rate`` (a
seeded RNG), else answers 200 with a JSON body. With ``--faults mixed`` (the
default) a failure is, in equal shares, a 503, a connection reset (RST), an
answer slower than the node's timeout, or a 429 with ``Retry-After: 0``; any
one of those names serves only that fault.

The flow is ``message -> http (svc, saveAs) -> message -> end`` with
``settings.fallback.escalateToHuman``, so a node whose attempts are spent
hands the conversation to a person (outcome ``escalated``). The dependency is
declared through :class:`trilha.config.Config` with a short retry policy
(``--max-attempts``, ``--retry-initial`` 0.05 s, x2, ``--retry-cap`` 0.5 s, full
jitter; ``--retry-initial 1 --retry-cap 60`` is the product's policy), the
product's default rounds of it (``--retry-rounds``: a round whose attempts all
failed in a way that counts against the dependency is followed, after a pause of
0.5-1 x ``--retry-round-seconds`` doubling per round, by another) and the
product's default circuit breaker (opens when 70 % of the last 40 calls, at least
20, failed in a way that counts; open 30 s; 3 half-open probes) unless
``--breaker-*`` say otherwise. ``--retry-rounds 1 --breaker-failure-rate 0.5
--breaker-window 20 --breaker-min-calls 10`` are the defaults before issue 17.
Every fault served counts against the dependency by default (503, 429, a reset,
a timeout). The real Engine, Worker, Dispatcher and SQLiteStore run on a temp
file with the system clock and an in-memory channel: ``--workers`` worker loops
(one Engine each, as separate processes would have, each with its own breakers),
each advancing up to ``--concurrency`` executions at once (its claim batch), tick
until every execution is terminal;
executions in ``recovering`` wake on their own when their backoff is due.
By default all executions are started first (a burst); ``--rate`` starts them
at that many a second while the workers run instead.

Every figure is read back FROM THE STORE afterwards (checkpoint rows of the
http node, transitions, handoffs, the log trail), not from the harness's own
bookkeeping; the server's tally of what it answered is printed beside them as
a cross-check. Figures are printed, never asserted: this is a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, ClassVar

import orjson

from _report import (
    add_store_dir,
    drop_store_folder,
    fmt,
    peak_rss_mb,
    percentile,
    print_table,
    store_folder,
)
from trilha.channels.memory import MemoryChannel
from trilha.config import BreakerConfig, Config, DependencyConfig, EngineConfig
from trilha.core.execution import Checkpoint, Execution, Handoff, LogRecord, Transition
from trilha.core.flow import RetryPolicy, load_flow
from trilha.core.states import ExecutionStatus, Outcome
from trilha.engine.clock import SystemClock
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.engine.worker import Worker
from trilha.processors.registry import Processors
from trilha.store.sqlite import SQLiteStore

HTTP_NODE = "lookup"
#: the faults the dependency serves, in equal shares; ``mixed`` is all of them
FAULTS: tuple[str, ...] = ("503", "reset", "slow", "429")
REQUIRED_RECOVERED = 0.90  # share of executions with a transient error recovered without a person
REQUIRED_RECOVERY_SECONDS = 30.0  # p99 from the first failed attempt to the successful one


def bench_flow(node_timeout: float) -> dict[str, Any]:
    """message -> http (dependency svc, saveAs) -> message -> end; exhaustion escalates."""
    return {
        "id": "bench-recovery",
        "start": "hello",
        "settings": {"fallback": {"escalateToHuman": True}},
        "nodes": [
            {
                "id": "hello",
                "type": "message",
                "text": "Olá, {{name}}! Vou consultar o seu cadastro.",
                "next": HTTP_NODE,
            },
            {
                "id": HTTP_NODE,
                "type": "http",
                "dependency": "svc",
                "url": "/customers/{{customerId}}",
                "saveAs": "customer",
                "timeoutSeconds": node_timeout,
                "next": "answer",
            },
            {
                "id": "answer",
                "type": "message",
                "text": "Encontrei o seu plano: {{customer.plan}}.",
                "next": "done",
            },
            {"id": "done", "type": "end", "text": "Até logo!"},
        ],
    }


# ------------------------------------------------------------------------------ the dependency


@dataclass(slots=True)
class FaultPlan:
    """What the flaky dependency answers; shared by the server's handler threads."""

    failure_rate: float
    faults: tuple[str, ...]
    slow_seconds: float
    rng: random.Random
    lock: threading.Lock = field(default_factory=threading.Lock)
    served: Counter[str] = field(default_factory=Counter)

    def draw(self) -> str:
        """``ok`` or the fault to serve this request, from the seeded RNG."""
        with self.lock:
            kind = "ok"
            if self.rng.random() < self.failure_rate:
                kind = self.faults[self.rng.randrange(len(self.faults))]
            self.served[kind] += 1
            return kind


class FlakyHandler(BaseHTTPRequestHandler):
    """Answers 200 with JSON, or a fault, as the server's :class:`FaultPlan` draws."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a real service would
    plan: ClassVar[FaultPlan]

    def do_GET(self) -> None:
        kind = self.plan.draw()
        if kind == "reset":
            # SO_LINGER 0 makes close() send a RST instead of a FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if kind == "slow":
            time.sleep(self.plan.slow_seconds)  # the caller has given up by then
            self._answer(200, {"plan": "late"})
            return
        if kind == "503":
            self._answer(503, {"error": "unavailable"})
            return
        if kind == "429":
            self._answer(429, {"error": "slow down"}, {"Retry-After": "0"})
            return
        self._answer(200, {"id": self.path.rsplit("/", 1)[-1], "plan": "ouro"})

    def _answer(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        payload = orjson.dumps(body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client left (after a timeout): nothing to tell it
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        return


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    #: the listen backlog; socketserver's default of 5 drops SYNs when many workers
    #: connect at once, and a dropped SYN is a 1 s retransmit: a timeout the
    #: dependency never saw
    request_queue_size = 1_024

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # resets and abandoned slow answers are the point, not errors


def serve(
    conn: Connection, failure_rate: float, faults: tuple[str, ...], slow: float, seed: int
) -> None:
    """The dependency's process: serve until told to stop, then report what was served."""
    plan = FaultPlan(failure_rate, faults, slow, random.Random(seed))
    handler = type("Handler", (FlakyHandler,), {"plan": plan})
    server = QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, name="flaky-svc", daemon=True).start()
    conn.send(server.server_address[1])
    conn.recv()  # stop
    server.shutdown()
    with plan.lock:
        conn.send(dict(plan.served))
    server.server_close()


class Dependency:
    """The flaky service in a process of its own, so it does not compete with the
    engine for this process's GIL (a loaded event loop would make answers late)."""

    def __init__(self, args: argparse.Namespace) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        faults = FAULTS if args.faults == "mixed" else (args.faults,)
        self._process = ctx.Process(
            target=serve,
            args=(child, args.failure_rate, faults, args.node_timeout * 4, args.seed),
            name="flaky-svc",
            daemon=True,
        )
        self._process.start()
        if not self._conn.poll(30):
            self._process.kill()
            raise RuntimeError("the dependency's process did not start")
        self.url = f"http://127.0.0.1:{self._conn.recv()}"

    def stop(self) -> Counter[str]:
        """Stop serving; what it answered, by kind (``ok``, ``503``, ``reset``...)."""
        served: Counter[str] = Counter()
        try:
            self._conn.send("stop")
            if self._conn.poll(10):
                served.update(self._conn.recv())
        finally:
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
        return served


# ------------------------------------------------------------------------------ the run


@dataclass(frozen=True, slots=True)
class Trail:
    """What the store holds about one execution once the run is over."""

    execution: Execution
    checkpoints: list[Checkpoint]
    transitions: list[Transition]
    handoffs: list[Handoff]
    logs: list[LogRecord]


@dataclass(slots=True)
class RunResult:
    start_seconds: float
    run_seconds: float
    timed_out: bool
    trails: list[Trail]
    loop_lags: list[float]
    delivered: int
    duplicates: int
    breaker_openings: int


async def work(
    worker: Worker, store: SQLiteStore, stop_at: float, started: asyncio.Event, done: asyncio.Event
) -> None:
    """One worker loop: tick until every execution is started and terminal and the
    outbox is empty.

    ``run_until_idle`` would return while executions sleep in ``recovering``
    (a future wake time is not work), so this loop keeps ticking and naps until
    the next wake time instead. Terminal executions have no wake time."""
    clock = worker.engine.clock
    while not done.is_set() and time.perf_counter() < stop_at:
        if await worker.tick():
            continue
        now = clock.now()
        stats = await store.queue_stats(now)
        idle = stats.next_wake_at is None and not stats.leased and not stats.pending_outbox
        if idle and started.is_set():
            done.set()
            return
        nap = 0.01
        if stats.next_wake_at is not None:
            nap = min(0.05, max(0.002, stats.next_wake_at - now))
        await asyncio.sleep(nap)


async def start_all(engine: Engine, flow_id: str, count: int, rate: float) -> None:
    """Start ``count`` executions: all at once (``rate`` 0), else ``rate`` a second."""

    async def start(n: int) -> None:
        await engine.start(
            flow_id,
            institution_id="bench",
            conversation_id=f"conv-{n}",
            contact_id=f"c{n}",
            variables={"name": f"Cliente {n}", "customerId": n},
        )

    began = time.perf_counter()
    n = 0
    while n < count:
        due = count if rate <= 0 else min(count, int((time.perf_counter() - began) * rate) + 1)
        due = min(due, n + 200)
        await asyncio.gather(*(start(i) for i in range(n, due)))
        n = due
        if rate > 0 and n < count:
            await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))


async def watch_loop_lag(lags: list[float], stop: asyncio.Event, every: float = 0.01) -> None:
    """How late this event loop wakes a 10 ms sleep: a busy loop delays every answer it
    reads, and a node whose answer is read late times out though the dependency was fast."""
    while not stop.is_set():
        asked = time.perf_counter()
        await asyncio.sleep(every)
        lags.append(time.perf_counter() - asked - every)


async def read_trails(store: SQLiteStore, limit: int) -> list[Trail]:
    """Every execution with its checkpoints, transitions, handoffs and logs, from the store."""
    executions = await store.list_executions(limit=limit)
    trails: list[Trail] = []
    for first in range(0, len(executions), 200):
        chunk = executions[first : first + 200]
        parts = await asyncio.gather(
            *(
                asyncio.gather(
                    store.checkpoints(ex.id),
                    store.transitions(ex.id),
                    store.handoffs(ex.id),
                    store.logs(ex.id),
                )
                for ex in chunk
            )
        )
        trails.extend(
            Trail(ex, cps, trs, hos, logs)
            for ex, (cps, trs, hos, logs) in zip(chunk, parts, strict=True)
        )
    return trails


async def run(args: argparse.Namespace, folder: Path, base_url: str) -> RunResult:
    store = SQLiteStore(folder / "bench-recovery.db")  # synchronous=FULL is the default
    await store.open()
    processors = Processors.from_entry_points()
    config = Config(
        engine=EngineConfig(batch_size=args.concurrency),
        dependencies={
            "svc": DependencyConfig(
                base_url=base_url,
                retry=RetryPolicy(
                    max_attempts=args.max_attempts,
                    initial_interval_seconds=args.retry_initial,
                    max_interval_seconds=args.retry_cap,
                ),
                retry_rounds=args.retry_rounds,
                retry_round_seconds=args.retry_round_seconds,
                breaker=BreakerConfig(
                    failure_rate=args.breaker_failure_rate,
                    window=args.breaker_window,
                    min_calls=args.breaker_min_calls,
                    failure_threshold=args.breaker_threshold,
                    open_seconds=args.breaker_open_seconds,
                    count=args.breaker_count,
                ),
            )
        },
    )
    clock = SystemClock()
    channel = MemoryChannel()
    loop_lags: list[float] = []
    workers = [
        Worker(
            Engine(
                store,
                processors=processors,
                config=config,
                clock=clock,
                worker_id=f"bench-{i}",
                rng=random.Random(args.seed * 1_000 + i),
            ),
            Dispatcher(store, channel, clock=clock, dispatcher_id=f"dispatch-{i}"),
        )
        for i in range(args.workers)
    ]
    try:
        flow = load_flow(bench_flow(args.node_timeout), processors.node_types)
        engine = workers[0].engine
        await engine.publish(flow)

        all_started, done = asyncio.Event(), asyncio.Event()
        lag_watch = asyncio.create_task(watch_loop_lag(loop_lags, done))
        started = time.perf_counter()
        stop_at = started + args.timeout
        loops = [work(w, store, stop_at, all_started, done) for w in workers]
        if args.rate > 0:  # arrivals paced: the workers run while executions start
            start_seconds = 0.0

            async def starter() -> None:
                await start_all(engine, flow.id, args.executions, args.rate)
                all_started.set()

            await asyncio.gather(starter(), *loops)
        else:  # a burst: every execution is started, then the workers run
            await start_all(engine, flow.id, args.executions, 0)
            all_started.set()
            start_seconds = time.perf_counter() - started
            started = time.perf_counter()
            await asyncio.gather(*loops)
        run_seconds = time.perf_counter() - started
        timed_out = not done.is_set()
        done.set()
        await lag_watch

        trails = await read_trails(store, args.executions + 10)
    finally:
        await processors.aclose()
        await store.close()
    openings = sum(
        1
        for w in workers
        for breaker in w.engine.breakers.all().values()
        for _, state in breaker.changes
        if state == "open"
    )
    return RunResult(
        start_seconds,
        run_seconds,
        timed_out,
        trails,
        loop_lags,
        len(channel.messages),
        channel.duplicates,
        openings,
    )


# ------------------------------------------------------------------------------ the figures


@dataclass(slots=True)
class Figures:
    """The measurement, every figure derived from the store's rows."""

    executions: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    calls: int = 0  # attempts of the http node that reached the dependency (or tried to)
    failed_calls: int = 0
    refused: int = 0  # attempts refused by an open breaker: no request went out
    error_kinds: Counter[str] = field(default_factory=Counter)
    #: timeouts by whether the request had gone out (its headers began to be written)
    #: before the node gave up: one that never went out waited on this side (connecting
    #: or for a pooled connection), not for the dependency's answer
    timeouts_unsent: int = 0
    faulted: int = 0  # executions with at least one failed call
    faulted_recovered: int = 0  # ... that completed with outcome completed
    faulted_escalated: int = 0
    escalated_without_fault: int = 0  # escalated though none of their own calls failed
    recovering_entries: int = 0  # transitions into recovering
    executions_recovering: int = 0  # executions that went through recovering at least once
    handoffs: int = 0
    escalation_handoffs: int = 0
    attempts_per_execution: Counter[int] = field(default_factory=Counter)
    over_budget: int = 0  # executions with more calls than --max-attempts x --retry-rounds
    recovery_seconds: list[float] = field(default_factory=list)
    wake_lag_seconds: list[float] = field(default_factory=list)


def analyse(trails: list[Trail], max_attempts: int) -> Figures:
    """The figures; ``max_attempts`` is every round's together (the most calls a node
    may make)."""
    f = Figures(executions=len(trails))
    for trail in trails:
        ex = trail.execution
        f.statuses[ex.status.value] += 1
        f.outcomes[ex.outcome.value if ex.outcome else "none"] += 1
        rows = [c for c in trail.checkpoints if c.node_id == HTTP_NODE]
        calls = [c for c in rows if (c.error or {}).get("kind") != "dependency_unavailable"]
        failed = [c for c in calls if c.error is not None]
        f.calls += len(calls)
        f.failed_calls += len(failed)
        f.refused += len(rows) - len(calls)
        f.error_kinds.update(str((c.error or {}).get("kind")) for c in rows if c.error)
        f.timeouts_unsent += sum(
            (c.error or {}).get("kind") == "timeout"
            and ((c.error or {}).get("details") or {}).get("sent") is False
            for c in rows
        )
        f.attempts_per_execution[len(rows)] += 1
        f.over_budget += len(calls) > max_attempts
        outcome = ex.outcome
        if failed:
            f.faulted += 1
            if ex.status is ExecutionStatus.COMPLETED and outcome is Outcome.COMPLETED:
                f.faulted_recovered += 1
                ok = next(c for c in rows if c.error is None)
                f.recovery_seconds.append(ok.started_at + ok.duration - failed[0].started_at)
            elif outcome is Outcome.ESCALATED:
                f.faulted_escalated += 1
        elif outcome is Outcome.ESCALATED:
            f.escalated_without_fault += 1
        into = [t for t in trail.transitions if t.target is ExecutionStatus.RECOVERING]
        f.recovering_entries += len(into)
        f.executions_recovering += bool(into)
        f.handoffs += len(trail.handoffs)
        f.escalation_handoffs += sum(h.queue == "escalation" for h in trail.handoffs)
        # how late each retry ran: the next attempt's start minus the due time the
        # engine logged when it scheduled the retry (at + delaySeconds)
        scheduled = [r for r in trail.logs if r.message == "node.retry_scheduled"]
        for log, (failed_row, next_row) in zip(scheduled, itertools.pairwise(rows), strict=False):
            if failed_row.error is None:
                break
            due = log.at + float(log.context.get("delaySeconds", 0.0))
            f.wake_lag_seconds.append(next_row.started_at - due)
    return f


# ------------------------------------------------------------------------------ the report


def pct(part: float, whole: float, digits: int = 1) -> str:
    return f"{100 * part / whole:.{digits}f} %" if whole else "n/a"


def seconds(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f} s"  # NaN when there is nothing


def report(args: argparse.Namespace, result: RunResult, served: Counter[str], f: Figures) -> None:
    # every fault served counts against the dependency, so a node makes up to n calls
    p, n = args.failure_rate, args.max_attempts * args.retry_rounds
    exhaustion = p**n  # every one of the n attempts fails
    recovered_expected = 1 - p ** (n - 1)  # given a first failure, one of the n-1 others works
    calls_expected = (1 - p**n) / (1 - p) if p < 1 else float(n)
    # the failed share of the calls in the store (the seeded draws' noise moves it off p)
    q = f.failed_calls / f.calls if f.calls else float("nan")
    rec = f.recovery_seconds
    recovered_share = f.faulted_recovered / f.faulted if f.faulted else float("nan")
    p50, p90, p99 = (percentile(rec, frac) for frac in (0.5, 0.9, 0.99))
    run_s = result.run_seconds

    def verdict(ok: bool) -> str:
        return "meets" if ok else "MISSES"

    print_table(
        "criteria (from the store)",
        [
            (
                "transient errors recovered without a person",
                f"{pct(f.faulted_recovered, f.faulted)} (need >= 90 %:"
                f" {verdict(recovered_share >= REQUIRED_RECOVERED)})",
            ),
            (
                "  expected if every attempt is independent: 1 - p^(n-1)",
                pct(recovered_expected, 1),
            ),
            ("  same with q: 1 - q^(n-1)", pct(1 - q ** (n - 1), 1)),
            (
                "escalation rate (outcome escalated / all)",
                f"{pct(f.outcomes['escalated'], f.executions, 2)}",
            ),
            ("  expected exhaustion probability p^n", pct(exhaustion, 1, 2)),
            (
                "  same with q, the failed share of calls measured, q^n",
                pct(q**n, 1, 2),
            ),
            (
                "recovery time p50 / p99",
                f"{seconds(p50)} / {seconds(p99)} (need < 30 s:"
                f" {verdict(p99 < REQUIRED_RECOVERY_SECONDS)})",
            ),
        ],
    )
    print_table(
        "executions",
        [
            ("executions (in the store)", fmt(f.executions)),
            *(
                (f"  status {status}", fmt(count))
                for status, count in sorted(f.statuses.items(), key=lambda kv: -kv[1])
            ),
            *(
                (f"  outcome {outcome}", fmt(count))
                for outcome, count in sorted(f.outcomes.items(), key=lambda kv: -kv[1])
            ),
            ("with >= 1 failed call (faulted)", f"{f.faulted:,} ({pct(f.faulted, f.executions)})"),
            ("  expected share faulted: p", pct(p, 1)),
            ("  faulted, recovered (outcome completed)", fmt(f.faulted_recovered)),
            ("  faulted, escalated", fmt(f.faulted_escalated)),
            ("escalated with no failed call of their own", fmt(f.escalated_without_fault)),
            ("failed (status failed)", fmt(f.statuses["failed"])),
            ("went through recovering (executions)", fmt(f.executions_recovering)),
            ("transitions into recovering", fmt(f.recovering_entries)),
            (
                "handoffs recorded (queue escalation)",
                f"{f.handoffs:,} ({f.escalation_handoffs:,})",
            ),
            ("more http calls than --max-attempts x --retry-rounds", fmt(f.over_budget)),
            (
                "http attempts per execution",
                ", ".join(f"{k}: {v:,}" for k, v in sorted(f.attempts_per_execution.items())),
            ),
        ],
    )
    print_table(
        "calls to the dependency",
        [
            ("calls (http checkpoint rows, request made)", fmt(f.calls)),
            (
                "  per execution / expected (1-p^n)/(1-p)",
                f"{f.calls / max(1, f.executions):.3f} / {calls_expected:.3f}",
            ),
            (
                "failed calls (rows with error)",
                f"{f.failed_calls:,} ({pct(f.failed_calls, f.calls)})",
            ),
            *(
                (f"  error kind {kind}", fmt(count))
                for kind, count in sorted(f.error_kinds.items(), key=lambda kv: -kv[1])
            ),
            ("  timeouts before the request went out", fmt(f.timeouts_unsent)),
            ("refused by an open breaker (no request)", fmt(f.refused)),
            ("breaker openings (engines' breakers)", fmt(result.breaker_openings)),
            ("server saw requests (cross-check)", fmt(sum(served.values()))),
            *(
                (f"  server answered {kind}", fmt(count))
                for kind, count in sorted(served.items(), key=lambda kv: -kv[1])
            ),
            (
                "messages delivered (duplicates)",
                f"{result.delivered:,} ({result.duplicates})",
            ),
        ],
    )
    lag = f.wake_lag_seconds
    print_table(
        "time from the first failed attempt to the end of the successful one",
        [
            ("recovered executions measured", fmt(len(rec))),
            ("median", seconds(p50)),
            ("p90", seconds(p90)),
            ("p99", seconds(p99)),
            ("max", seconds(max(rec) if rec else float("nan"))),
            ("retry ran after its due time: median", seconds(percentile(lag, 0.5))),
            ("retry ran after its due time: p99", seconds(percentile(lag, 0.99))),
            (
                "engine's event loop lag, p99 / max",
                f"{seconds(percentile(result.loop_lags, 0.99))}"
                f" / {seconds(max(result.loop_lags, default=float('nan')))}",
            ),
        ],
    )
    print_table(
        "time",
        [
            (
                "start all executions (a burst, before the run)",
                fmt(result.start_seconds, "s", 2) if args.rate <= 0 else "paced, in the run",
            ),
            ("run until every execution is terminal", fmt(run_s, "s", 2)),
            ("  executions/s", fmt(args.executions / run_s)),
            ("  gave up at --timeout", "yes" if result.timed_out else "no"),
            ("peak RSS", fmt(peak_rss_mb(), "MiB", 1)),
        ],
    )


def notes(served: Counter[str], f: Figures) -> None:
    """Say what makes the figures depart from p^n, when the store shows it."""
    if f.refused:
        print(
            f"\nnote: {f.refused:,} attempts were refused by an open circuit breaker (no request"
            f"\nwent out) and {f.escalated_without_fault:,} executions escalated without a failed"
            "\ncall of their own: an open breaker is not retried, it escalates at once unless the"
            "\nnode sets waitForDependency. Compare with --breaker-count '' (nothing counts)."
        )
    timeouts = f.error_kinds["timeout"]
    if timeouts > served["slow"]:
        print(
            f"\nnote: {timeouts - served['slow']:,} timeouts more than the slow answers served:"
            "\ncalls that waited on this side (the HTTP client's connection pool, a busy event"
            "\nloop) past the node's timeout, counted as the dependency's failures."
        )
    if sum(served.values()) != f.calls:
        print(
            f"\nnote: the store has {f.calls:,} calls, the server saw {sum(served.values()):,}"
            " requests."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=1_000)
    parser.add_argument(
        "--failure-rate", type=float, default=0.3, help="share of requests that fail"
    )
    parser.add_argument("--seed", type=int, default=1, help="seeds the faults and the jitter")
    parser.add_argument(
        "--max-attempts", type=int, default=3, help="attempts per call (product default 3)"
    )
    policy_defaults = RetryPolicy()
    parser.add_argument(
        "--retry-initial",
        type=float,
        default=0.05,
        help="the first backoff (the product's default policy:"
        f" {policy_defaults.initial_interval_seconds:g})",
    )
    parser.add_argument(
        "--retry-cap",
        type=float,
        default=0.5,
        help=f"the longest backoff (product default {policy_defaults.max_interval_seconds:g})",
    )
    dependency_defaults = DependencyConfig(base_url="http://127.0.0.1")
    parser.add_argument(
        "--retry-rounds",
        type=int,
        default=dependency_defaults.retry_rounds,
        help="rounds of --max-attempts while the failures count against the dependency"
        " (product default 3; 1: off)",
    )
    parser.add_argument(
        "--retry-round-seconds",
        type=float,
        default=dependency_defaults.retry_round_seconds,
        help="the pause before round 2 (0.5-1 x this), doubling per round",
    )
    parser.add_argument(
        "--faults",
        choices=("mixed", *FAULTS),
        default="mixed",
        help="what a failure is: 503, reset (RST), slow (past the node timeout), 429"
        " (Retry-After: 0), or mixed: each of them in equal shares",
    )
    parser.add_argument(
        "--node-timeout", type=float, default=0.5, help="the http node's timeoutSeconds"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="executions started per second while the workers run (0: all at once, first)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker loops (one Engine each)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="executions each worker claims and advances at once (its batch size)",
    )
    defaults = BreakerConfig()
    parser.add_argument(
        "--breaker-failure-rate",
        type=float,
        default=defaults.failure_rate,
        help="the share of counted failures among the window's calls that opens the breaker",
    )
    parser.add_argument(
        "--breaker-window", type=int, default=defaults.window, help="calls the rate is over"
    )
    parser.add_argument(
        "--breaker-min-calls",
        type=int,
        default=defaults.min_calls,
        help="the fewest calls in the window before the rate may open it",
    )
    parser.add_argument(
        "--breaker-threshold",
        type=int,
        default=defaults.failure_threshold,
        help="consecutive counted failures that open it as well (default: off)",
    )
    parser.add_argument(
        "--breaker-count",
        type=lambda text: [t for t in text.split(",") if t.strip()],
        default=defaults.count,
        help="what counts against the dependency, comma-separated (timeout, connect, 4xx,"
        " 5xx or a status); '' for nothing",
    )
    parser.add_argument(
        "--breaker-open-seconds",
        type=float,
        default=defaults.open_seconds,
        help="how long an open breaker refuses calls",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="give up on the run after this long"
    )
    add_store_dir(parser)
    args = parser.parse_args()

    folder = store_folder(args.store_dir)
    wall = time.perf_counter()
    print(
        f"{args.executions:,} executions: message -> http (svc) -> message -> end;"
        f" svc fails {args.failure_rate:.0%} of requests ({args.faults}), seed {args.seed}"
    )
    print(
        f"retry: {args.max_attempts} attempts, {args.retry_initial:g} s initial, x2,"
        f" {args.retry_cap:g} s cap, full jitter;"
        f" node timeout {args.node_timeout:g} s; {args.workers} worker(s) x {args.concurrency}"
    )
    print(
        f"rounds: {args.retry_rounds} of {args.max_attempts} attempts while the failures count,"
        f" {args.retry_round_seconds:g} s pause before round 2 (jittered, doubling)"
    )
    consecutive = "" if args.breaker_threshold is None else f" or {args.breaker_threshold} in a row"
    print(
        f"breaker: opens at {args.breaker_failure_rate:.0%} of the last {args.breaker_window}"
        f" calls (>= {args.breaker_min_calls}){consecutive} failing, counting"
        f" {','.join(args.breaker_count) or 'nothing'}; open {args.breaker_open_seconds:g} s"
    )
    print(
        "arrivals: all started at once, then run"
        if args.rate <= 0
        else f"arrivals: {args.rate:g} executions/s while the workers run"
    )
    dependency = Dependency(args)
    try:
        result = asyncio.run(run(args, folder, dependency.url))
    finally:
        served = dependency.stop()
        drop_store_folder(folder, args.store_dir)
    figures = analyse(result.trails, args.max_attempts * args.retry_rounds)
    report(args, result, served, figures)
    print(
        "\nrecovery time: from the first failed attempt's start to the end of the successful"
        "\nattempt of the http node, per execution that completed after at least one failed"
        f"\ncall; it includes the backoffs (jittered, {args.retry_initial:g} s x 2^k, capped at"
        f" {args.retry_cap:g} s), the pauses between rounds, the wait"
        "\nfor a worker to claim the execution again, and timed-out attempts. In a burst a"
        "\nretry waits behind the executions started before it (claims go by wake time):"
        "\nsee 'retry ran after its due time'; --rate spreads the arrivals instead."
    )
    notes(served, figures)
    print(f"\nwall time {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
