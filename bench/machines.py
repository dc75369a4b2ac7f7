"""Many machines on one PostgreSQL: steps/s per worker process, reply latency across
processes, and how soon a SIGKILLed worker's executions are taken over.

    python bench/machines.py [--store URL] [--executions 2000] [--nodes 10]
        [--conversations 300] [--rate 30] [--rounds 5] [--takeover-executions 60]
        [--slow-seconds 5] [--parts a,b,c]

Without ``--store`` it starts a throwaway PostgreSQL cluster of its own
(``tests/pgcluster.py``, durable: ``fsync`` on, PostgreSQL's defaults otherwise)
and removes it at the end; with ``--store URL`` it runs in that database (the
schema migrated first; each part keeps to executions of its own institution, so
earlier rows do no harm). Every process is a real ``trilha`` command, their
process log at WARN, the engine at its defaults (heartbeat 0.5 s, poll 0.2 s,
batch 64, lease 30 s):

a. **Steps/s.** ``--executions`` executions of ``--nodes`` pure nodes (set and
   message alternating, as ``bench/steps.py``; the channel is in-memory) are
   started through the library first (``runtime()`` + ``Engine.start``); then 1,
   and in a second run 3, ``trilha worker`` processes are spawned, and the run
   lasts until every execution completed (counted with SQL). Steps are checkpoint
   rows; the rate is over the store's own span (the first checkpoint's start to
   the last execution's end), the wall time from the spawn is printed beside it.
b. **Reply latency across processes.** ``trilha serve --workers 0`` (the API
   only) and 3 ``trilha worker`` processes, the channel a webhook to a receiver in
   this process. ``--conversations`` conversations are started through the API and
   each waits for the question; then one contact reply per conversation is POSTed
   at a steady ``--rate`` a second, and each latency runs from the POST until the
   bot's answer reaches the webhook (the API stores the reply and NOTIFYs; a worker
   in another process claims, runs and commits the step; a dispatcher POSTs it).
c. **Takeover after SIGKILL.** 3 workers run executions that sit in an ``http``
   node whose dependency (a server in this process, declared under
   ``[dependencies]``) answers after ``--slow-seconds``. Once every execution of the
   round is inside its call, the worker holding the most leases (``lease_owner``)
   is SIGKILLed, and for each execution it held, the time from the kill to its
   ``execution.taken_over`` trail line (``execution_logs.at``) is read back; the
   round waits for them all to complete and a new worker takes the dead one's
   place. ``--rounds`` rounds give p50/p99/max over every execution taken over.

Figures are printed, never asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import uvicorn

from _report import asgi_body, fmt, percentile, print_table
from steps import bench_flow

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from pgcluster import PgCluster  # noqa: E402  (tests/pgcluster.py: the throwaway server)
from trilha.core.flow import load_flow  # noqa: E402
from trilha.runtime import runtime  # noqa: E402

TRILHA = Path(sys.executable).parent / "trilha"
#: how long any one wait of the bench may take before it gives up
DEADLINE = 300.0


# ------------------------------------------------------------------------------- flows


def steps_flow(nodes: int) -> dict[str, Any]:
    """``bench/steps.py``'s flow (set and message alternating), under this bench's id."""
    return bench_flow(nodes) | {"id": "bench-machines-steps"}


ECHO = {
    "id": "bench-machines-echo",
    "start": "ask",
    "nodes": [
        {
            "id": "ask",
            "type": "question",
            "text": "Say something",
            "variable": "said",
            "next": "echo",
        },
        {"id": "echo", "type": "message", "text": "You said: {{said}}", "next": "bye"},
        {"id": "bye", "type": "end"},
    ],
}

SLOW = {
    "id": "bench-machines-slow",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "One moment...", "next": "lookup"},
        {
            "id": "lookup",
            "type": "http",
            "dependency": "slow",
            "method": "GET",
            "url": "/slow",
            "saveAs": "answer",
            "next": "done",
        },
        {"id": "done", "type": "message", "text": "Here it is.", "next": "bye"},
        {"id": "bye", "type": "end"},
    ],
}


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    err: Path
    worker_id: str | None = None

    def tail(self, lines: int = 15) -> str:
        text = self.err.read_text(errors="replace") if self.err.exists() else ""
        return f"--- {self.name} stderr\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class Fleet:
    """The ``trilha`` processes of a run: output in files of a temp folder, all of them
    ended at the close."""

    folder: Path
    store: str
    procs: list[Proc] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRILHA_")}
        env.update({"NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1"})
        return env

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [str(TRILHA), *args, "--store", self.store],
            cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"trilha {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def spawn(self, name: str, *args: str, config: Path) -> Proc:
        err = self.folder / f"{name}.err"
        with err.open("wb") as stderr:
            popen = subprocess.Popen(
                [str(TRILHA), *args, "--store", self.store, "--config", str(config),
                 "--log-level", "warn"],
                cwd=self.folder, env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        proc = Proc(name, popen, err)
        self.procs.append(proc)
        return proc

    async def worker(self, name: str, config: Path) -> Proc:
        """A ``trilha worker``, once it printed its id (``worker-... on PostgresStore``)."""
        proc = self.spawn(name, "worker", config=config)

        async def started() -> bool:
            found = re.search(r"(worker-\w+) on ", proc.err.read_text(errors="replace"))
            if found:
                proc.worker_id = found.group(1)
            elif proc.popen.poll() is not None:
                raise RuntimeError(f"{name} exited\n{proc.tail()}")
            return found is not None

        await until(f"{name} to start", started, 60)
        return proc

    def stop(self, proc: Proc, sig: int = signal.SIGTERM) -> None:
        if proc.popen.poll() is None:
            proc.popen.send_signal(sig)
            try:
                proc.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        self.procs.clear()

    def tails(self) -> str:
        return "\n".join(p.tail() for p in self.procs)


async def until(what: str, predicate: Callable[[], Awaitable[bool]], within: float) -> None:
    """Poll ``predicate`` every 20 ms until it holds; give up after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {within:g}s waiting for {what}")
        await asyncio.sleep(0.02)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text + '\n[logging]\nlevel = "warn"\n', encoding="utf-8")
    return path


