"""Worker crashes: real ``trilha worker`` processes, SIGKILLed while they work.

A SIGKILL cannot be simulated, so this scenario runs in real time: three worker
processes share the scenario's SQLite file; this process starts the
conversations, answers as the contacts and, every so often, kills one worker (the
seed picks which) and starts another in its place. The dependencies are the
run's gates and stand-ins, served from this process's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from trilha.chaos.contact import answer
from trilha.chaos.inject import FaultCounter
from trilha.chaos.scenarios import Scenario
from trilha.chaos.services import Services
from trilha.chaos.simulate import INSTITUTION, Run, Sample, ended_status
from trilha.config import Config
from trilha.core.faults import chance
from trilha.core.flow import Flow, QuestionNode
from trilha.engine.clock import SystemClock
from trilha.engine.engine import Engine
from trilha.errors import TrilhaError
from trilha.processors.registry import Processors
from trilha.store.base import ExecutionFilter
from trilha.store.sqlite import SQLiteStore

WORKERS = 3
#: how long each dependency call takes in this scenario (real seconds)
SLOW_SECONDS = 0.3
#: the longest the scenario may run before its executions are called unfinished
MAX_SECONDS = 600.0
#: real time a contact takes to answer (short: this scenario is about the workers)
THINK_SECONDS = (0.05, 0.5)


def _toml(config: Config) -> str:
    """The configuration the worker processes need: the dependencies (through the
    gates) and an in-memory channel."""
    lines = ['[channel]\nkind = "memory"\n']
    for name, dep in sorted(config.dependencies.items()):
        lines.append(f"[dependencies.{name}]")
        lines.append(f"base_url = {json.dumps(dep.base_url)}")
        lines.append(f"timeout_seconds = {dep.timeout_seconds}")
        if dep.headers:
            pairs = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in dep.headers.items())
            lines.append(f"headers = {{ {pairs} }}")
        lines.append("")
    return "\n".join(lines)


def _spawn(store_url: str, config_file: Path, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - closed with the process (below)
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from trilha.cli import main; main()",
                "worker",
                "--store",
                store_url,
                "--config",
                str(config_file),
                "--log-level",
                "WARN",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("TRILHA_")},
        )
    finally:
        out.close()


async def run_crashes(
    scenario: Scenario,
    *,
    flows: list[Flow],
    config: Config,
    services: Services,
    executions: int,
    concurrency: int,
    seed: int,
    folder: Path,
    on_progress: Callable[[int, int], None] | None = None,
) -> Run:
    every = scenario.plan.worker_kill_every_seconds or 3.0
    # slow answers: a worker holds its leases through each call, so a kill finds some
    for standin in services.standins.values():
        standin.delay_seconds = SLOW_SECONDS
    path = folder / f"{scenario.name}.db"
    # a SIGKILL loses no write the kernel took: flushing to the disk is not under test
    store = SQLiteStore(path, synchronous="OFF")
    await store.open()
    counts = FaultCounter()
    processors = Processors.from_entry_points()
    engine = Engine(store, processors=processors, config=config, clock=SystemClock())
    for flow in flows:
        await engine.publish(flow)
    config_file = folder / "trilha.toml"
    config_file.write_text(_toml(config), encoding="utf-8")
    url = f"sqlite:///{path}?synchronous=OFF"
    logs = [folder / f"worker-{n}.log" for n in range(WORKERS)]
    workers = [_spawn(url, config_file, log) for log in logs]
    spawned = WORKERS
    run = Run(scenario, store, [], counts, began=time.time())
    by_id = {f.id: f for f in flows}
    replied: set[tuple[str, str | None, int]] = set()
    due: dict[tuple[str, str | None, int], float] = {}
    next_kill = time.time() + every
    try:
        while True:
            now = time.time()
            states = await store.count_by_status(INSTITUTION)
            ended = sum(n for s, n in states.items() if ended_status(s))
            run.samples.append(Sample(now - run.began, states))
            if on_progress is not None:
                on_progress(ended, executions)
            if (
                len(run.started_ids) == executions
                and ended == executions
                and not (await store.queue_stats(now)).pending_outbox
            ):
                break
            if now - run.began > MAX_SECONDS:
                break  # what has not ended is measured as unfinished
            room = concurrency - (len(run.started_ids) - ended)
            while room > 0 and len(run.started_ids) < executions:
                i = len(run.started_ids)
                execution_id = f"{scenario.name}-{i:06d}"
                await engine.start(
                    flows[i % len(flows)].id,
                    institution_id=INSTITUTION,
                    conversation_id=execution_id,
                    contact_id=f"contact-{i:06d}",
                    variables={"customer": f"c{i:06d}"},
                    actor="chaos",
                    execution_id=execution_id,
                )
                run.started_ids.append(execution_id)
                room -= 1
            waiting = await store.list_executions(
                limit=executions,
                where=ExecutionFilter(institution_id=INSTITUTION, status="waiting_input"),
            )
            for ex in waiting:
                key = (ex.id, ex.current_node_id, ex.step_seq)
                if key in replied:
                    continue
                low, high = THINK_SECONDS
                when = due.setdefault(key, now + low + (high - low) * chance(seed, *key))
                node = by_id[ex.flow_id].node(ex.current_node_id or "")
                if when > now or not isinstance(node, QuestionNode):
                    continue
                with contextlib.suppress(TrilhaError):
                    await engine.send(
                        ex.id, answer(node), message_id=f"{ex.id}:{node.id}:{ex.step_seq}"
                    )
                replied.add(key)
            if now >= next_kill:
                next_kill = now + every
                victim = await _busiest(store, logs, seed, spawned, now)
                workers[victim].send_signal(signal.SIGKILL)
                workers[victim].wait()
                counts["worker_kill"] += 1
                logs[victim] = folder / f"worker-{spawned}.log"
                workers[victim] = _spawn(url, config_file, logs[victim])
                spawned += 1
            await asyncio.sleep(0.05)
    finally:
        run.ended = time.time()
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        await processors.aclose()
        for standin in services.standins.values():
            standin.delay_seconds = 0.0
    return run


async def _busiest(
    store: SQLiteStore, logs: list[Path], seed: int, spawned: int, now: float
) -> int:
    """The worker holding the most live leases (each worker names itself first thing
    in its log), or one the seed picks when none holds any."""
    held: dict[str, int] = {}
    for ex in await store.list_executions(
        limit=100_000, where=ExecutionFilter(institution_id=INSTITUTION)
    ):
        if ex.lease_owner is not None and (ex.lease_expires_at or 0) > now:
            held[ex.lease_owner] = held.get(ex.lease_owner, 0) + 1
    best, most = int(chance(seed, "kill", spawned) * len(logs)), 0
    for n, log in enumerate(logs):
        first = log.read_text(encoding="utf-8", errors="replace").split(" ", 1)[0]
        if held.get(first, 0) > most:
            best, most = n, held[first]
    return best
