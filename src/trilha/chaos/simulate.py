"""A scenario as a deterministic simulation: the real engine, store and dependencies,
on a fake clock that jumps to the next thing that can happen.

One worker runs one execution at a time (``batch_size = 1``), so nothing depends
on how threads or sockets happen to interleave; every fault is decided by the
seed (:mod:`trilha.core.faults`); execution ids, contacts and their answers are
fixed by the scenario and the seed. Time only moves when the worker is idle: to
the next wake time, reply, outage boundary or sweep. So an hour of conversations
runs in seconds, and a seed replays the same history (its digest says so).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trilha.channels.memory import MemoryChannel
from trilha.chaos.contact import answer, think_seconds
from trilha.chaos.inject import FaultCounter, faulty_processor, faulty_store
from trilha.chaos.scenarios import Scenario
from trilha.chaos.services import Services
from trilha.config import Config, EngineConfig
from trilha.core.faults import chance
from trilha.core.flow import Flow, QuestionNode
from trilha.core.states import TERMINAL, ExecutionStatus
from trilha.engine.clock import FakeClock
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.engine.sweeper import Sweeper
from trilha.engine.worker import Worker
from trilha.errors import StoreError, TrilhaError
from trilha.processors.base import Processor
from trilha.processors.registry import Processors
from trilha.store.base import Store
from trilha.store.sqlite import SQLiteStore

#: the simulation's epoch (any fixed instant: histories compare equal across runs)
T0 = 1_800_000_000.0
#: the tenant every chaos execution belongs to
INSTITUTION = "chaos"
#: a simulated run that has not finished by then is stopped (its executions reported
#: as unfinished)
MAX_SIMULATED_SECONDS = 6 * 3600.0
SWEEP_SECONDS = 30.0
SAMPLE_SECONDS = 5.0


@dataclass(slots=True)
class Sample:
    """The executions by state at one moment of the run."""

    at: float
    states: dict[str, int]


@dataclass(slots=True)
class Run:
    """What a scenario left behind, for the measurements: its store and its record."""

    scenario: Scenario
    store: Store
    started_ids: list[str]
    faults: FaultCounter
    samples: list[Sample] = field(default_factory=list)
    began: float = T0
    ended: float = T0
    #: (execution id, kind) of every corruption written
    corrupted: list[tuple[str, str]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.ended - self.began


def garbage(seed: int, execution_id: str, target: str) -> str:
    """What a corruption writes: not JSON where JSON is expected, a node no flow has."""
    n = int(chance(seed, "garbage", execution_id) * 1e6)
    if target == "current_node":
        return f"no-such-node-{n}"
    return f'{{"garbled": {n}, \x00'


async def simulate(
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
    """Run ``scenario`` to its end (every execution terminal, or the time limit)."""
    plan = scenario.plan
    clock = FakeClock(T0)
    counts = FaultCounter()
    # no fsync: what is under test is the engine, not the disk (nothing here crashes
    # the machine), and a simulated hour must not wait on real disk flushes
    real = SQLiteStore(folder / f"{scenario.name}.db", synchronous="OFF")
    await real.open()
    store = faulty_store(real, plan, seed, clock, T0, counts, time_passes=False)
    cfg = config.model_copy(
        update={
            "engine": EngineConfig.model_validate({**config.engine.model_dump(), "batch_size": 1}),
        }
    )

    def wrap(processor: Processor) -> Processor:
        return faulty_processor(processor, plan, seed, clock, counts, time_passes=False)

    processors = Processors.from_entry_points().wrapped(wrap)
    engine = Engine(
        store,
        processors=processors,
        config=cfg,
        clock=clock,
        worker_id=f"chaos-{scenario.name}",
        rng=random.Random(seed),
    )
    dispatcher = Dispatcher(
        store,
        MemoryChannel(),
        clock=clock,
        dispatcher_id=f"chaos-dispatch-{scenario.name}",
        lease_seconds=cfg.engine.lease_seconds,
    )
    worker = Worker(engine, dispatcher)
    sweeper = Sweeper(store, clock)
    run = Run(scenario, real, [], counts)
    by_id = {f.id: f for f in flows}
    for flow in flows:
        await engine.publish(flow)
    ids = [f"{scenario.name}-{i:06d}" for i in range(executions)]
    scheduled: dict[tuple[str, str | None, int], float] = {}
    answered: set[tuple[str, str | None, int]] = set()
    asked: dict[tuple[str, str | None, int], str] = {}
    #: replies scheduled and not yet sent, by when they are due
    pending: dict[tuple[str, str | None, int], float] = {}
    corrupted: set[str] = set()
    poll = cfg.engine.poll_interval_seconds
    backoff = poll
    next_sweep = T0 + SWEEP_SECONDS
    next_sample = T0
    position = await real.last_trail_id()
    ended_ids: set[str] = set()
    #: each execution's status as the trail last told it (the timeline's samples)
    status_of: dict[str, str] = {}
    try:
        while True:
            now = clock.now()
            downs = await services.apply(plan, now - T0)
            if downs:
                counts["dependency_down"] += downs
            # what moved since the last look (the trail says it, without reading every
            # execution at every instant): who ended, who waits for an answer
            moved = await real.trail_since(position, limit=1_000_000, institution_id=INSTITUTION)
            if moved:
                position = moved[-1].id
            for event in moved:
                status_of[event.record.execution_id] = event.status
                if event.record.message == "execution.ended":
                    ended_ids.add(event.record.execution_id)
            # new conversations: `concurrency` at a time (or all at once: overload)
            active = len(run.started_ids) - len(ended_ids)
            room = executions if plan.overload else concurrency - active
            while room > 0 and len(run.started_ids) < executions:
                i = len(run.started_ids)
                flow = flows[i % len(flows)]
                try:
                    await engine.start(
                        flow.id,
                        institution_id=INSTITUTION,
                        conversation_id=ids[i],
                        contact_id=f"contact-{i:06d}",
                        variables={"customer": f"c{i:06d}"},
                        actor="chaos",
                        execution_id=ids[i],
                    )
                except StoreError:
                    break  # the store is away: the platform tries again later
                run.started_ids.append(ids[i])
                room -= 1
            # the contacts read what they were asked, and answer after a while
            waiting = []
            for execution_id in dict.fromkeys(
                e.record.execution_id for e in moved if e.status == "waiting_input"
            ):
                with contextlib.suppress(TrilhaError):  # a corrupted row: asked already
                    ex = await real.get_execution(execution_id)
                    if ex.status is ExecutionStatus.WAITING_INPUT:
                        waiting.append(ex)
            for ex in waiting:
                key = (ex.id, ex.current_node_id, ex.step_seq)
                if key not in scheduled:
                    scheduled[key] = pending[key] = now + think_seconds(
                        seed, ex.id, ex.current_node_id or "", ex.step_seq
                    )
                    asked[key] = ex.flow_id
                target = plan.corrupts(seed, ex.id) if ex.id not in corrupted else None
                if target is not None:
                    corrupted.add(ex.id)
                    if await real.tamper(ex.id, target, garbage(seed, ex.id, target)):
                        counts["corruption"] += 1
                        run.corrupted.append((ex.id, target))
            # a contact answers what it was asked, whatever the store thinks of the row
            for key, due in list(pending.items()):
                if due > now:
                    continue
                execution_id, node_id, seq = key
                node = by_id[asked[key]].node(node_id or "")
                if not isinstance(node, QuestionNode):
                    answered.add(key)
                    del pending[key]
                    continue
                try:
                    await engine.send(
                        execution_id, answer(node), message_id=f"{execution_id}:{node.id}:{seq}"
                    )
                except StoreError:
                    continue  # refused while the store is away: sent again later
                except TrilhaError:
                    pass  # the execution ended meanwhile
                answered.add(key)
                del pending[key]
            if now >= next_sweep:
                next_sweep = now + SWEEP_SECONDS
                with contextlib.suppress(StoreError):
                    await sweeper.sweep()
            if now >= next_sample:
                next_sample = now + SAMPLE_SECONDS
                run.samples.append(Sample(now - T0, dict(Counter(status_of.values()))))
                if on_progress is not None:
                    ended = sum(n for s, n in run.samples[-1].states.items() if ended_status(s))
                    on_progress(ended, executions)
            # everything due at this instant, then look again before time moves on
            worked = 0
            while (done := await worker.step()) is not None and done:
                worked += done
            if done is None:  # the store failed: back off on the simulated clock
                clock.advance(backoff)
                backoff = min(backoff * 2, worker.max_backoff_seconds)
                continue
            backoff = poll
            if worked:
                continue
            finished = len(ended_ids)
            if finished >= executions:  # confirmed by the store before the run stops
                states = await real.count_by_status(INSTITUTION)
                finished = sum(n for s, n in states.items() if ended_status(s))
            stats = await real.queue_stats(now)
            if (
                len(run.started_ids) == executions
                and finished == executions
                and not stats.pending_outbox
            ):
                break
            if now - T0 > MAX_SIMULATED_SECONDS:
                break  # what has not ended is measured as unfinished
            moments = [
                stats.next_wake_at,
                *pending.values(),
                next_sweep,
                None if (change := plan.next_change(now - T0)) is None else T0 + change,
            ]
            later = [m for m in moments if m is not None and m > now]
            clock.advance((min(later) if later else now + 60.0) - now)
    finally:
        if on_progress is not None:
            on_progress(len(ended_ids), executions)
        run.ended = clock.now()
        run.samples.append(Sample(run.ended - T0, await real.count_by_status(INSTITUTION)))
        await processors.aclose()
    return run


def ended_status(status: str) -> bool:
    """Whether a stored status is terminal (an unknown one is not)."""
    try:
        return ExecutionStatus(status) in TERMINAL
    except ValueError:
        return False


async def digest(store: Store, ids: list[str]) -> str:
    """A fingerprint of every execution's history: its states, steps and messages, in
    simulated time. Two runs of one seed give the same; a replay is checked by it."""
    h = hashlib.sha256()
    for execution_id in sorted(ids):
        h.update(execution_id.encode())
        for t in await store.transitions(execution_id):
            source = t.source.value if t.source else "-"
            h.update(f"|{source}>{t.target.value}@{t.node_id}:{t.at:.3f}".encode())
        for c in await store.checkpoints(execution_id):
            failed = (c.error or {}).get("type") if isinstance(c.error, dict) else None
            h.update(f"|{c.seq}:{c.node_id}:{c.status.value}:{failed}".encode())
        for m in await store.outbox_for(execution_id):
            h.update(f"|>{m.text}".encode())
        try:
            ex = await store.get_execution(execution_id)
            h.update(f"|={ex.status.value}:{ex.outcome}".encode())
        except TrilhaError as exc:
            h.update(f"|!{type(exc).__name__}".encode())
    return h.hexdigest()


def timeline(run: Run, buckets: int = 100) -> list[dict[str, Any]]:
    """The samples, at most ``buckets`` of them, with the executions that ended since
    the previous one (the report's state and throughput charts)."""
    samples = run.samples
    if len(samples) > buckets:
        step = len(samples) / buckets
        samples = [samples[int(i * step)] for i in range(buckets)] + [samples[-1]]
    out: list[dict[str, Any]] = []
    previous = 0
    for sample in samples:
        ended = sum(n for s, n in sample.states.items() if ended_status(s))
        out.append(
            {
                "t": round(sample.at, 3),
                "states": dict(sorted(sample.states.items())),
                "completedInBucket": max(0, ended - previous),
            }
        )
        previous = ended
    return out