async def start_executions(
    store: str, config: Path, flow: dict[str, Any], institution: str, count: int
) -> list[str]:
    """Publish ``flow`` and start ``count`` executions through the library."""
    async with runtime(store, config) as rt:
        await rt.engine.publish(load_flow(flow, rt.engine.processors.node_types))
        ids: list[str] = []
        for first in range(0, count, 50):
            started = await asyncio.gather(
                *(
                    rt.engine.start(
                        flow["id"],
                        institution_id=institution,
                        conversation_id=f"{institution}-{i}",
                        contact_id=f"c{i}",
                        variables={"contact": f"c{i}"},
                        actor="bench",
                    )
                    for i in range(first, min(first + 50, count))
                )
            )
            ids += [ex.id for ex in started]
        return ids


class Sql:
    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> Sql:
        self.conn = await asyncpg.connect(self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def rows(self, query: str, *args: Any) -> list[asyncpg.Record]:
        assert self.conn is not None
        return list(await self.conn.fetch(query, *args))

    async def value(self, query: str, *args: Any) -> Any:
        assert self.conn is not None
        return await self.conn.fetchval(query, *args)


# ------------------------------------------------------------------------ a. steps/s


async def bench_steps(args: argparse.Namespace, fleet: Fleet, workers: int) -> dict[str, Any]:
    institution = f"steps{workers}-{uuid.uuid4().hex[:6]}"
    config = write_config(fleet.folder / f"steps{workers}.toml", '[channel]\nkind = "memory"\n')
    began = time.perf_counter()
    await start_executions(
        fleet.store, config, steps_flow(args.nodes), institution, args.executions
    )
    start_seconds = time.perf_counter() - began
    async with Sql(fleet.store) as sql:
        spawned = time.time()
        procs = [
            fleet.spawn(f"steps{workers}-{n}", "worker", config=config) for n in range(workers)
        ]

        async def completed() -> bool:
            for proc in procs:
                if proc.popen.poll() is not None:
                    raise RuntimeError(f"{proc.name} exited\n{proc.tail()}")
            done = await sql.value(
                "SELECT COUNT(*) FROM executions"
                " WHERE institution_id = $1 AND status = 'completed'",
                institution,
            )
            return bool(done == args.executions)

        await until("every execution to complete", completed, DEADLINE)
        wall = time.time() - spawned

        async def drained() -> bool:
            pending = await sql.value(
                "SELECT COUNT(*) FROM outbox WHERE institution_id = $1 AND status != 'sent'",
                institution,
            )
            return bool(pending == 0)

        await until("the outbox to drain", drained, DEADLINE)
        drained_after = time.time() - spawned
        steps, first_step = (
            await sql.rows(
                "SELECT COUNT(*), MIN(c.started_at) FROM checkpoints c"
                " JOIN executions e ON e.id = c.execution_id WHERE e.institution_id = $1",
                institution,
            )
        )[0]
        last_end = await sql.value(
            "SELECT MAX(ended_at) FROM executions WHERE institution_id = $1", institution
        )
    for proc in procs:
        fleet.stop(proc)
    span = last_end - first_step
    return {
        "workers": workers,
        "steps": steps,
        "start_seconds": start_seconds,
        "span": span,
        "wall": wall,
        "ready_after": first_step - spawned,
        "drained": drained_after,
    }


# ------------------------------------------------------------------- b. reply latency


class Webhook:
    """The platform's webhook: the bot's messages arrive here (ASGI, in this loop)."""

    def __init__(self) -> None:
        self.arrived: dict[tuple[str, str], float] = {}
        self.waiters: dict[tuple[str, str], asyncio.Future[float]] = {}
        self.posts = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await asgi_body(receive)
        at = time.perf_counter()
        data = json.loads(body)
        self.posts += 1
        key = (data["conversationId"], data["text"])
        self.arrived.setdefault(key, at)
        waiter = self.waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(at)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def wait(self, conversation: str, text: str, within: float = 60) -> float:
        """When ``text`` arrived for ``conversation`` (perf_counter)."""
        key = (conversation, text)
        if key in self.arrived:
            return self.arrived[key]
        waiter = self.waiters.setdefault(key, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(waiter), within)


@contextlib.asynccontextmanager
async def asgi_server(app: Any, port: int) -> Any:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    try:

        async def started() -> bool:
            return bool(server.started)

        await until("a local server", started, 30)
        yield server
    finally:
        server.should_exit = True
        await task


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any], key: str) -> int:
    """POST, retried on a transient answer with the same Idempotency-Key; the status."""
    for attempt in range(20):
        with contextlib.suppress(httpx.TransportError):
            answer = await client.post(path, json=body, headers={"Idempotency-Key": key})
            if answer.status_code < 500 and answer.status_code != 429:
                return answer.status_code
        await asyncio.sleep(0.05 * 2 ** min(attempt, 5))
    raise RuntimeError(f"POST {path} kept failing")


