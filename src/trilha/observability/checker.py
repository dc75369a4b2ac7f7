"""``trilha check``: walk a store and check every execution's invariants.

The rules live in :mod:`trilha.core.invariants` (pure); this module only reads
what they need, one execution at a time, so it runs against a production store
without holding more than one execution's records in memory. It walks the
executions by id (``Store.execution_ids``), not through a listing: a row that
fails its own checks (corrupted) is left out of listings but is exactly what a
check must report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from trilha.core.invariants import Records, Violation, check
from trilha.errors import CorruptedRecord, ExecutionNotFound
from trilha.store.base import Store

BATCH = 500
#: what reading a damaged record raises (a bad enum value, JSON that does not parse...)
UNREADABLE = (CorruptedRecord, ValueError, TypeError, KeyError)


@dataclass(slots=True)
class CheckReport:
    checked: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for v in self.violations if v.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for v in self.violations if v.severity == "warning")

    @property
    def broken_executions(self) -> int:
        return len({v.execution_id for v in self.violations if v.severity == "error"})


async def check_execution(
    store: Store, execution_id: str, *, now: float, grace: float
) -> list[Violation] | None:
    """The violations of one execution; ``None`` when it is gone (deleted meanwhile)."""
    try:
        ex = await store.get_execution(execution_id)
    except ExecutionNotFound:
        return None
    except CorruptedRecord as exc:
        return [Violation(execution_id, "row", f"the row fails its own checks: {exc}")]
    try:
        records = Records(
            execution=ex,
            transitions=await store.transitions(ex.id),
            checkpoints=await store.checkpoints(ex.id),
            outbox=await store.outbox_for(ex.id),
            inbox=await store.inbox_for(ex.id),
            logs=await store.logs(ex.id),
            quarantined_steps=_quarantined_steps(await store.quarantined(ex.id)),
            signals=await store.signals_for(ex.id),
        )
    except UNREADABLE as exc:
        # one of its records cannot be read back: that is the finding, and the walk
        # goes on to the next execution
        what = f"{type(exc).__name__}: {exc}"
        return [Violation(execution_id, "row", f"a record of it cannot be read: {what}")]
    return check(records, now=now, grace=grace)


def _quarantined_steps(entries: list[dict[str, Any]]) -> frozenset[int]:
    """The steps of the checkpoints recovery set aside (their quarantine payloads)."""
    steps: set[int] = set()
    for entry in entries:
        if entry.get("kind") != "checkpoint":
            continue
        payload = entry.get("payload")
        try:
            data = orjson.loads(payload) if isinstance(payload, str | bytes) else payload
        except orjson.JSONDecodeError:
            continue
        if isinstance(data, dict) and isinstance(data.get("seq"), int):
            steps.add(data["seq"])
    return frozenset(steps)


async def walk(
    store: Store,
    *,
    now: float,
    grace: float = 60.0,
    institution_id: str | None = None,
) -> AsyncIterator[tuple[str, list[Violation]]]:
    """Each execution's id with its violations (empty when sound), in id order."""
    after: str | None = None
    while True:
        ids = await store.execution_ids(after=after, limit=BATCH, institution_id=institution_id)
        if not ids:
            return
        after = ids[-1]
        for execution_id in ids:
            found = await check_execution(store, execution_id, now=now, grace=grace)
            if found is not None:
                yield execution_id, found


async def check_store(
    store: Store,
    *,
    now: float,
    grace: float = 60.0,
    institution_id: str | None = None,
    found: Callable[[Violation], None] | None = None,
) -> CheckReport:
    """Check every execution; ``found`` sees each violation as soon as it is found (the
    CLI prints them while a large store is still being walked)."""
    report = CheckReport()
    async for _, violations in walk(store, now=now, grace=grace, institution_id=institution_id):
        report.checked += 1
        report.violations.extend(violations)
        if found is not None:
            for violation in violations:
                found(violation)
    return report
