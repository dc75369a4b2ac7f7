"""Bulk actions: an operator control (pause, resume, cancel, retry) applied to every
execution a listing's filter matches (``POST /v1/executions/bulk``, ``trilha bulk``).

A job is a row (:class:`~trilha.store.base.BulkJob`) before it acts on anything, so it
outlives the process that started it. Each execution goes through the
:class:`~trilha.engine.operator.Operator` like one operated by hand (fenced, audited
with the job's actor and its reason, which names the job, with its trail line), so
the rules per state are those of one at a time: an execution the action does not
apply to (ended, not paused, ...) is *skipped* with the reason the debugger shows on
the disabled button (:func:`~trilha.core.controls.refusal`), never failed.

The job walks the selection in the listing's order (newest first, by created_at then
id) a page at a time, from where it stands (its cursor: the last execution handled,
written after each one, under the job's lease), with a pause between pages so the
engine's own work goes on. It starts at the moment it was created: executions that
arrive afterwards are not its. A process that dies leaves the job ``running`` under
a lease that lapses (it expires, or the owner's heartbeat stops); the next process
that looks (``trilha serve``'s loop, :meth:`BulkRunner.run_forever`) takes it over
and goes on after the cursor, so no execution is acted on twice (at worst, the one
in hand when the process died is read again, and skipped: it has moved already).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

from trilha.config import Config
from trilha.core.controls import refusal
from trilha.core.execution import Execution, iso
from trilha.engine.operator import Operator
from trilha.errors import (
    ConfigError,
    ExecutionNotFound,
    IllegalTransition,
    LimitExceeded,
    StoreError,
    StoreUnavailable,
    TrilhaError,
)
from trilha.observability.logging import get_logger
from trilha.store.base import BulkAction, BulkJob, ExecutionFilter, Store
from trilha.store.bulk import MAX_NOTES, note

log = get_logger("trilha.bulk")

ACTIONS: Final[tuple[BulkAction, ...]] = ("cancel", "pause", "resume", "retry")
#: above every execution id (trilha's are hex; the API's pattern is ASCII below ``~``):
#: ``(created_at, LAST_ID)`` is a cursor that keeps every execution created by then
LAST_ID: Final = "~"
#: the longest reason kept (the operator controls' own bound)
MAX_REASON: Final = 1_000
#: how often the loop looks for jobs left by a process that died, with nothing woken
POLL_SECONDS: Final = 5.0
#: heartbeats a runner may miss before its leases are free to take over
HEARTBEAT_MISSES: Final = 3

Progress = Callable[[BulkJob], None]


class BulkRunner:
    """Starts bulk jobs and runs them: those it is handed (``trilha bulk``), and in
    ``trilha serve`` every running job no live process holds."""

    def __init__(
        self,
        store: Store,
        operator: Operator,
        *,
        batch_size: int = 100,
        pause_seconds: float = 0.1,
        max_running: int = 3,
        max_executions: int = 100_000,
        lease_seconds: float = 30.0,
        heartbeat_seconds: float = 2.0,
        concurrency: int = 16,
    ) -> None:
        self.store = store
        self.operator = operator
        self.clock = operator.clock
        self.batch_size = batch_size
        self.pause_seconds = pause_seconds
        self.max_running = max_running
        self.max_executions = max_executions
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.concurrency = concurrency
        self.owner = f"bulk-{uuid.uuid4().hex[:12]}"
        self._woken = asyncio.Event()
        self._stop = asyncio.Event()
        self._jobs: dict[str, asyncio.Task[None]] = {}

    @classmethod
    def from_config(cls, store: Store, operator: Operator, config: Config) -> BulkRunner:
        """The runner ``[api]``'s bulk settings describe."""
        api = config.api
        return cls(
            store,
            operator,
            batch_size=api.bulk_batch_size,
            pause_seconds=api.bulk_pause_seconds,
            max_running=api.max_bulk_jobs,
            max_executions=api.max_bulk_executions,
            lease_seconds=config.engine.lease_seconds,
        )

    # starting -------------------------------------------------------------------------

    async def count(self, selection: ExecutionFilter) -> int:
        """How many executions ``selection`` matches now (a dry run);
        :class:`LimitExceeded` past ``max_executions``."""
        return await self._count(selection, (self.clock.now(), LAST_ID))

    async def _count(self, selection: ExecutionFilter, start: tuple[float, str]) -> int:
        total = await self.store.count_executions(
            where=selection, before=start, limit=self.max_executions + 1
        )
        if total > self.max_executions:
            raise LimitExceeded(
                f"the filter matches more than {self.max_executions} executions, the most one"
                " bulk action takes ([api] max_bulk_executions); narrow the filter",
                limit=self.max_executions,
                bound="max_bulk_executions",
            )
        return total

    async def start(
        self,
        *,
        institution_id: str,
        actor: str,
        action: BulkAction,
        given: Mapping[str, Any],
        selection: ExecutionFilter,
        reason: str | None,
    ) -> BulkJob:
        """Count the executions ``selection`` matches in ``institution_id`` and store the
        job, running and not yet leased (:meth:`run` or the serve loop runs it);
        :class:`LimitExceeded` past ``max_executions`` or ``max_running``."""
        if action not in ACTIONS:
            raise ConfigError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
        if reason is not None and len(reason) > MAX_REASON:
            raise ConfigError(f"reason: at most {MAX_REASON} characters, not {len(reason)}")
        selection = dataclasses.replace(selection, institution_id=institution_id)
        now = self.clock.now()
        start = (now, LAST_ID)
        total = await self._count(selection, start)
        job = BulkJob(
            id=f"bulk-{uuid.uuid4().hex}",
            institution_id=institution_id,
            actor=actor,
            action=action,
            filter=dict(given),
            selection=selection,
            reason=reason,
            total=total,
            created_at=now,
            updated_at=now,
            cursor=start,
        )
        stored = await self.store.create_bulk_job(job, max_running=self.max_running)
        log.info(
            "bulk.started",
            jobId=job.id,
            institutionId=institution_id,
            actor=actor,
            action=action,
            total=total,
            reason=reason,
            filter=dict(given),
        )
        self.wake()
        return stored

    # running --------------------------------------------------------------------------

    async def run(self, job_id: str, progress: Progress | None = None) -> BulkJob | None:
        """Run one job to its end in this process, under this runner's lease (with its
        heartbeat); ``None`` when another live process holds it. Interrupted, it is left
        running with its lease given up, for a server to go on with."""
        beat = asyncio.create_task(self._beat())
        try:
            job = await self.store.claim_bulk_job(
                self.owner,
                now=self.clock.now(),
                lease_seconds=self.lease_seconds,
                job_id=job_id,
            )
            if job is None:
                return None
            return await self._work(job, progress)
        finally:
            await self._quit(beat)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Take over every running job no live process holds, each in its own task, until
        ``stop``; jobs in hand stop after the execution they are at, their leases given
        up at once for another process."""
        beat = asyncio.create_task(self._beat())
        relay = asyncio.create_task(self._relay(stop))
        away = False
        try:
            while not self._stop.is_set():
                try:
                    await self._claim()
                    away = False
                except StoreError as exc:
                    if not away:  # once per outage; the leases keep the jobs
                        log.error("bulk.store_unavailable", owner=self.owner, error=str(exc))
                    away = True
                except Exception:  # a bug must not end bulk actions for good
                    log.exception("bulk.loop_failed", owner=self.owner)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), POLL_SECONDS)
                self._woken.clear()
        finally:
            self._stop.set()
            relay.cancel()
            jobs = list(self._jobs.values())
            if jobs:
                await asyncio.wait(jobs, timeout=self.lease_seconds)
            for task in jobs:
                task.cancel()
            await asyncio.gather(relay, *jobs, return_exceptions=True)
            await self._quit(beat)

    async def _claim(self) -> None:
        """Take free jobs, each into a task of its own, while there is room."""
        while len(self._jobs) < self.concurrency:
            job = await self.store.claim_bulk_job(
                self.owner, now=self.clock.now(), lease_seconds=self.lease_seconds
            )
            if job is None:
                return
            if job.id in self._jobs:  # ours already: our heartbeat looked late, the lease
                return  # is renewed by the claim, and one task goes on with it
            log.info("bulk.claimed", jobId=job.id, done=job.done, total=job.total)
            task = asyncio.create_task(self._guarded(job))
            self._jobs[job.id] = task
            task.add_done_callback(functools.partial(self._forget, job.id))

    async def _relay(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stop()

    def stop(self) -> None:
        """Stop the jobs in hand after the execution each is at (they stay running, for
        this or another process to go on with)."""
        self._stop.set()
        self._woken.set()

    def wake(self) -> None:
        """A job was stored: look for it now rather than at the next poll."""
        self._woken.set()

    def _forget(self, job_id: str, _: object = None) -> None:
        self._jobs.pop(job_id, None)
        self._woken.set()  # a slot is free

    async def _guarded(self, job: BulkJob) -> None:
        try:
            await self._work(job, None)
        except StoreError as exc:  # the lease lapses; this or another process goes on
            log.error("bulk.interrupted", jobId=job.id, error=str(exc))

    async def _work(self, job: BulkJob, progress: Progress | None) -> BulkJob:
        """Act on the job's executions from its cursor on, to the end; the job as it
        stands when this stops (``running`` still when its lease was lost or the runner
        stopped)."""
        if progress is not None:
            progress(job)
        try:
            while not self._stop.is_set():
                page = await self.store.list_executions(
                    limit=self.batch_size, where=job.selection, before=job.cursor
                )
                for ex in page:
                    job = await self._one(job, ex)
                    if not await self._save(job):
                        log.warning("bulk.lease_lost", jobId=job.id, owner=self.owner)
                        return job
                    if progress is not None:
                        progress(job)
                    if self._stop.is_set():
                        return job
                if len(page) < self.batch_size:
                    return await self._end(job, "completed")
                await asyncio.sleep(self.pause_seconds)  # the workers' turn
        except StoreError:
            raise
        except Exception as exc:  # a bug: the job ends failed, said why, not for ever retried
            log.exception("bulk.crashed", jobId=job.id)
            errors = [*job.errors, {"executionId": None, "reason": f"internal error: {exc!r}"}]
            return await self._end(dataclasses.replace(job, errors=errors[-MAX_NOTES:]), "failed")
        return job

    async def _end(self, job: BulkJob, status: str) -> BulkJob:
        now = self.clock.now()
        ended = dataclasses.replace(job, status=status, finished_at=now, updated_at=now)
        if await self._save(ended):
            log.info(
                "bulk.finished",
                jobId=job.id,
                status=status,
                total=job.total,
                succeeded=job.succeeded,
                skipped=job.skipped,
                failed=job.failed,
            )
            return dataclasses.replace(ended, lease_owner=None, lease_expires_at=None)
        return job

    async def _save(self, job: BulkJob) -> bool:
        now = self.clock.now()
        return await self.store.save_bulk_progress(
            job, owner=self.owner, now=now, lease_until=now + self.lease_seconds
        )

    async def _one(self, job: BulkJob, ex: Execution) -> BulkJob:
        """Apply the job's action to ``ex``: the job with it counted and its cursor past it."""
        position = (ex.created_at, ex.id)
        why = refusal(ex, job.action, self.clock.now())
        if why is None:
            try:
                await getattr(self.operator, job.action)(
                    ex.id, actor=job.actor, reason=_reason(job)
                )
            except IllegalTransition as exc:  # it moved since it was listed
                why = await self._why_not(ex.id, job.action) or str(exc)
            except ExecutionNotFound:
                why = "it no longer exists"
            except StoreUnavailable:
                raise  # the job waits for the store, its lease keeping it
            except TrilhaError as exc:  # kept changing (StaleLease), unreadable, ...
                return _counted(job, position, failed=note(ex.id, str(exc)))
            else:
                return _counted(job, position)
        return _counted(job, position, skipped=note(ex.id, why))

    async def _why_not(self, execution_id: str, action: BulkAction) -> str | None:
        try:
            ex = await self.store.get_execution(execution_id)
        except ExecutionNotFound:
            return "it no longer exists"
        except StoreUnavailable:
            raise
        except TrilhaError:  # unreadable now: the operator's refusal says enough
            return None
        return refusal(ex, action, self.clock.now())

    async def _beat(self) -> None:
        while True:
            with contextlib.suppress(StoreError):
                now = self.clock.now()
                grace = HEARTBEAT_MISSES * self.heartbeat_seconds
                await self.store.heartbeat([self.owner], now=now, alive_until=now + grace)
            await asyncio.sleep(self.heartbeat_seconds)

    async def _quit(self, beat: asyncio.Task[None]) -> None:
        """Stop the heartbeat and declare this runner stopped: its leases are free for
        another process at once, not when they expire."""
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)
        with contextlib.suppress(StoreError):
            now = self.clock.now()
            await self.store.heartbeat([self.owner], now=now, alive_until=now)