async def bench_replies(args: argparse.Namespace, fleet: Fleet) -> dict[str, Any]:
    institution = f"replies-{uuid.uuid4().hex[:6]}"
    hook, api_port = Webhook(), free_port()
    hook_port = free_port()
    config = write_config(
        fleet.folder / "replies.toml",
        f'[channel]\nkind = "webhook"\nurl = "http://127.0.0.1:{hook_port}/hook"\n\n'
        "[api]\nrate_limit_per_second = 100000\nrate_limit_burst = 100000\n",
    )
    flows = fleet.folder / "replies-flows"
    flows.mkdir(exist_ok=True)
    (flows / "echo.json").write_text(json.dumps(ECHO), encoding="utf-8")
    key = fleet.run("keys", "create", "--institution", institution).strip().splitlines()[-1]
    latencies: list[float] = []
    answers: list[float] = []
    statuses: dict[int, int] = {}
    async with asgi_server(hook, hook_port):
        api = fleet.spawn(
            "replies-serve", "serve", "--port", str(api_port), "--workers", "0",
            "--flows", str(flows), config=config,
        )  # fmt: skip
        procs = [api] + [await fleet.worker(f"replies-worker{n}", config) for n in range(3)]
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{api_port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
            limits=httpx.Limits(max_connections=args.conversations + 10),
        ) as client:

            async def ready() -> bool:
                if api.popen.poll() is not None:
                    raise RuntimeError(f"trilha serve exited\n{api.tail()}")
                with contextlib.suppress(httpx.TransportError):
                    return (await client.get("/readyz")).status_code == 200
                return False

            await until("trilha serve", ready, 60)
            slots = asyncio.Semaphore(20)

            async def open_conversation(i: int) -> None:
                async with slots:
                    body = {"flowId": ECHO["id"], "conversationId": f"b{i}", "contactId": f"c{i}"}
                    status = await post(client, "/v1/executions", body, f"start-b{i}")
                    assert status == 201, status
                await hook.wait(f"b{i}", "Say something")

            await asyncio.gather(*(open_conversation(i) for i in range(args.conversations)))

            async def reply(i: int, at: float) -> None:
                await asyncio.sleep(max(0.0, at - time.perf_counter()))
                sent = time.perf_counter()
                body = {"messageId": f"m-b{i}", "contactId": f"c{i}", "text": f"hello {i}"}
                status = await post(
                    client, "/v1/conversations/b" + str(i) + "/messages", body, f"m-b{i}"
                )
                answers.append(time.perf_counter() - sent)
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(await hook.wait(f"b{i}", f"You said: hello {i}") - sent)

            t0 = time.perf_counter() + 0.2
            began = time.perf_counter()
            await asyncio.gather(*(reply(i, t0 + i / args.rate) for i in range(args.conversations)))
            elapsed = time.perf_counter() - began
        for proc in procs:
            fleet.stop(proc)
    return {
        "latencies": latencies,
        "answers": answers,
        "statuses": statuses,
        "elapsed": elapsed,
        "posts": hook.posts,
    }


