"""asyncpg vs psycopg 3 (async): the PostgreSQL store's hot path through both drivers.

    python bench/pg_drivers.py (--dsn postgresql://USER@HOST:PORT/DB | --start-cluster DIR)
        [--executions 2000] [--steps 10] [--workers 8] [--batch 16] [--rounds 2]
        [--drivers asyncpg,psycopg,psycopg-pipeline] [--keep]

The same workload runs through each driver, in a schema of its own
(``bench_pg_drivers``, dropped at the end unless ``--keep``): ``--executions``
rows are seeded due, then ``--workers`` asyncio tasks, each holding one pooled
connection (``asyncpg.create_pool`` / ``psycopg_pool.AsyncConnectionPool``),
claim ``--batch`` executions at a time (``FOR UPDATE SKIP LOCKED``, fencing
token bumped) and advance each one ``--steps`` steps. Every step is one
transaction: the fenced ``UPDATE executions`` (its row count checked before
the commit), one checkpoint row, one outbox row, two log rows (executemany)
and, on the last step, a transition row while the lease is released and the
execution completed. The loop ends when a claim finds nothing due.

Drivers are used as they are meant to be: asyncpg prepares every statement
itself; psycopg runs in autocommit with ``conn.transaction()`` blocks and
prepares a statement after ``prepare_threshold`` (5) uses;
``psycopg-pipeline`` sends each step's statements in one pipeline and syncs
once to read the fenced UPDATE's row count before committing (two round trips
per step instead of six).

Each run starts from freshly truncated tables (seeded, ANALYZEd and, where
allowed, CHECKPOINTed); the drivers alternate within each round so neither is
favoured by a warm cache. A ``--dsn`` server's fsync/synchronous_commit are
printed, not changed; ``--start-cluster DIR`` makes one (``tests/pgcluster.py``,
durable: fsync and full_page_writes on, PostgreSQL's default sizes) and stops it
at the end. Latency is a step's transaction, BEGIN to durable COMMIT.
CPU is this process's (the driver and the loop) and, when the server runs on
this machine, all its ``postgres`` processes'. Figures are printed, never
asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import psycopg
import psycopg_pool
from psycopg_pool import AsyncConnectionPool

from _report import fmt, percentile, print_table

SCHEMA = "bench_pg_drivers"
DRIVERS = ("asyncpg", "psycopg", "psycopg-pipeline")
LEASE_SECONDS = 60.0

DDL = (
    "CREATE SCHEMA IF NOT EXISTS bench_pg_drivers",
    """CREATE TABLE IF NOT EXISTS executions (
        id               text PRIMARY KEY,
        status           text NOT NULL,
        wake_at          double precision,
        lease_owner      text,
        lease_expires_at double precision,
        fencing_token    bigint NOT NULL DEFAULT 0,
        variables        jsonb NOT NULL,
        step_seq         integer NOT NULL DEFAULT 0,
        updated_at       double precision NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS executions_wake ON executions (wake_at) WHERE wake_at IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        execution_id text NOT NULL,
        seq          integer NOT NULL,
        node_id      text,
        status       text NOT NULL,
        state        text NOT NULL,
        started_at   double precision NOT NULL,
        PRIMARY KEY (execution_id, seq)
    )""",
    """CREATE TABLE IF NOT EXISTS transitions (
        id           bigserial PRIMARY KEY,
        execution_id text NOT NULL,
        source       text,
        target       text NOT NULL,
        reason       text NOT NULL,
        at           double precision NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS transitions_execution ON transitions (execution_id, id)",
    """CREATE TABLE IF NOT EXISTS outbox (
        id              bigserial PRIMARY KEY,
        idempotency_key text NOT NULL UNIQUE,
        execution_id    text NOT NULL,
        text            text NOT NULL,
        step_seq        integer NOT NULL,
        status          text NOT NULL DEFAULT 'pending',
        created_at      double precision NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (created_at) WHERE status = 'pending'",
    """CREATE TABLE IF NOT EXISTS execution_logs (
        id           bigserial PRIMARY KEY,
        execution_id text NOT NULL,
        at           double precision NOT NULL,
        level        text NOT NULL,
        message      text NOT NULL,
        context      text NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS execution_logs_execution ON execution_logs (execution_id, id)",
)
TRUNCATE = "TRUNCATE executions, checkpoints, transitions, outbox, execution_logs RESTART IDENTITY"
SEED = """
INSERT INTO executions (id, status, wake_at, variables, updated_at)
SELECT 'exec-' || lpad(g::text, 6, '0'), 'running', g::double precision,
       jsonb_build_object('contact', 'c' || g), 0
FROM generate_series(1, $1) AS g
"""

# the hot path, written once with $n placeholders (psycopg gets them rewritten to %s)
CLAIM = """
WITH due AS (
    SELECT id FROM executions
    WHERE wake_at <= $1 AND (lease_expires_at IS NULL OR lease_expires_at < $1)
    ORDER BY wake_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE executions e
SET lease_owner = $3, lease_expires_at = $4, fencing_token = e.fencing_token + 1,
    updated_at = $1
FROM due
WHERE e.id = due.id
RETURNING e.*
"""
ADVANCE = """
UPDATE executions SET variables = $1::jsonb, step_seq = $2, updated_at = $3
WHERE id = $4 AND fencing_token = $5 AND lease_owner = $6
"""
FINISH = """
UPDATE executions SET variables = $1::jsonb, step_seq = $2, updated_at = $3,
    status = 'completed', wake_at = NULL, lease_owner = NULL, lease_expires_at = NULL
WHERE id = $4 AND fencing_token = $5 AND lease_owner = $6
"""
INSERT_CHECKPOINT = """
INSERT INTO checkpoints (execution_id, seq, node_id, status, state, started_at)
VALUES ($1, $2, $3, $4, $5, $6)
"""
INSERT_OUTBOX = """
INSERT INTO outbox (idempotency_key, execution_id, text, step_seq, created_at)
VALUES ($1, $2, $3, $4, $5)
"""
INSERT_LOG = """
INSERT INTO execution_logs (execution_id, at, level, message, context)
VALUES ($1, $2, $3, $4, $5)
"""
INSERT_TRANSITION = """
INSERT INTO transitions (execution_id, source, target, reason, at)
VALUES ($1, $2, $3, $4, $5)
"""
COUNTS = """
SELECT (SELECT count(*) FROM executions WHERE status = 'completed'),
       (SELECT count(*) FROM checkpoints),
       (SELECT count(*) FROM outbox),
       (SELECT count(*) FROM execution_logs),
       (SELECT count(*) FROM transitions)
"""
SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "full_page_writes",
    "shared_buffers",
)

