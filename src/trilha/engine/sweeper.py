"""The sweeper: nothing stays stuck for ever (DESIGN §4, §7).

A durable timer in trilha is the execution row's ``wake_at``: the queue is an
index on it. If that wake time is lost (a row edited by hand, a bug, a crash
in the wrong place), or lies after the wait's due time, nothing would ever
claim the execution again. The sweeper asks the store for such executions
(:meth:`~trilha.store.base.Store.find_stuck`: active, not paused, no live
lease) and gives each a wake time again: its due time if that is still ahead
(a delay fires when it should, a retry backoff is kept), else now. A
``waiting_input`` execution is woken now: the engine applies a reply that is
already in the inbox, or goes back to sleep until the input timeout.
Terminal and paused executions are never touched.
"""

from __future__ import annotations

from trilha.core.execution import iso
from trilha.core.silence import next_wake
from trilha.core.states import ExecutionStatus
from trilha.engine.clock import Clock
from trilha.errors import CorruptedRecord, ExecutionNotFound
from trilha.observability.logging import get_logger
from trilha.store.base import Store, Stuck

log = get_logger("trilha.sweeper")


class Sweeper:
    """Finds active executions that nothing will move on and reschedules them."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        grace_seconds: float = 30.0,
        retention_seconds: float = 0.0,
    ) -> None:
        self.store = store
        self.clock = clock
        #: how long past its due time a wait may sit before it counts as stuck
        self.grace_seconds = grace_seconds
        #: trails of executions that ended longer ago than this are deleted (0: never)
        self.retention_seconds = retention_seconds

    async def purge_trails(self, *, batch: int = 5_000, max_batches: int = 20) -> int:
        """Apply the log retention: delete the trails of executions that ended more than
        ``retention_seconds`` ago, in batches so the store's writer is never held long
        (what is left goes on the next sweep). Returns how many lines went."""
        if self.retention_seconds <= 0:
            return 0
        cutoff = self.clock.now() - self.retention_seconds
        total = 0
        for _ in range(max_batches):
            deleted = await self.store.purge_logs(cutoff, limit=batch)
            total += deleted
            if deleted < batch:
                break
        if total:
            log.info("trail.purged", lines=total, endedBefore=iso(cutoff))
        return total

    async def sweep(self) -> list[Stuck]:
        """Reschedule every stuck execution; returns what was moved."""
        now = self.clock.now()
        stuck = await self.store.find_stuck(now, grace_seconds=self.grace_seconds)
        await self.purge_trails()
        moved: list[Stuck] = []
        for item in stuck:
            wake_at = await self._wake_time(item, now)
            if wake_at is None:
                continue
            await self.store.reschedule(
                item.execution_id, wake_at=wake_at, reason=item.reason, now=now
            )
            log.warning(
                "sweeper.rescheduled",
                executionId=item.execution_id,
                status=item.status,
                reason=item.reason,
                wakeInSeconds=round(wake_at - now, 3),
            )
            moved.append(item)
        return moved

    async def _wake_time(self, item: Stuck, now: float) -> float | None:
        """The due time of the execution's wait if still ahead, else now; ``None`` when
        the execution is gone, or ended or was paused since it was found."""
        try:
            execution = await self.store.get_execution(item.execution_id)
        except ExecutionNotFound:
            return None
        except CorruptedRecord:
            return now  # a claim quarantines the row and the engine restores it
        if execution.status.terminal or execution.status is ExecutionStatus.PAUSED:
            return None
        due = next_wake(execution)  # its due time, or a reminder or expiry before it
        if execution.status is ExecutionStatus.WAITING_INPUT or due is None or due <= now:
            return now
        return due
