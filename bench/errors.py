"""How fast the reads from an alert to its cause answer over a store of many steps.

    python bench/errors.py [--checkpoints 100000] [--error-share 0.1] [--repeat 20]
                           [--postgres] [--store-dir DIR]

Fills a store through ``commit_step`` (the engine's own write path, ten steps per
commit) with ``--checkpoints`` steps of executions spread over the last two hours,
three institutions, and ``--error-share`` of the steps failed in a handful of ways
(a 500 for one class of inputs, a timeout, an open breaker, a bad expression), then
times what ``GET /v1/errors`` and the listing behind a group read, each the median
of ``--repeat`` runs:

- ``error_groups`` over the default hour, for an admin (every institution) and for
  one institution, and narrowed to a flow;
- the first page (50) of a group's executions, and their failed steps;
- counts per outcome, for an admin and for one institution;
- on SQLite, for comparison, the same grouping computed the way the store would
  without ``step_errors``: reading each failed checkpoint's JSON.

SQLite with ``synchronous=FULL`` by default; ``--postgres`` runs the same on a
throwaway durable PostgreSQL cluster (``tests/pgcluster.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from _report import add_store_dir, drop_store_folder, fmt, print_table, store_folder
from trilha.core.execution import Checkpoint, Execution, Transition, checksum
from trilha.core.states import ExecutionStatus, Outcome
from trilha.store.base import ExecutionFilter, StepCommit, StepErrorMatch, Store
from trilha.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from pgcluster import PgCluster  # noqa: E402  (tests/pgcluster.py: the throwaway server)
from trilha.store.postgres import PostgresStore  # noqa: E402

S = ExecutionStatus
STEPS_PER_EXECUTION = 10
INSTITUTIONS = ("acme", "beta", "gama")
FLOWS = ("onboarding", "billing")
CRM = "http://crm.internal"


def failure(rng: random.Random) -> tuple[str, str, dict[str, Any]]:
    """A failed step's node, type and error, as the engine writes them: mostly a 500
    for codes starting with 9, then timeouts, the open breaker and a bad expression."""
    code = f"9{rng.randrange(10_000):04d}"
    roll = rng.random()
    request = f"GET {CRM}/customers/{code}"
    if roll < 0.6:
        details = {"status": 500, "dependency": "crm", "request": request}
        return "lookup", "http", _error("NodeError", f"{request} answered 500", "server", details)
    if roll < 0.8:
        details = {"kind": "timeout", "dependency": "crm", "request": request}
        return "lookup", "http", _error("NodeTimeout", f"{request} took >5s", "timeout", details)
    if roll < 0.95:
        details = {"dependency": "crm", "request": request, "retry_at": 0.0}
        message = "dependency 'crm' is unavailable (circuit open)"
        return (
            "lookup",
            "http",
            _error("DependencyUnavailable", message, "dependency_unavailable", details),
        )
    return "route", "condition", _error("ExpressionError", "unknown name 'x'", "validation", {})


def _error(kind_type: str, message: str, kind: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": kind_type,
        "message": message,
        "code": None,
        "details": details,
        "stack": None,
        "kind": kind,
    }


async def fill(store: Store, checkpoints: int, error_share: float, now: float) -> float:
    """Store ``checkpoints`` steps; the seconds it took."""
    rng = random.Random(22)
    executions = checkpoints // STEPS_PER_EXECUTION
    began = time.perf_counter()
    pending: list[Awaitable[None]] = []
    for n in range(executions):
        created = now - 7_200 + 7_200 * n / executions
        ex = Execution(
            id=f"ex-{n:07d}",
            institution_id=INSTITUTIONS[n % len(INSTITUTIONS)],
            conversation_id=f"conv-{n}",
            contact_id=f"contact-{n}",
            flow_id=f"{INSTITUTIONS[n % len(INSTITUTIONS)]}/{FLOWS[n % len(FLOWS)]}",
            flow_version=1,
            status=S.RUNNING,
            current_node_id="ask",
            variables={"name": "Ana"},
            created_at=created,
            updated_at=created,
            wake_at=created,
        )
        await store.create_execution(ex, Transition(ex.id, None, S.RUNNING, "started", created), [])
        claimed = await store.claim_due(
            "bench", now=created, lease_seconds=60, limit=1, execution_id=ex.id
        )
        ex = claimed[0].execution
        steps = []
        for seq in range(1, STEPS_PER_EXECUTION + 1):
            at = created + seq
            ex.step_seq = seq
            node, node_type, error = "ask", "question", None
            if rng.random() < error_share:
                node, node_type, error = failure(rng)
            state = ex.state_payload()
            steps.append(
                Checkpoint(
                    ex.id,
                    seq,
                    node,
                    node_type,
                    S.RUNNING,
                    state,
                    checksum(state),
                    at,
                    0.01,
                    input=None,
                    output={"ok": error is None},
                    error=error,
                )
            )
        ex.status = S.COMPLETED
        ex.outcome = Outcome.ESCALATED if rng.random() < 0.05 else Outcome.COMPLETED
        ex.ended_at = created + STEPS_PER_EXECUTION
        commit = StepCommit(dataclasses.replace(ex), "bench", ex.fencing_token, checkpoints=steps)
        pending.append(store.commit_step(commit, now=ex.ended_at))
        if len(pending) >= 64:  # concurrent commits share transactions (group commit)
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    return time.perf_counter() - began


async def median_ms(run: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = await run()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), result


def json_grouping(path: Path, since: float) -> Callable[[], Awaitable[Any]]:
    """The grouping read from each failed checkpoint's JSON (what ``step_errors`` spares)."""

    async def run() -> Any:
        def query() -> Any:
            with sqlite3.connect(path) as conn:
                return conn.execute(
                    "SELECT json_extract(c.state, '$.flow[0]'), c.node_id,"
                    " json_extract(c.error, '$.details.dependency'),"
                    " json_extract(c.error, '$.kind'), json_extract(c.error, '$.details.status'),"
                    " COUNT(*), COUNT(DISTINCT c.execution_id)"
                    " FROM checkpoints c WHERE c.started_at >= ? AND c.error IS NOT NULL"
                    " GROUP BY 1, 2, 3, 4, 5 ORDER BY 6 DESC",
                    (since,),
                ).fetchall()

        return await asyncio.to_thread(query)

    return run