# columns of ``RETURNING e.*`` in table order
COL_ID, COL_FENCING_TOKEN, COL_VARIABLES, COL_STEP_SEQ = 0, 5, 6, 7

_PLACEHOLDER = re.compile(r"\$(\d+)")


class LeaseLost(RuntimeError):
    """The fenced UPDATE matched no row: another worker holds the execution."""


@dataclass(frozen=True)
class PyformatSQL:
    """A ``$n`` statement rewritten for psycopg: ``%s`` in order of appearance."""

    sql: str
    order: tuple[int, ...]

    @classmethod
    def of(cls, sql: str) -> PyformatSQL:
        order = tuple(int(n) - 1 for n in _PLACEHOLDER.findall(sql))
        return cls(_PLACEHOLDER.sub("%s", sql), order)

    def params(self, args: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(args[i] for i in self.order)


@dataclass(frozen=True)
class StepWrite:
    """What one step writes; built before the transaction, identical for every driver."""

    last: bool
    update: tuple[Any, ...]
    checkpoint: tuple[Any, ...]
    outbox: tuple[Any, ...]
    logs: list[tuple[Any, ...]]
    transition: tuple[Any, ...] | None


def plan_step(
    execution_id: str,
    token: int,
    owner: str,
    variables: dict[str, Any],
    seq: int,
    steps: int,
) -> StepWrite:
    """Step ``seq`` (1-based) of ``steps``: the set/message node a flow would run."""
    now = time.time()
    node = f"n{seq}"
    variables[f"v{seq}"] = f"{variables['contact']}-{seq}"
    last = seq == steps
    state = json.dumps(
        {"node": node, "variables": variables, "status": "done", "attempt": 1, "at": now}
    )
    text = f"Passo {seq} de {steps}, {variables['contact']}."
    context = json.dumps({"node_id": node, "node_type": "message", "seq": seq})
    return StepWrite(
        last=last,
        update=(json.dumps(variables), seq, now, execution_id, token, owner),
        checkpoint=(execution_id, seq, node, "done", state, now),
        outbox=(f"{execution_id}:{seq}", execution_id, text, seq, now),
        logs=[
            (execution_id, now, "DEBUG", "node entered", context),
            (execution_id, now, "DEBUG", "node left", context),
        ],
        transition=(execution_id, "running", "completed", "flow ended", now) if last else None,
    )


@dataclass
class RunStats:
    driver: str
    round: int
    commits: list[float] = field(default_factory=list)
    claims: list[float] = field(default_factory=list)
    seconds: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float | None = None
    other_cpu: float = 0.0
    counts: tuple[int, ...] = ()


def local_postmaster(backend_pid: int, server_addr: str | None) -> psutil.Process | None:
    """The postmaster of our backend when the server is on this machine, else None."""
    if server_addr not in (None, "127.0.0.1", "::1"):
        return None
    try:
        parent = psutil.Process(backend_pid).parent()
    except psutil.Error:
        return None
    return parent if parent is not None and parent.name() == "postgres" else None


def postgres_cpu_seconds(postmaster: psutil.Process) -> float:
    """User + system CPU of the postmaster and its live children (backends, WAL writer...)."""
    total = 0.0
    for proc in [postmaster, *postmaster.children()]:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def busy_cpu_seconds() -> float:
    """CPU time spent busy on the whole machine, all cores, since boot."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


async def prepare_database(dsn: str, executions: int) -> None:
    """Create the schema if needed, empty it, seed ``executions`` due rows (untimed)."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": SCHEMA})
    try:
        for statement in DDL:
            await conn.execute(statement)
        await conn.execute(TRUNCATE)
        await conn.execute(SEED, executions)
        await conn.execute("ANALYZE")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")  # every run starts with a clean WAL
    finally:
        await conn.close()


