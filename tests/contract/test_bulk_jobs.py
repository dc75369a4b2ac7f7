"""Store contract: bulk jobs. A job is stored running and unleased, with its filter as
given and the store's filter it meant; one process holds it at a time (a lease, lapsed
by expiry or by its owner's stopped heartbeat, then taken over) and only the holder
writes its progress; running jobs are bounded per institution; the count and the
listing's cursor walk the same executions; and all of it survives a restart."""

from __future__ import annotations

import dataclasses

import pytest

from trilha.errors import LimitExceeded
from trilha.store.base import BulkJob, ExecutionFilter, StepErrorMatch, Store

from .conftest import LEASE, T0, Backend, Make

SELECTION = ExecutionFilter(
    institution_id="inst-1",
    status="waiting_input",
    failed_step=StepErrorMatch(since=T0 - 60, node_id="lookup", status=503),
)


def job(job_id: str = "bulk-1", institution: str = "inst-1", **fields: object) -> BulkJob:
    return BulkJob(
        id=job_id,
        institution_id=institution,
        actor="key:abc",
        action="pause",
        filter={"status": "waiting_input", "errorNode": "lookup"},
        selection=dataclasses.replace(SELECTION, institution_id=institution),
        reason="incident 42",
        total=3,
        created_at=T0,
        updated_at=T0,
        cursor=(T0, "~"),
        **fields,  # type: ignore[arg-type]
    )


async def test_a_job_is_held_by_one_process_and_only_it_writes(
    store: Store, backend: Backend
) -> None:
    """Stored as given; one claim holds it; another process neither claims it nor
    writes to it; progress and the end are the holder's, and an ended job is no one's."""
    stored = await store.create_bulk_job(job(), max_running=3)
    assert stored == job()
    assert await store.get_bulk_job("bulk-1") == stored
    assert await store.get_bulk_job("bulk-2") is None
    held = await store.claim_bulk_job("a", now=T0, lease_seconds=LEASE)
    assert held is not None and (held.lease_owner, held.lease_expires_at) == ("a", T0 + LEASE)
    assert await store.claim_bulk_job("b", now=T0 + 1, lease_seconds=LEASE) is None
    moved = dataclasses.replace(
        held,
        done=2,
        succeeded=1,
        skipped=1,
        skips=[{"executionId": "ex-2", "reason": "it is completed"}],
        cursor=(T0 - 5, "ex-2"),
    )
    assert not await store.save_bulk_progress(moved, owner="b", now=T0 + 2, lease_until=T0 + 60)
    assert await store.save_bulk_progress(moved, owner="a", now=T0 + 2, lease_until=T0 + 60)
    read = await store.get_bulk_job("bulk-1")
    assert read == dataclasses.replace(moved, updated_at=T0 + 2, lease_expires_at=T0 + 60)
    ended = dataclasses.replace(moved, status="completed", finished_at=T0 + 3)
    assert await store.save_bulk_progress(ended, owner="a", now=T0 + 3, lease_until=T0 + 60)
    assert await store.claim_bulk_job("b", now=T0 + 99, lease_seconds=LEASE) is None
    assert not await store.save_bulk_progress(moved, owner="a", now=T0 + 4, lease_until=T0 + 60)
    store = await backend.reopen(store)  # a restart keeps it all
    final = await store.get_bulk_job("bulk-1")
    assert final == dataclasses.replace(
        ended, updated_at=T0 + 3, lease_owner=None, lease_expires_at=None
    )
    assert final.selection == SELECTION  # the failed-step match round-trips
    assert [j.id for j in await store.bulk_jobs(institution_id="inst-1")] == ["bulk-1"]
    assert await store.bulk_jobs(status="running") == []


async def test_a_lapsed_lease_is_taken_over(store: Store) -> None:
    """A job whose holder stopped its heartbeat, or whose lease expired, goes to the next
    claimer; the old holder's late write is refused."""
    await store.create_bulk_job(job("bulk-1"), max_running=3)
    await store.create_bulk_job(job("bulk-2"), max_running=3)
    first = await store.claim_bulk_job("a", now=T0, lease_seconds=LEASE)
    second = await store.claim_bulk_job("b", now=T0, lease_seconds=LEASE)
    assert first is not None and second is not None
    assert (first.id, second.id) == ("bulk-1", "bulk-2")  # oldest first
    await store.heartbeat(["a"], now=T0 + 1, alive_until=T0 + 1)  # a stopped
    taken = await store.claim_bulk_job("c", now=T0 + 2, lease_seconds=LEASE)
    assert taken is not None and taken.id == "bulk-1" and taken.lease_owner == "c"
    assert not await store.save_bulk_progress(first, owner="a", now=T0 + 3, lease_until=T0 + 9)
    assert await store.claim_bulk_job("d", now=T0 + 3, lease_seconds=LEASE) is None
    expired = await store.claim_bulk_job("d", now=T0 + LEASE + 1, lease_seconds=LEASE)
    assert expired is not None and expired.id == "bulk-2"  # b's lease ran out
    again = await store.claim_bulk_job("e", now=T0 + 3 * LEASE, lease_seconds=LEASE, job_id="x")
    assert again is None  # only the job named


async def test_running_jobs_are_bounded_per_institution(store: Store) -> None:
    """Past ``max_running`` running jobs of an institution a new one is refused; another
    institution's are not counted, and an ended job frees its place."""
    await store.create_bulk_job(job("bulk-1"), max_running=2)
    await store.create_bulk_job(job("bulk-2"), max_running=2)
    with pytest.raises(LimitExceeded, match="2 bulk actions running"):
        await store.create_bulk_job(job("bulk-3"), max_running=2)
    await store.create_bulk_job(job("bulk-4", institution="inst-2"), max_running=2)
    held = await store.claim_bulk_job("a", now=T0, lease_seconds=LEASE, job_id="bulk-1")
    assert held is not None
    ended = dataclasses.replace(held, status="completed", finished_at=T0)
    assert await store.save_bulk_progress(ended, owner="a", now=T0, lease_until=T0)
    await store.create_bulk_job(job("bulk-3"), max_running=2)
    assert await store.get_bulk_job("bulk-3") is not None


async def test_the_count_and_the_cursor_walk_the_same_executions(store: Store, make: Make) -> None:
    """``count_executions`` counts what ``list_executions`` lists from a cursor on
    (newest first), bounded by its limit; a start cursor leaves later executions out."""
    ids = []
    for n in range(5):
        ex = await make.create(store, created_at=T0 - 10 + n, institution="inst-1")
        ids.append(ex.id)
    await make.create(store, created_at=T0 - 3, institution="inst-2")
    await make.create(store, created_at=T0 + 50, institution="inst-1")  # after the start
    where = ExecutionFilter(institution_id="inst-1")
    start = (T0, "~")
    assert await store.count_executions(where=where, before=start, limit=100) == 5
    assert await store.count_executions(where=where, before=start, limit=3) == 3
    assert await store.count_executions(where=where, limit=100) == 6
    seen, cursor = [], start
    while page := await store.list_executions(limit=2, where=where, before=cursor):
        seen += [ex.id for ex in page]
        cursor = (page[-1].created_at, page[-1].id)
    assert seen == ids[::-1]
    assert await store.count_executions(where=where, before=cursor, limit=100) == 0