def job_view(job: BulkJob) -> dict[str, Any]:
    """A job as the API answers it and ``trilha bulk --json`` prints it."""
    return {
        "jobId": job.id,
        "action": job.action,
        "status": job.status,
        "total": job.total,
        "done": job.done,
        "succeeded": job.succeeded,
        "skipped": job.skipped,
        "failed": job.failed,
        "dryRun": False,
        "reason": job.reason,
        "actor": job.actor,
        "institutionId": job.institution_id,
        "filter": job.filter,
        "createdAt": iso(job.created_at),
        "updatedAt": iso(job.updated_at),
        "finishedAt": iso(job.finished_at),
        "errors": job.errors,
        "skips": job.skips,
    }


def _reason(job: BulkJob) -> str:
    """The reason each execution's history keeps: the caller's, and which job it was."""
    return f"{job.reason} (bulk action {job.id})" if job.reason else f"bulk action {job.id}"


def _counted(
    job: BulkJob,
    position: tuple[float, str],
    *,
    skipped: dict[str, Any] | None = None,
    failed: dict[str, Any] | None = None,
) -> BulkJob:
    return dataclasses.replace(
        job,
        cursor=position,
        done=job.done + 1,
        succeeded=job.succeeded + (skipped is None and failed is None),
        skipped=job.skipped + (skipped is not None),
        failed=job.failed + (failed is not None),
        skips=[*job.skips, skipped][:MAX_NOTES] if skipped is not None else job.skips,
        errors=[*job.errors, failed][:MAX_NOTES] if failed is not None else job.errors,
    )