async def server_settings(dsn: str) -> tuple[dict[str, str], psutil.Process | None]:
    """The settings that bear on commit cost, and the local postmaster if there is one."""
    conn = await asyncpg.connect(dsn)
    try:
        settings = {
            name: await conn.fetchval("SELECT current_setting($1)", name) for name in SETTINGS
        }
        pid, addr = await conn.fetchrow("SELECT pg_backend_pid(), host(inet_server_addr())")
        return settings, local_postmaster(pid, addr)
    finally:
        await conn.close()


async def drop_schema(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS bench_pg_drivers CASCADE")
    finally:
        await conn.close()


PSYCOPG_SQL: dict[str, PyformatSQL] = {
    name: PyformatSQL.of(sql)
    for name, sql in {
        "claim": CLAIM,
        "advance": ADVANCE,
        "finish": FINISH,
        "checkpoint": INSERT_CHECKPOINT,
        "outbox": INSERT_OUTBOX,
        "log": INSERT_LOG,
        "transition": INSERT_TRANSITION,
    }.items()
}


class Runner:
    """One driver's pool and worker loop; :meth:`run` times all workers together."""

    name = ""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def worker(self, index: int, stats: RunStats) -> None:
        raise NotImplementedError

    async def counts(self) -> tuple[int, ...]:
        raise NotImplementedError

    async def run(self, round_: int) -> RunStats:
        stats = RunStats(self.name, round_)
        await self.open()
        try:
            postmaster: psutil.Process | None = self.args.postmaster
            server_before = postgres_cpu_seconds(postmaster) if postmaster else 0.0
            busy_before = busy_cpu_seconds()
            cpu_before = time.process_time()
            started = time.perf_counter()
            await asyncio.gather(*(self.worker(i, stats) for i in range(self.args.workers)))
            stats.seconds = time.perf_counter() - started
            stats.client_cpu = time.process_time() - cpu_before
            busy = busy_cpu_seconds() - busy_before
            if postmaster is not None:
                stats.server_cpu = postgres_cpu_seconds(postmaster) - server_before
            stats.other_cpu = max(0.0, busy - stats.client_cpu - (stats.server_cpu or 0.0))
            stats.counts = await self.counts()
        finally:
            await self.close()
        return stats


class AsyncpgRunner(Runner):
    name = "asyncpg"

    async def open(self) -> None:
        self.pool: asyncpg.Pool = await asyncpg.create_pool(
            self.args.dsn,
            min_size=self.args.workers,
            max_size=self.args.workers,
            server_settings={"search_path": SCHEMA},
        )

    async def close(self) -> None:
        await self.pool.close()

    async def counts(self) -> tuple[int, ...]:
        row = await self.pool.fetchrow(COUNTS)
        return tuple(row)

    async def worker(self, index: int, stats: RunStats) -> None:
        owner, steps = f"asyncpg-{index}", self.args.steps
        async with self.pool.acquire() as conn:
            while True:
                now = time.time()
                started = time.perf_counter()
                rows = await conn.fetch(CLAIM, now, self.args.batch, owner, now + LEASE_SECONDS)
                stats.claims.append(time.perf_counter() - started)
                if not rows:
                    return
                for row in rows:
                    variables = json.loads(row[COL_VARIABLES])  # jsonb arrives as text
                    token = row[COL_FENCING_TOKEN]
                    for seq in range(row[COL_STEP_SEQ] + 1, steps + 1):
                        step = plan_step(row[COL_ID], token, owner, variables, seq, steps)
                        started = time.perf_counter()
                        async with conn.transaction():
                            status = await conn.execute(
                                FINISH if step.last else ADVANCE, *step.update
                            )
                            if status != "UPDATE 1":
                                raise LeaseLost(row[COL_ID])
                            await conn.execute(INSERT_CHECKPOINT, *step.checkpoint)
                            await conn.execute(INSERT_OUTBOX, *step.outbox)
                            await conn.executemany(INSERT_LOG, step.logs)
                            if step.transition is not None:
                                await conn.execute(INSERT_TRANSITION, *step.transition)
                        stats.commits.append(time.perf_counter() - started)


class PsycopgRunner(Runner):
    name = "psycopg"
    pipeline = False

    async def open(self) -> None:
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            self.args.dsn,
            min_size=self.args.workers,
            max_size=self.args.workers,
            kwargs={"autocommit": True, "options": f"-c search_path={SCHEMA}"},
            open=False,
        )
        await self.pool.open(wait=True)

    async def close(self) -> None:
        await self.pool.close()

    async def counts(self) -> tuple[int, ...]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(COUNTS)
            row = await cur.fetchone()
        assert row is not None
        return tuple(row)

    async def worker(self, index: int, stats: RunStats) -> None:
        owner, steps, sql = f"{self.name}-{index}", self.args.steps, PSYCOPG_SQL
        claim = sql["claim"]
        async with self.pool.connection() as conn:
            while True:
                now = time.time()
                started = time.perf_counter()
                cur = await conn.execute(
                    claim.sql, claim.params((now, self.args.batch, owner, now + LEASE_SECONDS))
                )
                rows = await cur.fetchall()
                stats.claims.append(time.perf_counter() - started)
                if not rows:
                    return
                for row in rows:
                    variables = row[COL_VARIABLES]  # jsonb arrives as a dict
                    token = row[COL_FENCING_TOKEN]
                    for seq in range(row[COL_STEP_SEQ] + 1, steps + 1):
                        step = plan_step(row[COL_ID], token, owner, variables, seq, steps)
                        update = sql["finish" if step.last else "advance"]
                        started = time.perf_counter()
                        if self.pipeline:
                            await self._step_pipelined(conn, step, update)
                        else:
                            await self._step(conn, step, update)
                        stats.commits.append(time.perf_counter() - started)

    async def _step(
        self, conn: psycopg.AsyncConnection[Any], step: StepWrite, update: PyformatSQL
    ) -> None:
        sql = PSYCOPG_SQL
        async with conn.transaction():
            cur = await conn.execute(update.sql, update.params(step.update))
            if cur.rowcount != 1:
                raise LeaseLost(step.update[3])
            await conn.execute(sql["checkpoint"].sql, step.checkpoint)
            await conn.execute(sql["outbox"].sql, step.outbox)
            await conn.cursor().executemany(sql["log"].sql, step.logs)
            if step.transition is not None:
                await conn.execute(sql["transition"].sql, step.transition)

    async def _step_pipelined(
        self, conn: psycopg.AsyncConnection[Any], step: StepWrite, update: PyformatSQL
    ) -> None:
        sql = PSYCOPG_SQL
        async with conn.pipeline() as pipeline, conn.transaction():
            fenced = await conn.execute(update.sql, update.params(step.update))
            await conn.execute(sql["checkpoint"].sql, step.checkpoint)
            await conn.execute(sql["outbox"].sql, step.outbox)
            await conn.cursor().executemany(sql["log"].sql, step.logs)
            if step.transition is not None:
                await conn.execute(sql["transition"].sql, step.transition)
            await pipeline.sync()  # one round trip for all of the above; COMMIT is the next
            if fenced.rowcount != 1:
                raise LeaseLost(step.update[3])


