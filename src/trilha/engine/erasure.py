"""Erasing a contact (LGPD: the right to be forgotten) and applying retention.

:meth:`Eraser.forget_contact` is what ``DELETE /v1/contacts/{contactId}`` and ``trilha
forget --contact`` run, in this order:

1. every active execution of the contact is cancelled through the operator's cancel
   (fenced: a worker in the middle of a step loses its commit, so no worker writes the
   contact's data back afterwards);
2. one store transaction deletes, or redacts where a count must stay, everything stored
   of the contact (:mod:`trilha.store.erasure` lists it table by table). An execution
   that became active in between (a message that arrived after step 1) is deleted too:
   its row going fences its worker as the cancel did;
3. the process log file and its rotated copies are written anew without the contact's
   lines (:mod:`trilha.observability.log_erasure`);
4. the erasure is audited without the contact: a row in ``erasures`` and a process log
   line ``contact.erased`` carry the erasure's id, the institution, the actor, the time
   and the counts. No hash of the contact's id is kept: phone numbers are few enough for
   anyone holding a hash to find the number by trying them all. The caller keeps the
   receipt, which names the contact, as its proof.

A message the contact sends while this runs is either stored before step 2 (erased with
the rest) or after it (kept: the contact spoke again, as a new conversation). A channel
webhook body not processed yet is such a message. An unknown contact is erased all the
same: the receipt counts zeros, and never reads another institution's data.

Retention (``[retention]``) erases ended executions older than an institution's days
through the same store path (step 2), in bounded batches; it leaves process log files
alone (they rotate away by size).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trilha.config import Config, RetentionConfig
from trilha.core.execution import iso
from trilha.core.states import TERMINAL
from trilha.engine.clock import Clock
from trilha.engine.operator import Operator
from trilha.errors import ExecutionNotFound, IllegalTransition, StaleLease, TrilhaError
from trilha.observability.log_erasure import Marks, erase_lines
from trilha.observability.logging import get_logger
from trilha.store.base import ExecutionFilter, Store
from trilha.store.erasure import KINDS, Erased, ErasureRecord, zeros

log = get_logger("trilha.erasure")

#: executions of a contact read to find the active ones to cancel (pages of 100); any
#: beyond are deleted by the store's transaction all the same
CANCEL_PAGES = 20


@dataclass(frozen=True, slots=True)
class Receipt:
    """What an erasure removed, counted per kind (:data:`~trilha.store.erasure.KINDS`)."""

    erasure_id: str
    institution_id: str
    erased_at: float
    contact_id: str | None = None
    cancelled: int = 0
    removed: dict[str, int] = field(default_factory=zeros)
    #: what could not be erased (a log file that could not be rewritten), to do again
    warnings: tuple[str, ...] = ()

    def wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "erasureId": self.erasure_id,
            "contactId": self.contact_id,
            "institutionId": self.institution_id,
            "erasedAt": iso(self.erased_at),
            "cancelled": self.cancelled,
            "removed": {k: int(self.removed.get(k, 0)) for k in KINDS},
        }
        if self.warnings:
            wire["warnings"] = list(self.warnings)
        return wire


class Eraser:
    """Forgets contacts and applies retention over one store."""

    def __init__(self, store: Store, operator: Operator, config: Config, clock: Clock) -> None:
        self.store = store
        self.operator = operator
        self.config = config
        self.clock = clock

    async def forget_contact(self, institution_id: str, contact_id: str, *, actor: str) -> Receipt:
        cancelled = await self._cancel_active(institution_id, contact_id, actor)
        now = self.clock.now()
        record = ErasureRecord(uuid.uuid4().hex, institution_id, "contact", actor, now)
        erased = await self.store.forget_contact(institution_id, contact_id, record=record)
        removed = dict(erased.removed)
        warnings: tuple[str, ...] = ()
        try:
            removed["logFileLines"] = await self._log_files(institution_id, contact_id, erased)
        except OSError as exc:  # the store is erased: say what is left, do not fail
            file = self.config.logging.file
            log.error("erasure.log_file_failed", erasureId=record.id, file=file, error=str(exc))
            ids = ", ".join(erased.execution_ids) or "none"
            warnings = (
                f"logging.file {file} could not be rewritten ({exc.strerror or exc}): remove"
                f" its lines (and its rotated copies') naming the executions {ids}",
            )
        log.info(
            "contact.erased",
            erasureId=record.id,
            institutionId=institution_id,
            actor=actor,
            cancelled=cancelled,
            removed={k: v for k, v in removed.items() if v},
        )
        return Receipt(record.id, institution_id, now, contact_id, cancelled, removed, warnings)

    async def _cancel_active(self, institution_id: str, contact_id: str, actor: str) -> int:
        where = ExecutionFilter(institution_id=institution_id, contact_id=contact_id)
        active: list[str] = []
        before: tuple[float, str] | None = None
        for _ in range(CANCEL_PAGES):
            page = await self.store.list_executions(limit=100, where=where, before=before)
            active += [ex.id for ex in page if ex.status not in TERMINAL]
            if len(page) < 100:
                break
            before = (page[-1].created_at, page[-1].id)
        cancelled = 0
        for execution_id in active:
            # one that ended, vanished or keeps changing meanwhile is deleted by the
            # store's transaction all the same, which fences its worker
            with contextlib.suppress(IllegalTransition, ExecutionNotFound, StaleLease):
                await self.operator.cancel(execution_id, actor=actor, reason="contact erasure")
                cancelled += 1
        return cancelled

    async def _log_files(self, institution_id: str, contact_id: str | None, erased: Erased) -> int:
        cfg = self.config.logging
        if not cfg.file:
            return 0
        marks = Marks.of(institution_id, contact_id, erased.execution_ids, erased.conversation_ids)
        return await asyncio.to_thread(erase_lines, cfg.file, cfg.file_backups, marks)

    async def apply_retention(
        self,
        retention: RetentionConfig | None = None,
        *,
        actor: str = "retention",
        batches: int = 50,
    ) -> tuple[int, dict[str, int]] | None:
        """Erase ended executions past their institution's retention, at most ``batches``
        batches of ``[retention] batch`` per rule (what is left goes on the next run):
        how many erasures ran and the total removed, or ``None`` when retention is off."""
        rules = retention or self.config.retention
        if not rules.enabled():
            return None
        now = self.clock.now()
        total = zeros()
        own = sorted(rules.institutions)
        plans: list[tuple[str | None, float]] = [
            (inst, r.days) for inst, r in rules.institutions.items() if r.days is not None
        ]
        if rules.days is not None:
            plans.append((None, rules.days))
        runs = 0
        for institution, days in plans:
            cutoff = now - days * 86_400
            for _ in range(batches):
                found = await self.store.expired_executions(
                    cutoff, institution_id=institution, exclude=own, limit=rules.batch
                )
                if not found:
                    break
                for inst, ids in _by_institution(found).items():
                    record = ErasureRecord(uuid.uuid4().hex, inst, "retention", actor, now)
                    erased = await self.store.forget_executions(inst, ids, record=record)
                    runs += 1
                    for kind, count in erased.removed.items():
                        total[kind] += count
                    log.info(
                        "retention.erased",
                        erasureId=record.id,
                        institutionId=inst,
                        actor=actor,
                        endedBefore=iso(cutoff),
                        removed={k: v for k, v in erased.removed.items() if v},
                    )
                if len(found) < rules.batch:
                    break
        return runs, total

    async def run_forever(self, stop: asyncio.Event) -> None:
        """``trilha serve``'s retention: a run every ``[retention] interval_seconds``."""
        every = self.config.retention.interval_seconds
        while not stop.is_set():
            try:
                await self.apply_retention()
            except TrilhaError as exc:  # the store away: the next run tries again
                log.warning("retention.failed", error=str(exc))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), every)


def _by_institution(found: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for institution, execution_id in found:
        groups.setdefault(institution, []).append(execution_id)
    return groups
