"""Bulk actions over the real engine and SQLite store: a job pauses, resumes, cancels
and retries the executions its filter selects through the operator controls (audited,
with the job named in the reason), skips those the action does not apply to with the
reason, and a job stopped mid-way is taken over by another runner and acts on no
execution twice."""

from __future__ import annotations

import asyncio
from typing import Any

from trilha.config import Config, DependencyConfig
from trilha.core.states import ExecutionStatus
from trilha.engine.bulk import BulkRunner
from trilha.engine.operator import Operator
from trilha.store.base import BulkAction, BulkJob, ExecutionFilter

S = ExecutionStatus

ASK = {
    "id": "ask",
    "start": "name",
    "nodes": [
        {"id": "name", "type": "question", "text": "your name?", "variable": "name", "next": "bye"},
        {"id": "bye", "type": "end", "text": "thanks {{name}}"},
    ],
}
CALL = {
    "id": "call",
    "start": "call",
    "settings": {"fallback": {"timeoutSeconds": 86_400}},
    "nodes": [
        {
            "id": "call",
            "type": "http",
            "dependency": "svc",
            "url": "/data",
            "saveAs": "data",
            "retry": {
                "maxAttempts": 3,
                "initialIntervalSeconds": 600,
                "maxIntervalSeconds": 600,
                "jitter": False,
            },
            "next": "ok",
        },
        {"id": "ok", "type": "end", "text": "got {{data.value}}"},
    ],
}


def runner(h: Any, **kwargs: Any) -> BulkRunner:
    kwargs.setdefault("batch_size", 2)
    kwargs.setdefault("pause_seconds", 0)
    return BulkRunner(h.store, Operator(h.store, h.engine), **kwargs)


async def run_job(
    bulk: BulkRunner, action: BulkAction, where: ExecutionFilter, **given: Any
) -> BulkJob:
    started = await bulk.start(
        institution_id="inst-1",
        actor="key:abc",
        action=action,
        given=given,
        selection=where,
        reason="incident 42",
    )
    done = await bulk.run(started.id)
    assert done is not None
    return done


async def test_a_job_acts_on_its_selection_and_skips_the_rest(
    make_harness: Any, http_server: Any
) -> None:
    """Pause, resume, retry, cancel in turn over one institution's executions: each acts
    through the operator control (the history names the actor, the reason and the job),
    the others are skipped with the reason, another institution's are never touched."""
    http_server.route("GET", "/data", body={"value": 7})
    http_server.fail_first("GET", "/data", 5)
    h = make_harness(Config(dependencies={"svc": DependencyConfig(base_url=http_server.url)}))
    await h.publish(ASK)
    await h.publish(CALL)
    waiting = [(await h.start("ask", f"c{n}")).id for n in range(4)]
    backing_off = (await h.start("call", "c-call")).id
    other = (await h.start("ask", "c-other", institution_id="inst-2")).id
    await h.settle()
    assert (await h.get(backing_off)).status is S.RECOVERING
    operator = Operator(h.store, h.engine)
    await operator.cancel(waiting[0])
    await operator.pause(waiting[1])
    everyone = ExecutionFilter(institution_id="inst-1")

    paused = await run_job(runner(h), "pause", everyone)
    assert (paused.status, paused.total, paused.done) == ("completed", 5, 5)
    assert (paused.succeeded, paused.skipped, paused.failed) == (3, 2, 0)
    assert sorted((n["executionId"], n["reason"]) for n in paused.skips) == sorted(
        [(waiting[0], "it is cancelled"), (waiting[1], "it is paused")]
    )
    for eid in (*waiting[1:], backing_off):
        assert (await h.get(eid)).status is S.PAUSED
    assert (await h.get(other)).status is S.WAITING_INPUT
    (last,) = (await h.store.transitions(waiting[2]))[-1:]
    assert last.actor == "key:abc"
    assert last.reason == f"paused by an operator: incident 42 (bulk action {paused.id})"
    (audit,) = [r for r in await h.store.logs(waiting[2]) if r.message == "operator.pause"]
    assert audit.context["actor"] == "key:abc"

    only_paused = ExecutionFilter(institution_id="inst-1", status="paused")
    resumed = await run_job(runner(h), "resume", only_paused, status="paused")
    assert (resumed.total, resumed.succeeded, resumed.skipped) == (4, 4, 0)
    assert (await h.get(waiting[1])).status is S.WAITING_INPUT
    assert (await h.get(backing_off)).status is S.RUNNING  # paused from recovering

    await h.settle()  # the call fails again: recovering, waiting for its next attempt
    assert (await h.get(backing_off)).status is S.RECOVERING
    retried = await run_job(runner(h), "retry", everyone)
    assert (retried.succeeded, retried.skipped) == (1, 4)
    assert {n["reason"] for n in retried.skips} >= {
        "it is waiting_input; only a recovering execution waiting for its next attempt can"
        " be retried"
    }
    assert (await h.get(backing_off)).status is S.RUNNING

    cancelled = await run_job(runner(h), "cancel", everyone)
    assert (cancelled.succeeded, cancelled.skipped, cancelled.failed) == (4, 1, 0)
    for eid in (*waiting, backing_off):
        assert (await h.get(eid)).status.terminal, eid
    assert (await h.get(other)).status is S.WAITING_INPUT
    assert [j.id for j in await h.store.bulk_jobs(status="running")] == []