async def measure(
    store: Store,
    args: argparse.Namespace,
    sqlite_path: Path | None,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> None:
    now = time.time()
    seconds = await fill(store, args.checkpoints, args.error_share, now)
    if settle is not None:
        await settle()
    since = now - 3_600
    rows = [
        ("checkpoints stored", fmt(args.checkpoints)),
        ("stored in", fmt(seconds, "s", 1)),
        ("steps/s stored", fmt(args.checkpoints / seconds)),
    ]
    admin_ms, groups = await median_ms(lambda: store.error_groups(since), args.repeat)
    failed_in_window = sum(g.count for g in groups)
    rows += [
        ("failed steps in the hour (all)", fmt(failed_in_window)),
        ("groups", fmt(len(groups))),
        ("error_groups, admin", fmt(admin_ms, "ms", 2)),
    ]
    tenant_ms, _ = await median_ms(
        lambda: store.error_groups(since, institution_id="acme"), args.repeat
    )
    flow_ms, _ = await median_ms(
        lambda: store.error_groups(since, institution_id="acme", flow_id="acme/onboarding"),
        args.repeat,
    )
    match = StepErrorMatch(
        since=since, node_id="lookup", kind="server", status=500, dependency="crm"
    )
    where = ExecutionFilter(institution_id="acme", flow_id="acme/onboarding", failed_step=match)
    page_ms, page = await median_ms(
        lambda: store.list_executions(limit=51, where=where), args.repeat
    )
    ids = [ex.id for ex in page[:50]]
    steps_ms, _ = await median_ms(lambda: store.failed_steps(ids, match), args.repeat)
    outcomes_ms, _ = await median_ms(store.count_by_outcome, args.repeat)
    tenant_outcomes_ms, _ = await median_ms(lambda: store.count_by_outcome("acme"), args.repeat)
    rows += [
        ("error_groups, one institution", fmt(tenant_ms, "ms", 2)),
        ("error_groups, one institution's flow", fmt(flow_ms, "ms", 2)),
        ("a group's first page of executions (50)", fmt(page_ms, "ms", 2)),
        ("their failed steps", fmt(steps_ms, "ms", 2)),
        ("count_by_outcome, admin", fmt(outcomes_ms, "ms", 2)),
        ("count_by_outcome, one institution", fmt(tenant_outcomes_ms, "ms", 2)),
    ]
    if sqlite_path is not None:
        json_ms, _ = await median_ms(json_grouping(sqlite_path, since), args.repeat)
        rows.append(("same grouping from checkpoints' JSON", fmt(json_ms, "ms", 2)))
    print_table(f"{store!r}, error share {args.error_share:.0%}", rows)


async def run(args: argparse.Namespace) -> None:
    if args.postgres:
        cluster = PgCluster(durable=True).start()
        try:
            cluster.create_database("bench")
            url = cluster.url("bench")
            store: Store = PostgresStore(url, auto_migrate=True)
            await store.open()

            async def analyze() -> None:
                """The planner's statistics, as autovacuum keeps them on a live database:
                without them, tables filled a moment ago read as empty and the listing
                behind a group probes an index per row (158 ms instead of a few)."""
                conn = await asyncpg.connect(url)
                try:
                    await conn.execute("ANALYZE")
                finally:
                    await conn.close()

            try:
                await measure(store, args, None, analyze)
            finally:
                await store.close()
        finally:
            cluster.close()
        return
    folder = store_folder(args.store_dir)
    path = folder / "errors.db"
    try:
        sqlite = SQLiteStore(path)
        await sqlite.open()
        try:
            await measure(sqlite, args, path)
        finally:
            await sqlite.close()
    finally:
        drop_store_folder(folder, args.store_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", type=int, default=100_000)
    parser.add_argument("--error-share", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--postgres", action="store_true")
    add_store_dir(parser)
    args = parser.parse_args()
    wall = time.perf_counter()
    asyncio.run(run(args))
    print(f"\nwall time {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
