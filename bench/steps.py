"""Durable steps per second: many short executions of pure nodes, on SQLite or PostgreSQL.

    python bench/steps.py [--executions 1000] [--nodes 10] [--workers 2] [--store-dir DIR]
    python bench/steps.py --store postgresql://USER@HOST:PORT/DATABASE [--workers 8]

Each execution runs ``--nodes`` nodes alternating ``set`` and ``message`` (one
checkpoint row per node, the messages into the outbox, delivered to the
in-memory channel) through the real Engine, Worker loop, Dispatcher and
SQLiteStore with ``synchronous=FULL`` and the system clock. All executions are
started first (timed on their own), then ``--workers`` concurrent
``engine.run_once`` loops run in this one process until nothing is due; the
store's writer thread groups their commits into shared transactions.

To see what the disk allows, the same run then measures plain ``sqlite3`` on
a fresh file in the same folder with the same pragmas (WAL, synchronous=FULL):
single-row commits per second, and rows per second when ten rows share a
commit. Figures are printed, never asserted: this is a measurement, not a test.

With ``--store postgresql://...`` the same run goes through the PostgreSQL
store instead (the database is migrated if it is empty; the run's executions
are told apart from earlier ones by their institution), each worker loop
committing on its own pooled connection; the raw sqlite3 runs are skipped.
For several worker *processes* on one PostgreSQL, see ``bench/machines.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from _report import (
    add_store_dir,
    drop_store_folder,
    filesystem_of,
    fmt,
    peak_rss_mb,
    percentile,
    print_table,
    rss_mb,
    store_folder,
)
from trilha.channels.memory import MemoryChannel
from trilha.config import Config, EngineConfig, LoggingConfig
from trilha.core.flow import load_flow
from trilha.engine.clock import SystemClock
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.observability.logging import configure as configure_logging
from trilha.observability.metrics import Metrics
from trilha.processors.registry import Processors
from trilha.store import open_store
from trilha.store.base import Claimed, ExecutionFilter, Store
from trilha.store.sqlite import SQLiteStore


def bench_flow(nodes: int) -> dict[str, Any]:
    """``nodes`` nodes alternating set and message; the last one completes the execution."""
    body: list[dict[str, Any]] = []
    for i in range(nodes):
        node: dict[str, Any] = {"id": f"n{i}"}
        if i % 2 == 0:
            node |= {"type": "set", "variables": {f"v{i}": i, "step": f"{{{{contact}}}}-{i}"}}
        else:
            node |= {"type": "message", "text": f"Passo {i} de {nodes}, {{{{contact}}}}."}
        if i + 1 < nodes:
            node["next"] = f"n{i + 1}"
        body.append(node)
    return {"id": "bench-steps", "start": "n0", "nodes": body}


class TimedEngine(Engine):
    """An Engine that records how long each claimed execution took, claim to durable commit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.turns: list[float] = []

    async def advance(self, claimed: Claimed) -> None:
        started = time.perf_counter()
        await super().advance(claimed)
        self.turns.append(time.perf_counter() - started)


async def work_until_idle(engine: Engine, store: Store) -> None:
    """One worker loop: claim and advance until nothing is due or leased."""
    while True:
        if await engine.run_once():
            continue
        stats = await store.queue_stats(engine.clock.now())
        if not stats.due and not stats.leased:
            return
        await asyncio.sleep(0.001)


async def deliver_until_drained(
    dispatcher: Dispatcher, store: Store, workers_done: asyncio.Event
) -> None:
    """The outbox loop: deliver until the workers are done and nothing is pending."""
    while True:
        if await dispatcher.run_once():
            continue
        if workers_done.is_set():
            stats = await store.queue_stats(time.time())
            if not stats.pending_outbox:
                return
        await asyncio.sleep(0.002)


