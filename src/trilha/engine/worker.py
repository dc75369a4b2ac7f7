"""The loops that keep a process busy: claim and advance, deliver the outbox, sweep.

``run_until_idle`` is for ``trilha worker --until-idle`` and tests: it stops
once nothing is due, leased or waiting to be delivered (future timers do not
keep it alive). ``run_forever`` polls, sleeping until the next wake time or
the poll interval, whichever is sooner, and runs the sweeper every
``sweep_interval_seconds``, and evaluates the alert rules every
``[alerts] evaluation_interval_seconds`` (unless ``[alerts] enabled = false``);
a failed evaluation is one ERROR line, never the end of the worker. It beats
a heartbeat every ``heartbeat_seconds`` (its leases hold while it does: a
killed worker's executions are claimed by others three beats later) and wakes
early when the store says another process made work due (PostgreSQL's
LISTEN/NOTIFY; polling covers a missed one).

When the store fails (unreachable, read-only, disk full) ``run_forever`` does
not crash: it logs one CRITICAL line when the outage starts, backs off
(exponentially, with jitter) and retries, and logs a WARN line when the store
answers again. What a failed commit held is not lost: the step was not
acknowledged, its lease expires and the step is re-run from the last
checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine, new_worker_id
from trilha.engine.sweeper import Sweeper
from trilha.errors import StoreError, StoreUnavailable
from trilha.observability.alerts import AlertEvaluator
from trilha.observability.logging import get_logger

log = get_logger("trilha.worker")

#: heartbeats a worker may miss before its leases are free for others to take
HEARTBEAT_MISSES = 3


class Worker:
    def __init__(
        self,
        engine: Engine,
        dispatcher: Dispatcher | None = None,
        *,
        sweeper: Sweeper | None = None,
        sweep_interval_seconds: float = 30.0,
        max_backoff_seconds: float = 10.0,
        alerts: AlertEvaluator | None = None,
    ) -> None:
        self.engine = engine
        self.dispatcher = dispatcher
        self.sweeper = sweeper or Sweeper(
            engine.store,
            engine.clock,
            retention_seconds=engine.config.logging.retention_days * 86_400,
        )
        self.sweep_interval_seconds = sweep_interval_seconds
        self.max_backoff_seconds = max_backoff_seconds
        #: the alert evaluator; ``None`` makes ``run_forever`` build one from the config
        #: (and close it when it stops)
        self.alerts = alerts
        self._nudge = asyncio.Event()
        #: a store outage happened: take a new lease identity at the next round
        self._renew_identity = False
        #: when the current store outage began (clock time), ``None`` while the store answers
        self.outage_since: float | None = None

    def wake(self) -> None:
        """Something is due now (a reply stored, an execution started in this process):
        claim at once instead of at the next poll. Other processes still poll."""
        self._nudge.set()

    async def tick(self, execution_id: str | None = None) -> int:
        """One round: advance what is due, then deliver; returns the work done."""
        done = await self.engine.run_once(execution_id=execution_id)
        if self.dispatcher is not None:
            done += await self.dispatcher.run_once()
        return done

    async def step(self) -> int | None:
        """One round, run by a caller that owns time (the chaos simulation): renew the
        lease identity if a failure asked for it, advance what is due, deliver. ``None``
        when the store failed (reported as ``run_forever`` reports it, once per outage);
        the caller backs off on its own clock."""
        try:
            if self._renew_identity:
                await self._renew()
            done = await self.tick()
        except StoreError as exc:
            self._store_failed(exc)
            return None
        self._store_answered()
        return done

    async def run_until_idle(self, execution_id: str | None = None) -> None:
        """Work until nothing (of ``execution_id``, if given) is due, leased or undelivered.
        A run over the whole store sweeps it first."""
        clock = self.engine.clock
        if execution_id is None:
            await self.sweeper.sweep()
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
        """Keep up to ``batch_size`` executions in flight: a slow call holds only its own
        execution, and a finished one makes room for the next claim at once. On ``stop``
        the steps in flight are let finish (nothing is cut mid-commit).

        Meanwhile the worker beats its heartbeat (its leases hold while it does) and
        listens for wake-ups from other processes (a reply stored by an API process).
        After a store outage it cannot know what it still holds: a step cut short, a
        claim or a delivery whose answer was lost. So it takes a new lease identity
        and declares the old one stopped: every lease held under it is free at once,
        and the executions and messages are claimed again (by it or another worker)
        instead of waiting out their leases."""
        clock = self.engine.clock
        store = self.engine.store
        interval = self.engine.config.engine.poll_interval_seconds
        batch = self.engine.config.engine.batch_size
        backoff = interval
        next_sweep = clock.now()
        inflight: set[asyncio.Task[None]] = set()
        settings = self.engine.config.alerts
        alerts = self.alerts
        own_alerts = alerts is None and settings.enabled
        if own_alerts:
            alerts = AlertEvaluator(store, self.engine.config, clock)
        next_alerts = clock.now()
        with contextlib.suppress(StoreError):  # before any claim: its leases have an owner
            await self._beat_once()
        heart = asyncio.create_task(self._beat(stop))
        unsubscribe = store.subscribe_wake(self.wake)
        try:
            while not stop.is_set():
                if (
                    alerts is not None
                    and settings.enabled
                    # not during a store outage: that is reported once already, and
                    # the alerts' states live in that store
                    and self.outage_since is None
                    and clock.now() >= next_alerts
                ):
                    await alerts.evaluate_logged()  # logs its failures, never raises
                    next_alerts = clock.now() + settings.evaluation_interval_seconds
                try:
                    finished = {t for t in inflight if t.done()}
                    inflight -= finished
                    failure = _first_failure(finished)
                    if failure is not None:
                        raise failure  # a store failure inside a step surfaces here
                    if self._renew_identity:
                        await self._renew()
                    if clock.now() >= next_sweep:
                        await self.sweeper.sweep()
                        next_sweep = clock.now() + self.sweep_interval_seconds
                    claims = (
                        await self.engine.claim(limit=batch - len(inflight))
                        if (len(inflight) < batch)
                        else []
                    )
                    for claimed in claims:
                        inflight.add(asyncio.create_task(self.engine.advance(claimed)))
                    delivered = await self.dispatcher.run_once() if self.dispatcher else 0
                    worked = bool(claims or delivered or finished)
                    stats = None if worked else await store.queue_stats(clock.now())
                except StoreError as exc:
                    self._store_failed(exc)
                    backoff = min(backoff * 2, self.max_backoff_seconds)
                    await _wait(stop, backoff * (0.5 + random.random() / 2))
                    continue
                except Exception:
                    # a bug must not stop the worker: every execution it would have run
                    # waits on it. Said loudly, then the round is tried again
                    log.exception("worker.round_failed", workerId=self.engine.worker_id)
                    self._renew_identity = True
                    backoff = min(backoff * 2, self.max_backoff_seconds)
                    await _wait(stop, backoff * (0.5 + random.random() / 2))
                    continue
                self._store_answered()
                backoff = interval
                if stats is None:
                    await asyncio.sleep(0)  # let the steps just started run
                    continue
                nap = interval
                if stats.next_wake_at is not None:
                    nap = min(interval, max(0.0, stats.next_wake_at - clock.now()))
                await _wait(stop, nap, inflight, self._nudge)
                self._nudge.clear()
        finally:
            unsubscribe()
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)
                if self.dispatcher is not None:  # deliver what those last steps said
                    with contextlib.suppress(StoreError):
                        await self.dispatcher.run_once()
            heart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heart
            with contextlib.suppress(StoreError):  # gone: its leases are free at once
                now = clock.now()
                await store.heartbeat(self.owners, now=now, alive_until=now)
            if own_alerts and alerts is not None:
                await alerts.aclose()

    @property
    def owners(self) -> list[str]:
        """The lease owners this worker's heartbeat speaks for: its engine and dispatcher."""
        owners = [self.engine.worker_id]
        if self.dispatcher is not None:
            owners.append(self.dispatcher.dispatcher_id)
        return owners

    async def _beat(self, stop: asyncio.Event) -> None:
        """Tell the store every ``heartbeat_seconds`` that this worker lives; three beats
        missed and its leases are free. A failed beat is left to the main loop, which
        reports the outage once."""
        while not stop.is_set():
            try:
                await self._beat_once()
            except StoreError:
                pass  # the store is away: the main loop reports the outage once
            except Exception:  # a beat must never stop for good: its leases would lapse
                log.exception("worker.heartbeat_failed", workerId=self.engine.worker_id)
            await _wait(stop, self.engine.config.engine.heartbeat_seconds)

    async def _beat_once(self) -> None:
        now = self.engine.clock.now()
        grace = HEARTBEAT_MISSES * self.engine.config.engine.heartbeat_seconds
        await self.engine.store.heartbeat(self.owners, now=now, alive_until=now + grace)

    async def _renew(self) -> None:
        """Lease under a new identity and declare the old one stopped (see
        :meth:`run_forever`); a step still running under the old one then fails its
        commit (stale token) if another worker took the execution meanwhile."""
        old = self.owners
        now = self.engine.clock.now()
        # the old identity is declared stopped before it is left (a row saying so must
        # exist: an owner never heard of is judged by its leases' expiry alone)
        await self.engine.store.heartbeat(old, now=now, alive_until=now)
        fresh = new_worker_id()
        self.engine.worker_id = fresh
        if self.dispatcher is not None:
            self.dispatcher.dispatcher_id = f"dispatch-{fresh}"
        self._renew_identity = False
        log.info("worker.identity_renewed", previous=old[0], workerId=fresh)
        await self._beat_once()

    def _store_failed(self, exc: StoreError) -> None:
        """One CRITICAL line per outage, not per retry; other store errors are ERROR lines.
        Whatever failed may have left a lease held (a step, a claim, a delivery): every
        failure, not only an outage's first, renews the identity at the next round."""
        self._renew_identity = True
        context = {"workerId": self.engine.worker_id, "error": str(exc), "code": exc.code}
        if self.outage_since is not None:
            return
        if isinstance(exc, StoreUnavailable):
            self.outage_since = self.engine.clock.now()
            log.critical("store.unavailable", **context)
        else:
            log.error("worker.store_error", **context)

    def _store_answered(self) -> None:
        if self.outage_since is None:
            return
        down = self.engine.clock.now() - self.outage_since
        self.outage_since = None
        log.warning("store.available", workerId=self.engine.worker_id, downSeconds=round(down, 3))


def _first_failure(finished: set[asyncio.Task[None]]) -> StoreError | None:
    """The store failure a finished step met, if any (each task's exception is read, so
    none is left unretrieved); any other exception is a bug the engine did not catch,
    raised as is."""
    failure: StoreError | None = None
    for task in finished:
        exc = task.exception()
        if isinstance(exc, StoreError):
            failure = failure or exc
        elif exc is not None:
            raise exc
    return failure


async def _wait(
    stop: asyncio.Event,
    seconds: float,
    inflight: set[asyncio.Task[None]] | None = None,
    nudge: asyncio.Event | None = None,
) -> None:
    """Sleep up to ``seconds``; wake early on ``stop``, a nudge, or when a step in
    flight ends."""
    waiters = {asyncio.ensure_future(stop.wait())}
    if nudge is not None:
        waiters.add(asyncio.ensure_future(nudge.wait()))
    try:
        await asyncio.wait(
            {*waiters, *(inflight or ())}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiter in waiters:
            waiter.cancel()
