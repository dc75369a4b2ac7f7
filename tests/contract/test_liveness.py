"""Leases and the processes holding them: heartbeats, takeovers, releases, and the
order in which concurrent writers' trail lines become visible to a reader."""

from __future__ import annotations

import asyncio

import pytest

from trilha.errors import CorruptedRecord
from trilha.store.base import Store

from .conftest import LEASE, T0, Backend, Make, S

S_ALIVE = 1.5  # the grace a heartbeat gives (three beats of 0.5 s)


async def test_a_lease_of_an_owner_that_stopped_beating_is_taken_over(
    store: Store, make: Make
) -> None:
    ex = await make.create(store)
    first = await make.claim(store, ex, worker="w1")
    await store.heartbeat(["w1"], now=T0, alive_until=T0 + S_ALIVE)

    # alive: its lease holds, though the claim asks right after
    assert await store.claim_due("w2", now=T0 + 1, lease_seconds=LEASE, limit=10) == []
    # silent for longer than its grace: taken over long before the lease (30 s) ends
    taken = await store.claim_due("w2", now=T0 + 2, lease_seconds=LEASE, limit=10)
    assert [c.execution.id for c in taken] == [ex.id]
    assert taken[0].taken_from == "w1"
    assert taken[0].execution.fencing_token == first.execution.fencing_token + 1
    assert taken[0].execution.lease_owner == "w2"


async def test_a_beating_owner_keeps_its_lease_until_it_expires(store: Store, make: Make) -> None:
    ex = await make.create(store)
    await make.claim(store, ex, worker="w1")
    for beat in range(5):
        now = T0 + beat
        await store.heartbeat(["w1"], now=now, alive_until=now + S_ALIVE)
        assert await store.claim_due("w2", now=now + 1, lease_seconds=LEASE, limit=10) == []
    # still beating when its lease runs out: the lease decides
    now = T0 + LEASE
    await store.heartbeat(["w1"], now=now, alive_until=now + S_ALIVE)
    late = await store.claim_due("w2", now=now + 1, lease_seconds=LEASE, limit=10)
    assert [(c.execution.id, c.taken_from) for c in late] == [(ex.id, "w1")]


async def test_an_owner_never_heard_of_is_judged_by_its_lease_alone(
    store: Store, make: Make
) -> None:
    ex = await make.create(store)
    await make.claim(store, ex, worker="w3")
    assert await store.claim_due("w2", now=T0 + 10, lease_seconds=LEASE, limit=10) == []
    late = await store.claim_due("w2", now=T0 + LEASE + 1, lease_seconds=LEASE, limit=10)
    assert [(c.execution.id, c.taken_from) for c in late] == [(ex.id, "w3")]


async def test_a_stopped_owner_frees_its_leases_at_once(store: Store, make: Make) -> None:
    ex = await make.create(store)
    await make.claim(store, ex, worker="w1")
    await store.heartbeat(["w1"], now=T0, alive_until=T0 + S_ALIVE)
    await store.heartbeat(["w1"], now=T0 + 0.1, alive_until=T0 + 0.1)  # it stops
    taken = await store.claim_due("w2", now=T0 + 0.2, lease_seconds=LEASE, limit=10)
    assert [(c.execution.id, c.taken_from) for c in taken] == [(ex.id, "w1")]


async def test_a_claim_of_a_free_execution_names_no_previous_owner(
    store: Store, make: Make
) -> None:
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    assert claimed.taken_from is None
    await store.commit_step(make.step(claimed.execution, wake_at=T0), now=T0)
    again = await make.claim(store, ex, worker="w2")
    assert again.taken_from is None  # the commit released it


async def test_the_outbox_of_a_dispatcher_that_stopped_beating_is_taken_over(
    store: Store, make: Make
) -> None:
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    await store.commit_step(make.step(claimed.execution, texts=("oi",)), now=T0)
    out = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    assert [m.text for m in out] == ["oi"]
    await store.heartbeat(["d1"], now=T0, alive_until=T0 + S_ALIVE)
    assert await store.claim_outbox("d2", now=T0 + 1, lease_seconds=LEASE, limit=10) == []
    again = await store.claim_outbox("d2", now=T0 + 2, lease_seconds=LEASE, limit=10)
    assert [m.text for m in again] == ["oi"]


async def test_migrate_on_a_current_store_applies_nothing(store: Store) -> None:
    assert await store.migrate() == []


async def test_trail_lines_of_concurrent_writers_reach_a_reader_in_order_and_all(
    backend: Backend, make: Make
) -> None:
    """Eight handles (connections, for a server) commit steps with log lines at once
    while a reader follows the trail as a live stream does: it must never see an id
    below one it already passed, and at the end must have seen every line. (Without
    the PostgreSQL store's wait for the transactions in flight, a round of this fails
    about one time in three.)"""
    writers = [await backend.open() for _ in range(8)]
    reader = await backend.open()
    for _ in range(4):
        await _race(writers, reader, make)


async def _race(writers: list[Store], reader: Store, make: Make) -> None:
    executions = [await make.create(writers[0]) for _ in range(len(writers))]
    start = await reader.last_trail_id()
    done = asyncio.Event()
    seen: list[int] = []

    async def write(handle: Store, ex_id: str) -> None:
        ex = (await make.claim(handle, await handle.get_execution(ex_id))).execution
        for _ in range(25):
            commit = make.step(ex, release=False, wake_at=T0, texts=())
            await handle.commit_step(commit, now=T0)
            ex = commit.execution
        await handle.commit_step(make.step(ex, status=S.COMPLETED, texts=()), now=T0)

    async def follow() -> None:
        position = start
        while True:
            finished = done.is_set()
            lines = await reader.trail_since(position, limit=50)
            for line in lines:
                assert line.id > position, "a line below the stream's position appeared"
                position = line.id
                seen.append(line.id)
            if finished and not lines:
                return
            await asyncio.sleep(0)

    follower = asyncio.create_task(follow())
    await asyncio.gather(*(write(h, ex.id) for h, ex in zip(writers, executions, strict=True)))
    done.set()
    await asyncio.wait_for(follower, timeout=60)
    everything = [line.id for line in await reader.trail_since(start, limit=10_000)]
    assert len(everything) == len(writers) * 26
    assert seen == everything


async def test_tamper_writes_garbage_that_the_checks_then_catch(store: Store, make: Make) -> None:
    """Fault injection's corruption: the row or the latest checkpoint holds garbage, and
    reading it back fails its checksum (never a silent wrong value)."""
    a, b, c = [await make.create(store) for _ in range(3)]
    for ex in (a, b, c):
        claimed = await make.claim(store, ex)
        await store.commit_step(make.step(claimed.execution, wake_at=None), now=T0)
    assert await store.tamper(a.id, "variables", "{not json")
    assert await store.tamper(b.id, "current_node", "nowhere")
    assert await store.tamper(c.id, "checkpoint", "garbage")
    for ex in (a, b, c):
        with pytest.raises(CorruptedRecord):
            await store.get_execution(ex.id)
    (checkpoint,) = await store.checkpoints(c.id)
    assert checkpoint.state == "garbage"
    assert not await store.tamper("no-such-execution", "variables", "x")
    with pytest.raises(ValueError, match="unknown target"):
        await store.tamper(a.id, "flow", "x")