async def run_engine(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    if args.store:
        store: Store = open_store(args.store, auto_migrate=True)
    else:
        store = SQLiteStore(folder / "bench-steps.db")  # synchronous=FULL is the default
    await store.open()
    institution = f"bench-{os.getpid()}-{int(time.time())}"
    processors = Processors.from_entry_points()
    config = Config(
        engine=EngineConfig(batch_size=args.batch_size),
        logging=LoggingConfig(store_level=args.store_level),
    )
    if args.log_level != "none":
        # the process log as a worker writes it (JSON lines), into a file: the cost of
        # shaping, masking and writing, not of a terminal
        sink = open(args.log_file, "w", encoding="utf-8")  # noqa: SIM115, ASYNC230
        configure_logging(LoggingConfig(level=args.log_level, format="json"), stream=sink)
    clock = SystemClock()
    metrics = Metrics() if args.metrics else None
    engines = [
        TimedEngine(
            store,
            processors=processors,
            config=config,
            clock=clock,
            worker_id=f"bench-{i}",
            metrics=metrics,
        )
        for i in range(args.workers)
    ]
    channel = MemoryChannel()
    dispatcher = Dispatcher(store, channel, clock=clock, batch_size=512)
    try:
        flow = load_flow(bench_flow(args.nodes), processors.node_types)
        await engines[0].publish(flow)

        started = time.perf_counter()
        for first in range(0, args.executions, args.start_concurrency):
            count = min(args.start_concurrency, args.executions - first)
            await asyncio.gather(
                *(
                    engines[0].start(
                        flow.id,
                        institution_id=institution,
                        conversation_id=f"conv-{first + i}",
                        contact_id=f"c{first + i}",
                        variables={"contact": f"c{first + i}"},
                    )
                    for i in range(count)
                )
            )
        start_seconds = time.perf_counter() - started

        workers_done = asyncio.Event()
        started = time.perf_counter()
        delivery = asyncio.create_task(deliver_until_drained(dispatcher, store, workers_done))
        await asyncio.gather(*(work_until_idle(e, store) for e in engines))
        run_seconds = time.perf_counter() - started
        workers_done.set()
        await delivery
        drained_seconds = time.perf_counter() - started
        done = (await store.count_by_status(institution)).get("completed", 0)
        ran = await store.list_executions(
            limit=args.executions, where=ExecutionFilter(institution_id=institution)
        )
        lifetimes = [ex.ended_at - ex.created_at for ex in ran if ex.ended_at is not None]
        steps = sum(ex.step_seq for ex in ran)  # one checkpoint row per node run
    finally:
        await processors.aclose()
        await store.close()
    return {
        "start_seconds": start_seconds,
        "run_seconds": run_seconds,
        "drained_seconds": drained_seconds,
        "steps": steps,
        "completed": done,
        "delivered": len(channel.messages),
        "duplicates": channel.duplicates,
        "turns": [t for e in engines for t in e.turns],
        "lifetimes": [t for t in lifetimes if t is not None],
    }


def raw_sqlite(path: Path, rows_per_commit: int, seconds: float) -> tuple[int, int, float]:
    """Insert checkpoint-sized rows for ``seconds``; returns (commits, rows, elapsed)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, execution_id TEXT,"
            " seq INTEGER, state TEXT)"
        )
        payload = "x" * 400
        commits = rows = 0
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO raw (execution_id, seq, state) VALUES (?, ?, ?)",
                [("e", rows + i, payload) for i in range(rows_per_commit)],
            )
            conn.execute("COMMIT")
            commits += 1
            rows += rows_per_commit
        return commits, rows, elapsed
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=1_000)
    parser.add_argument("--nodes", type=int, default=10, help="set/message nodes per execution")
    parser.add_argument(
        "--workers", type=int, default=2, help="concurrent engine.run_once loops in this process"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="executions per claim")
    parser.add_argument(
        "--start-concurrency", type=int, default=200, help="engine.start calls in flight at once"
    )
    parser.add_argument(
        "--raw-seconds", type=float, default=2.0, help="duration of each plain-sqlite3 run"
    )
    parser.add_argument(
        "--log-level",
        default="none",
        type=str.upper,
        choices=["NONE", "OFF", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"],
        help="process log level (JSON lines into --log-file); NONE leaves the pipeline"
        " unconfigured, as a library embedding the engine would",
    )
    parser.add_argument("--log-file", default=os.devnull, help="where --log-level lines go")
    parser.add_argument(
        "--store-level",
        default="DEBUG",
        type=str.upper,
        choices=["OFF", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"],
        help="the least severe trail line stored (DEBUG: node entry/exit, the default)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="record Prometheus metrics as `trilha worker` does (off: no registry at all)",
    )
    add_store_dir(parser)
    parser.add_argument(
        "--store",
        default=None,
        help="run on this store instead of a fresh SQLite file (postgresql://...)",
    )
    args = parser.parse_args()
    args.log_level = args.log_level.replace("NONE", "none")

    folder = store_folder(args.store_dir)
    wall = time.perf_counter()
    try:
        print(
            f"{args.executions:,} executions x {args.nodes} set/message nodes,"
            f" {args.workers} worker loop(s), batch {args.batch_size}"
        )
        if args.store:
            print(f"store: {open_store(args.store)!r}")
        else:
            print(f"store: {folder} on {filesystem_of(folder)}, synchronous=FULL, WAL")
        print(
            f"process log: {args.log_level}, stored trail from {args.store_level},"
            f" metrics {'on' if args.metrics else 'off'}"
        )
        result = asyncio.run(run_engine(args, folder))
        raw = None
        if not args.store:
            raw = (
                raw_sqlite(folder / "raw-1.db", 1, args.raw_seconds),
                raw_sqlite(folder / "raw-10.db", 10, args.raw_seconds),
            )
    finally:
        drop_store_folder(folder, args.store_dir)

    steps, run_s = result["steps"], result["run_seconds"]
    turns_ms = [t * 1000 for t in result["turns"]]
    life_ms = [t * 1000 for t in result["lifetimes"]]
    print_table(
        "trilha (Engine + Worker loops + Dispatcher + "
        + ("PostgresStore)" if args.store else "SQLiteStore)"),
        [
            ("executions completed", f"{result['completed']:,} / {args.executions:,}"),
            ("durable steps (checkpoint rows)", fmt(steps)),
            (
                "messages delivered (duplicates)",
                f"{result['delivered']:,} ({result['duplicates']})",
            ),
            ("start all executions", fmt(result["start_seconds"], "s", 2)),
            ("  starts/s", fmt(args.executions / result["start_seconds"])),
            ("run until idle", fmt(run_s, "s", 2)),
            ("  durable steps/s", fmt(steps / run_s)),
            ("  executions/s", fmt(args.executions / run_s)),
            ("  outbox drained after", fmt(result["drained_seconds"], "s", 2)),
            ("per execution, claim -> durable: p50", fmt(percentile(turns_ms, 0.5), "ms", 1)),
            ("per execution, claim -> durable: p99", fmt(percentile(turns_ms, 0.99), "ms", 1)),
            ("per execution, created -> ended: p50", fmt(percentile(life_ms, 0.5), "ms", 1)),
            ("per execution, created -> ended: p99", fmt(percentile(life_ms, 0.99), "ms", 1)),
            ("RSS now / peak", f"{rss_mb():.1f} / {peak_rss_mb():.1f} MiB"),
        ],
    )
    print(
        "claim -> durable: from the claim to the commit that ends the execution (all its nodes"
        "\nshare one group-committed transaction); created -> ended includes the time spent"
        "\nqueued behind the burst of starts."
    )
    if raw is None:
        print(f"\nwall time {time.perf_counter() - wall:.1f} s")
        return
    (s_commits, _, s_elapsed), (g_commits, g_rows, g_elapsed) = raw
    print_table(
        "raw limit: plain sqlite3, same folder, WAL + synchronous=FULL",
        [
            ("single-row commits/s", fmt(s_commits / s_elapsed)),
            ("10 rows per commit: rows/s", fmt(g_rows / g_elapsed)),
            ("10 rows per commit: commits/s", fmt(g_commits / g_elapsed)),
            (
                "trilha steps/s vs single-row commits/s",
                f"{steps / run_s / (s_commits / s_elapsed):.2f}x",
            ),
        ],
    )
    print(f"\nwall time {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
