"""The sweeper over the real engine and SQLite store: lost timers are found and moved on.

A durable timer in trilha is the execution row's ``wake_at`` (the queue is an
index on it). These tests lose it by hand with ``sqlite3`` (the row's checksum
does not cover it, so the row still reads back), show that nothing would ever
claim the execution, and let the sweeper move it on.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from test_operator import ASK, DELAY  # tests/integration is on sys.path (rootdir mode)

from trilha.core.execution import Execution
from trilha.core.states import ExecutionStatus
from trilha.engine.operator import Operator
from trilha.engine.sweeper import Sweeper

S = ExecutionStatus


def set_wake(h: Any, execution_id: str, wake_at: float | None) -> None:
    """Edit the queue entry straight in the SQLite file, as a careless hand would."""
    with sqlite3.connect(h.store.path) as conn:
        conn.execute("UPDATE executions SET wake_at = ? WHERE id = ?", (wake_at, execution_id))


async def started(h: Any, flow: dict[str, Any], conversation: str = "conv-1") -> Execution:
    """Publish ``flow``, start it and run it (only it) until it waits."""
    await h.publish(flow)
    ex = await h.start(flow["id"], conversation)
    await h.settle(ex.id)
    return await h.get(ex.id)


async def never_claimed(h: Any, execution_id: str) -> Execution:
    """Run the worker on the execution (no sweep) and show it stays where it is."""
    before = await h.get(execution_id)
    await h.settle(execution_id)
    after = await h.get(execution_id)
    assert (after.status, after.step_seq, after.wake_at) == (before.status, before.step_seq, None)
    return after


async def test_lost_delay_timer_is_found_and_fires(harness: Any) -> None:
    """A delay whose wake time was deleted is never claimed; swept after its due time, it
    completes at once."""
    ex = await started(harness, DELAY)
    assert ex.status is S.WAITING_DELAY and ex.wake_at == ex.due_at
    set_wake(harness, ex.id, None)
    harness.clock.advance(120)
    await never_claimed(harness, ex.id)
    assert (await harness.store.queue_stats(harness.clock.now())).next_wake_at is None
    moved = await Sweeper(harness.store, harness.clock).sweep()
    assert [(m.execution_id, m.status, m.reason) for m in moved] == [
        (ex.id, "waiting_delay", "no wake time")
    ]
    assert (await harness.get(ex.id)).wake_at == harness.clock.now()
    await harness.settle(ex.id)
    assert (await harness.get(ex.id)).status is S.COMPLETED
    texts = [t.text for t in await harness.store.transcript(ex.id)]
    assert texts == ["wait a minute", "done"]
    (log,) = [r for r in await harness.store.logs(ex.id) if r.message == "sweeper.rescheduled"]
    assert log.level == "WARN" and log.context == {"reason": "no wake time"}


async def test_lost_delay_timer_swept_early_fires_on_time(harness: Any) -> None:
    """Swept before its due time, a lost delay gets its due time back, not an early wake."""
    ex = await started(harness, DELAY)
    set_wake(harness, ex.id, None)
    harness.clock.advance(10)
    await Sweeper(harness.store, harness.clock).sweep()
    assert (await harness.get(ex.id)).wake_at == ex.due_at
    await harness.settle(ex.id)
    assert (await harness.get(ex.id)).status is S.WAITING_DELAY
    harness.clock.advance(51)
    await harness.settle(ex.id)
    assert (await harness.get(ex.id)).status is S.COMPLETED


async def test_wake_time_after_due_is_moved_to_now(harness: Any) -> None:
    """A wake time pushed past the wait's due time is pulled back once the grace passes."""
    ex = await started(harness, DELAY)
    assert ex.due_at is not None
    set_wake(harness, ex.id, ex.due_at + 86_400)
    sweeper = Sweeper(harness.store, harness.clock, grace_seconds=30)
    harness.clock.advance(60 + 20)
    assert await sweeper.sweep() == []  # within the grace
    harness.clock.advance(20)
    (moved,) = await sweeper.sweep()
    assert moved.reason == "wake time after its due time"
    await harness.settle(ex.id)
    assert (await harness.get(ex.id)).status is S.COMPLETED


