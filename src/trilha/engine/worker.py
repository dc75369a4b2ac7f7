"""The loops that keep a process busy: claim and advance, then deliver the outbox.

``run_until_idle`` is for ``trilha worker --until-idle`` and tests: it stops
once nothing is due, leased or waiting to be delivered (future timers do not
keep it alive). ``run_forever`` polls, sleeping until the next wake time or
the poll interval, whichever is sooner.
"""

from __future__ import annotations

import asyncio

from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.errors import StoreUnavailable


class Worker:
    def __init__(self, engine: Engine, dispatcher: Dispatcher | None = None) -> None:
        self.engine = engine
        self.dispatcher = dispatcher

    async def tick(self, execution_id: str | None = None) -> int:
        """One round: advance what is due, then deliver; returns the work done."""
        done = await self.engine.run_once(execution_id=execution_id)
        if self.dispatcher is not None:
            done += await self.dispatcher.run_once()
        return done

    async def run_until_idle(self, execution_id: str | None = None) -> None:
        """Work until nothing (of ``execution_id``, if given) is due, leased or undelivered."""
        clock = self.engine.clock
        while True:
            if await self.tick(execution_id):
                continue
            stats = await self.engine.store.queue_stats(clock.now(), execution_id)
            if stats.due or stats.pending_outbox:
                await clock.sleep(0.01)
                continue
            if stats.leased:  # another worker holds it, or our lease outlived a crash
                await clock.sleep(self.engine.config.engine.poll_interval_seconds)
                continue
            return

    async def run_forever(self, stop: asyncio.Event) -> None:
        clock = self.engine.clock
        interval = self.engine.config.engine.poll_interval_seconds
        backoff = interval
        while not stop.is_set():
            try:
                if await self.tick():
                    backoff = interval
                    continue
                stats = await self.engine.store.queue_stats(clock.now())
            except StoreUnavailable:
                backoff = min(backoff * 2, 30.0)
                await _wait(stop, backoff)
                continue
            nap = interval
            if stats.next_wake_at is not None:
                nap = min(interval, max(0.0, stats.next_wake_at - clock.now()))
            await _wait(stop, nap)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