class PsycopgPipelineRunner(PsycopgRunner):
    name = "psycopg-pipeline"
    pipeline = True


RUNNERS: dict[str, type[Runner]] = {
    "asyncpg": AsyncpgRunner,
    "psycopg": PsycopgRunner,
    "psycopg-pipeline": PsycopgPipelineRunner,
}


def print_grid(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Like :func:`print_table`, with columns: the first left-aligned, the rest right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "-" * (sum(widths) + 3 * (len(widths) - 1))

    def render(cells: Sequence[str]) -> str:
        first = f"{cells[0]:<{widths[0]}}"
        rest = (f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=True))
        return "   ".join([first, *rest])

    print(f"\n{title}")
    print(line)
    print(render(header))
    print(line)
    for row in rows:
        print(render(row))
    print(line)


async def run_all(args: argparse.Namespace, drivers: Sequence[str]) -> list[RunStats]:
    results: list[RunStats] = []
    for round_ in range(1, args.rounds + 1):
        for name in drivers:
            await prepare_database(args.dsn, args.executions)
            result = await RUNNERS[name](args).run(round_)
            steps = len(result.commits)
            print(
                f"  round {round_} {name:<16} {steps / result.seconds:8,.0f} steps/s"
                f"  ({result.seconds:.1f} s)",
                flush=True,
            )
            results.append(result)
    if not args.keep:
        await drop_schema(args.dsn)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--dsn", help="libpq URI or key=value string of a running server")
    where.add_argument(
        "--start-cluster",
        type=Path,
        metavar="DIR",
        help="start a durable (fsync on) server in DIR with tests/pgcluster.py, stop it after",
    )
    parser.add_argument("--executions", type=int, default=2_000)
    parser.add_argument("--steps", type=int, default=10, help="steps (transactions) each")
    parser.add_argument(
        "--workers", type=int, default=8, help="asyncio tasks, one pooled connection each"
    )
    parser.add_argument("--batch", type=int, default=16, help="executions per claim")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each driver, alternated")
    parser.add_argument(
        "--drivers",
        default=",".join(DRIVERS),
        help=f"comma-separated, run in this order each round (from {', '.join(DRIVERS)})",
    )
    parser.add_argument("--keep", action="store_true", help="leave the bench schema behind")
    args = parser.parse_args()
    drivers = [d.strip() for d in args.drivers.split(",") if d.strip()]
    unknown = sorted(set(drivers) - set(DRIVERS))
    if unknown:
        parser.error(f"unknown driver(s): {', '.join(unknown)}")

    if args.start_cluster is None:
        measure(args, drivers)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from pgcluster import PgCluster

    # durable: fsync and full_page_writes on; PostgreSQL's own sizes, not the tests' small ones
    cluster = PgCluster(
        args.start_cluster,
        durable=True,
        settings={"shared_buffers": "128MB", "max_wal_size": "1GB"},
    )
    try:
        args.dsn = cluster.start().dsn
        print(f"started {cluster!r}")
        measure(args, drivers)
    finally:
        cluster.close()  # stops the server; DIR and its cluster stay