# -------------------------------------------------------------------- c. takeover time


class SlowDependency:
    """Answers ``GET /slow`` after ``seconds``; counts the calls in flight."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.in_flight = 0
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        self.in_flight += 1
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.in_flight -= 1
        body = b'{"ok": true}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def bench_takeover(args: argparse.Namespace, fleet: Fleet) -> dict[str, Any]:
    dependency, port = SlowDependency(args.slow_seconds), free_port()
    config = write_config(
        fleet.folder / "takeover.toml",
        '[channel]\nkind = "memory"\n\n'
        f'[dependencies.slow]\nbase_url = "http://127.0.0.1:{port}"\n'
        f"timeout_seconds = {args.slow_seconds + 30:g}\n",
    )
    rounds: list[dict[str, Any]] = []
    async with asgi_server(dependency, port), Sql(fleet.store) as sql:
        workers = [await fleet.worker(f"takeover-worker{n}", config) for n in range(3)]
        for n in range(args.rounds):
            rounds.append(await takeover_round(args, fleet, sql, dependency, workers, config))
            # the dead worker's place is taken by a new one for the next round
            workers.append(await fleet.worker(f"takeover-worker{3 + n}", config))
        for proc in workers:
            fleet.stop(proc)
    return {
        "delays": [d for r in rounds for d in r["delays"]],
        "rounds": rounds,
        "calls": dependency.calls,
    }


async def takeover_round(
    args: argparse.Namespace,
    fleet: Fleet,
    sql: Sql,
    dependency: SlowDependency,
    workers: list[Proc],
    config: Path,
) -> dict[str, Any]:
    """Start a round's executions, SIGKILL the worker holding the most once all sit in
    their call, time each takeover, wait for the round to complete. The victim leaves
    ``workers``."""
    institution = f"takeover-{uuid.uuid4().hex[:6]}"
    ids = await start_executions(fleet.store, config, SLOW, institution, args.takeover_executions)

    async def all_calling() -> bool:
        return dependency.in_flight >= len(ids)

    await until("every execution inside its http call", all_calling, 60)
    held_by = {
        r[0]: r[1]
        for r in await sql.rows(
            "SELECT lease_owner, COUNT(*) FROM executions"
            " WHERE institution_id = $1 AND lease_owner IS NOT NULL GROUP BY 1",
            institution,
        )
    }
    victim = max(workers, key=lambda w: held_by.get(w.worker_id, 0))
    victim.popen.send_signal(signal.SIGKILL)
    killed_at = time.time()
    victim.popen.wait(timeout=10)
    workers.remove(victim)
    held = [
        r[0]
        for r in await sql.rows(
            "SELECT id FROM executions WHERE institution_id = $1 AND lease_owner = $2",
            institution,
            victim.worker_id,
        )
    ]
    taken: dict[str, float] = {}

    async def taken_over() -> bool:
        for r in await sql.rows(
            "SELECT execution_id, at, context FROM execution_logs"
            " WHERE message = 'execution.taken_over' AND execution_id = ANY($1::text[])",
            held,
        ):
            if json.loads(r[2]).get("previousOwner") == victim.worker_id:
                taken.setdefault(r[0], r[1])
        return len(taken) == len(held)

    await until("the takeovers", taken_over, 60)
    delays = [at - killed_at for at in taken.values()]

    async def completed() -> bool:
        done = await sql.value(
            "SELECT COUNT(*) FROM executions WHERE institution_id = $1 AND status = 'completed'",
            institution,
        )
        return bool(done == len(ids))

    await until("the round's executions to complete", completed, args.slow_seconds * 4 + 60)
    return {
        "held": len(held),
        "spread": sorted(held_by.values(), reverse=True),
        "delays": delays,
        "min": min(delays, default=float("nan")),
        "max": max(delays, default=float("nan")),
    }


# ------------------------------------------------------------------------------- main


async def server_facts(store: str) -> dict[str, str]:
    conn = await asyncpg.connect(store)
    try:
        facts = {"version": str(await conn.fetchval("SHOW server_version"))}
        for name in ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers"):
            facts[name] = str(await conn.fetchval(f"SHOW {name}"))
        return facts
    finally:
        await conn.close()


async def run(args: argparse.Namespace, store: str, folder: Path) -> None:
    fleet = Fleet(folder, store)
    print(fleet.run("migrate").strip())
    facts = await server_facts(store)
    print(
        f"machine: {os.cpu_count()} logical cores ({psutil.cpu_count(logical=False)} physical),"
        f" {psutil.virtual_memory().total / 2**30:.1f} GiB; Python {sys.version.split()[0]}"
    )
    print(
        f"PostgreSQL {facts['version']} (fsync={facts['fsync']},"
        f" synchronous_commit={facts['synchronous_commit']},"
        f" full_page_writes={facts['full_page_writes']}, shared_buffers={facts['shared_buffers']})"
        f" on the same machine"
    )
    print(
        "engine defaults: heartbeat 0.5 s (a worker silent 3 beats loses its leases),"
        " poll 0.2 s, batch 64, lease 30 s; process logs at WARN"
    )
    try:
        if "a" in args.parts:
            runs = [await bench_steps(args, fleet, n) for n in (1, 3)]
            rows: list[tuple[str, str]] = [
                ("executions x nodes", f"{args.executions:,} x {args.nodes}"),
                ("started through the library in", fmt(runs[0]["start_seconds"], "s", 1)),
            ]
            for r in runs:
                w = f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}"
                rows += [
                    (f"{w}: durable steps (checkpoint rows)", fmt(r["steps"])),
                    (f"{w}: steps/s (first step -> last end)", fmt(r["steps"] / r["span"])),
                    (f"{w}: executions/s", fmt(args.executions / r["span"])),
                    (f"{w}: first step after spawn", fmt(r["ready_after"], "s", 2)),
                    (f"{w}: all completed after spawn", fmt(r["wall"], "s", 2)),
                    (f"{w}: outbox drained after spawn", fmt(r["drained"], "s", 2)),
                ]
            rows.append(("3 workers vs 1", f"{runs[0]['span'] / runs[1]['span']:.2f}x"))
            print_table("a. steps/s on PostgreSQL, trilha worker processes", rows)
        if "b" in args.parts:
            r = await bench_replies(args, fleet)
            ms = [x * 1000 for x in r["latencies"]]
            answers = [x * 1000 for x in r["answers"]]
            print_table(
                "b. reply latency: POST to the API -> bot answer at the webhook"
                " (serve --workers 0 + 3 workers)",
                [
                    ("replies (one per conversation)", fmt(len(ms))),
                    ("offered rate", fmt(args.rate, "/s", 1)),
                    ("achieved rate", fmt(len(ms) / r["elapsed"], "/s", 1)),
                    ("latency p50", fmt(percentile(ms, 0.5), "ms", 1)),
                    ("latency p90", fmt(percentile(ms, 0.9), "ms", 1)),
                    ("latency p99", fmt(percentile(ms, 0.99), "ms", 1)),
                    ("latency max", fmt(max(ms, default=float("nan")), "ms", 1)),
                    ("POST answered (202): p50", fmt(percentile(answers, 0.5), "ms", 1)),
                    ("POST answered (202): p99", fmt(percentile(answers, 0.99), "ms", 1)),
                    ("answers by status", str(r["statuses"])),
                    ("webhook POSTs received", fmt(r["posts"])),
                ],
            )
        if "c" in args.parts:
            r = await bench_takeover(args, fleet)
            delays = [d * 1000 for d in r["delays"]]
            nan = float("nan")
            rows = [
                ("rounds x executions", f"{args.rounds} x {args.takeover_executions}"),
                ("dependency answers after", fmt(args.slow_seconds, "s", 1)),
                ("executions taken over", fmt(len(delays))),
                ("SIGKILL -> execution.taken_over min", fmt(min(delays, default=nan), "ms")),
                ("SIGKILL -> execution.taken_over p50", fmt(percentile(delays, 0.5), "ms")),
                ("SIGKILL -> execution.taken_over p99", fmt(percentile(delays, 0.99), "ms")),
                ("SIGKILL -> execution.taken_over max", fmt(max(delays, default=nan), "ms")),
                ("calls the dependency received", fmt(r["calls"])),
            ]
            for n, rd in enumerate(r["rounds"]):
                rows.append(
                    (
                        f"round {n + 1}: killed held / leases per worker",
                        f"{rd['held']} / {rd['spread']}; {rd['min']:.2f}-{rd['max']:.2f} s",
                    )
                )
            print_table("c. takeover after SIGKILL (3 workers, default heartbeat)", rows)
            print(
                "a round's executions are claimed back together (one claim), so the figures"
                "\nspread across rounds: where the kill fell between two heartbeats, and the poll."
            )
    except BaseException:
        print(fleet.tails(), file=sys.stderr)
        raise
    finally:
        fleet.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", default=None, help="postgresql://... (default: a throwaway durable cluster)"
    )
    parser.add_argument("--executions", type=int, default=2_000, help="a: executions per run")
    parser.add_argument("--nodes", type=int, default=10, help="a: set/message nodes per execution")
    parser.add_argument("--conversations", type=int, default=300, help="b: conversations")
    parser.add_argument("--rate", type=float, default=30.0, help="b: replies posted per second")
    parser.add_argument("--rounds", type=int, default=5, help="c: SIGKILL rounds")
    parser.add_argument(
        "--takeover-executions", type=int, default=60, help="c: executions per round"
    )
    parser.add_argument(
        "--slow-seconds", type=float, default=5.0, help="c: the dependency's answer time"
    )
    parser.add_argument("--parts", default="a,b,c", help="which parts to run (a,b,c)")
    args = parser.parse_args()
    args.parts = set(args.parts.split(","))

    folder = Path(tempfile.mkdtemp(prefix="trilha-bench-machines-"))
    cluster = None
    wall = time.perf_counter()
    try:
        store = args.store
        if store is None:
            cluster = PgCluster(durable=True).start()
            cluster.create_database("bench")
            store = cluster.url("bench")
        print(f"store: {store}")
        asyncio.run(run(args, store, folder))
    finally:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\nwall time {time.perf_counter() - wall:.1f} s")


if __name__ == "__main__":
    main()