async def test_a_stopped_job_is_taken_over_and_acts_on_nothing_twice(harness: Any) -> None:
    """A runner stopped after three executions leaves its job running; another runner
    goes on after its cursor: every execution is paused once, the counts add up."""
    h = harness
    await h.publish(ASK)
    ids = [(await h.start("ask", f"c{n}")).id for n in range(7)]
    await h.settle()
    first = runner(h)
    started = await first.start(
        institution_id="inst-1",
        actor="cli:ana",
        action="pause",
        given={},
        selection=ExecutionFilter(institution_id="inst-1"),
        reason=None,
    )
    seen: list[int] = []

    def interrupt(job: BulkJob) -> None:
        seen.append(job.done)
        if job.done == 3:
            first.stop()

    stopped = await first.run(started.id, interrupt)
    assert stopped is not None and (stopped.status, stopped.done) == ("running", 3)
    assert seen == [0, 1, 2, 3]
    kept = await h.store.get_bulk_job(started.id)
    assert kept is not None and kept.done == 3 and kept.cursor == stopped.cursor
    h.clock.advance(1)  # the first runner declared itself stopped: its lease is free
    second = runner(h)
    finished = await second.run(started.id)
    assert finished is not None and finished.status == "completed"
    assert (finished.total, finished.done, finished.succeeded, finished.skipped) == (7, 7, 7, 0)
    for eid in ids:
        pauses = [r for r in await h.store.logs(eid) if r.message == "operator.pause"]
        assert len(pauses) == 1, eid
        assert (await h.get(eid)).status is S.PAUSED


async def test_the_serve_loop_takes_over_a_job_a_dead_process_left(harness: Any) -> None:
    """A job held by a process that died (its lease no longer renewed) is taken over by
    ``run_forever`` (``trilha serve``'s loop) once the lease runs out, and finished; the
    loop stops when told, declaring its owner stopped."""
    h = harness
    await h.publish(ASK)
    ids = [(await h.start("ask", f"c{n}")).id for n in range(3)]
    await h.settle()
    started = await runner(h).start(
        institution_id="inst-1",
        actor="key:abc",
        action="cancel",
        given={},
        selection=ExecutionFilter(institution_id="inst-1"),
        reason="INC-1",
    )
    dead = await h.store.claim_bulk_job("dead-process", now=h.clock.now(), lease_seconds=30)
    assert dead is not None and dead.id == started.id
    server = runner(h)
    stop = asyncio.Event()
    loop = asyncio.create_task(server.run_forever(stop))
    for _ in range(5):  # the loop looks, and leaves the job alone: its lease holds
        await asyncio.sleep(0)
    assert (await h.store.get_bulk_job(started.id)).done == 0  # type: ignore[union-attr]
    h.clock.advance(31)
    server.wake()
    for _ in range(500):
        job = await h.store.get_bulk_job(started.id)
        assert job is not None
        if job.status != "running":
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(loop, 10)
    assert (job.status, job.succeeded, job.total) == ("completed", 3, 3)
    for eid in ids:
        assert (await h.get(eid)).status is S.CANCELLED