def measure(args: argparse.Namespace, drivers: Sequence[str]) -> None:
    settings, args.postmaster = asyncio.run(server_settings(args.dsn))
    print(
        f"{args.executions:,} executions x {args.steps} steps (one transaction each),"
        f" {args.workers} workers with a pooled connection each, claim batch {args.batch}"
    )
    print("PostgreSQL " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print(
        f"asyncpg {asyncpg.__version__}, psycopg {psycopg.__version__}"
        f" (libpq {psycopg.pq.version()}, {psycopg.pq.__impl__}),"
        f" psycopg_pool {psycopg_pool.__version__}"
    )
    print(
        f"this machine: {os.cpu_count()} cores, shared by this process and a local server;"
        " the drivers alternate, each run on freshly truncated tables"
    )
    if args.postmaster is not None:
        print(f"server CPU read from postmaster pid {args.postmaster.pid} and its children")
    wall = time.perf_counter()
    results = asyncio.run(run_all(args, drivers))

    cores = os.cpu_count() or 1
    rows: list[list[str]] = []
    for r in results:
        steps = len(r.commits)
        ms = [c * 1000 for c in r.commits]
        claims_ms = [c * 1000 for c in r.claims]
        expected = (
            args.executions,
            args.executions * args.steps,
            args.executions * args.steps,
            2 * args.executions * args.steps,
            args.executions,
        )
        rows.append(
            [
                f"{r.driver} #{r.round}",
                fmt(steps / r.seconds),
                fmt(percentile(ms, 0.5), digits=2),
                fmt(percentile(ms, 0.99), digits=2),
                fmt(percentile(claims_ms, 0.5), digits=2),
                fmt(r.client_cpu / steps * 1e6),
                "n/a" if r.server_cpu is None else fmt(r.server_cpu / steps * 1e6),
                fmt(r.seconds, digits=1),
                fmt(100 * r.other_cpu / (r.seconds * cores)),
                "yes" if r.counts == expected else f"NO {r.counts}",
            ]
        )
    print_grid(
        "per run (steps/s = committed step transactions per second of wall time)",
        [
            "driver #round",
            "steps/s",
            "txn p50 ms",
            "txn p99 ms",
            "claim p50 ms",
            "client CPU us/step",
            "server CPU us/step",
            "wall s",
            "other CPU %",
            "rows ok",
        ],
        rows,
    )

    means = {
        d: sum(len(r.commits) / r.seconds for r in results if r.driver == d)
        / sum(r.driver == d for r in results)
        for d in drivers
    }
    base = means.get("asyncpg")
    print_table(
        "mean steps/s over the rounds" + (" (and vs asyncpg)" if base else ""),
        [
            (d, fmt(m) + (f"  ({m / base:.2f}x)" if base else ""))
            for d, m in sorted(means.items(), key=lambda kv: -kv[1])
        ],
    )
    print(
        "txn = one step's transaction, BEGIN to durable COMMIT, as the worker sees it."
        "\nserver CPU: our postmaster and its children (backends, WAL writer, checkpointer),"
        "\nn/a when the server is not on this machine. other CPU %: the machine's busy time"
        "\nnot spent in this process or that server (other load, kernel), as % of all cores."
    )
    print(f"\nwall time {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