async def test_lost_wake_of_a_reply_is_found_and_applied(harness: Any) -> None:
    """A reply whose wake was lost is kept in the inbox; the sweep applies it."""
    ex = await started(harness, ASK)
    assert ex.status is S.WAITING_INPUT
    await harness.engine.send(ex.id, "Bia")
    set_wake(harness, ex.id, None)
    ex = await never_claimed(harness, ex.id)
    assert ex.status is S.WAITING_INPUT and "name" not in ex.variables
    await Sweeper(harness.store, harness.clock).sweep()
    await harness.settle(ex.id)
    ex = await harness.get(ex.id)
    assert ex.status is S.COMPLETED and ex.variables == {"name": "Bia"}


async def test_lost_input_timeout_is_restored(harness: Any) -> None:
    """A question whose wake was lost without a reply goes back to waiting until its input
    timeout, which still ends it."""
    ex = await started(harness, ASK)
    set_wake(harness, ex.id, None)
    await Sweeper(harness.store, harness.clock).sweep()
    await harness.settle(ex.id)
    back = await harness.get(ex.id)
    assert back.status is S.WAITING_INPUT and back.wake_at == ex.due_at
    assert back.step_seq == ex.step_seq
    assert ex.due_at is not None
    harness.clock.advance(ex.due_at - harness.clock.now() + 1)
    await harness.settle(ex.id)
    assert (await harness.get(ex.id)).status is S.TIMEOUT


async def test_running_without_wake_time_is_found(harness: Any) -> None:
    """A running execution that lost its queue entry is claimed again after a sweep."""
    await harness.publish(DELAY)
    ex = await harness.start("nap")
    set_wake(harness, ex.id, None)
    assert await harness.engine.run_once() == 0
    (moved,) = await Sweeper(harness.store, harness.clock).sweep()
    assert (moved.status, moved.reason) == ("running", "no wake time")
    await harness.settle(ex.id)
    assert (await harness.get(ex.id)).status is S.WAITING_DELAY


async def test_terminal_and_paused_are_never_touched(harness: Any) -> None:
    """Ended and paused executions have no wake time on purpose: the sweep leaves them."""
    done = await started(
        harness, {"id": "quick", "start": "x", "nodes": [{"id": "x", "type": "end"}]}
    )
    done_later = await started(harness, ASK, "conv-2")
    await Operator(harness.store, harness.engine).cancel(done_later.id)
    paused = await started(harness, DELAY, "conv-3")
    await Operator(harness.store, harness.engine).pause(paused.id)
    harness.clock.advance(3600)
    rows = {e.id: await harness.get(e.id) for e in (done, done_later, paused)}
    assert await Sweeper(harness.store, harness.clock, grace_seconds=0).sweep() == []
    for execution_id, before in rows.items():
        after = await harness.get(execution_id)
        assert (after.status, after.wake_at, after.updated_at) == (
            before.status,
            None,
            before.updated_at,
        )


async def test_run_until_idle_sweeps_first(harness: Any, process_log: Any) -> None:
    """A run over the whole store sweeps it first, with a WARN line per execution moved."""
    ex = await started(harness, DELAY)
    set_wake(harness, ex.id, None)
    harness.clock.advance(61)
    await harness.settle()
    assert (await harness.get(ex.id)).status is S.COMPLETED
    (line,) = [line for line in process_log.lines() if line["message"] == "sweeper.rescheduled"]
    assert line["level"] == "WARN" and line["executionId"] == ex.id
    assert line["context"]["metadata"]["logger"] == "trilha.sweeper"


async def test_run_forever_sweeps_periodically(harness: Any) -> None:
    """The worker loop sweeps at start and every sweep interval thereafter."""
    first = await started(harness, DELAY)
    set_wake(harness, first.id, None)
    harness.clock.advance(61)
    harness.worker.sweep_interval_seconds = 300
    stop = asyncio.Event()
    loop = asyncio.create_task(harness.worker.run_forever(stop))
    try:
        await until(harness, first.id, S.COMPLETED)
        second = await started(harness, DELAY, "conv-2")
        set_wake(harness, second.id, None)
        harness.clock.advance(61)
        await asyncio.sleep(0.3)
        assert (await harness.get(second.id)).status is S.WAITING_DELAY  # not swept yet
        harness.clock.advance(300)
        await until(harness, second.id, S.COMPLETED)
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)


async def until(h: Any, execution_id: str, status: ExecutionStatus) -> None:
    """Poll the store (the worker loop runs in another task) until the status shows."""
    async with asyncio.timeout(5):
        for _ in iter(int, 1):
            if (await h.get(execution_id)).status is status:
                return
            await asyncio.sleep(0.02)
