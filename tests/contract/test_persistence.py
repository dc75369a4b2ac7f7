"""Store contract: everything committed survives closing and reopening the store."""

from __future__ import annotations

import pytest

from trilha.core.states import ExecutionStatus
from trilha.errors import StaleLease
from trilha.store.base import Store

from .conftest import LEASE, T0, Backend, Make

S = ExecutionStatus

FLOW = {"id": "onboarding", "name": "Onboarding", "start": "a", "nodes": []}


async def test_reopen_keeps_everything(backend: Backend, store: Store, make: Make) -> None:
    """After close and reopen, flows, executions and every trail table read back the same."""
    await store.publish_flow("onboarding", FLOW, T0)
    await store.publish_flow("onboarding", FLOW | {"name": "v2"}, T0 + 1)
    ex = await make.create(store, status=S.WAITING_INPUT, wake_at=None)
    await make.inbound(store, ex, "first", message_id="m1")
    claimed = await make.claim(store, ex)
    assert claimed.inbound is not None
    await store.commit_step(
        make.step(
            claimed.execution,
            status=S.WAITING_INPUT,
            texts=["a", "b"],
            applied=[claimed.inbound.id],
            handoffs=1,
            wake_at=T0 + 3600,
        ),
        now=T0 + 1,
    )
    pending = await make.inbound(store, ex, "second", message_id="m2", now=T0 + 2)
    other = await make.create(store, wake_at=T0 + 50)
    flows = await store.list_flows()
    v1 = await store.get_flow("onboarding", 1)
    trail = await make.trail(store, ex.id)
    other_before = await store.get_execution(other.id)
    stats = await store.queue_stats(T0 + 2)

    store = await backend.reopen(store)

    assert await store.list_flows() == flows
    assert await store.get_flow("onboarding", 1) == v1
    assert await make.trail(store, ex.id) == trail
    assert await store.get_execution(other.id) == other_before
    assert await store.queue_stats(T0 + 2) == stats
    assert await store.publish_flow("onboarding", FLOW | {"name": "v2"}, T0 + 9) == 2
    # the acknowledged reply is still pending and still deduplicated
    assert (await make.inbound(store, ex, "second", message_id="m2")).status == "duplicate"
    assert (await make.inbound(store, ex, "first", message_id="m1")).status == "duplicate"
    again = await make.claim(store, ex, now=T0 + 3)
    assert again.inbound == pending.message
    assert [
        m.text for m in await store.claim_outbox("d", now=T0 + 3, lease_seconds=LEASE, limit=9)
    ] == ["a", "b"]


async def test_reopen_keeps_leases_and_tokens(backend: Backend, store: Store, make: Make) -> None:
    """A live lease and its fencing token survive a restart of the store."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    store = await backend.reopen(store)
    assert await store.claim_due("w2", now=T0 + 1, lease_seconds=LEASE, limit=10) == []
    late = await make.claim(store, ex, worker="w2", now=T0 + LEASE + 1)
    assert late.execution.fencing_token > claimed.execution.fencing_token
    with pytest.raises(StaleLease):
        await store.commit_step(make.step(claimed.execution), now=T0 + LEASE + 2)
    await store.commit_step(make.step(late.execution), now=T0 + LEASE + 2)
    assert (await store.get_execution(ex.id)).step_seq == 1


async def test_reopen_twice_changes_nothing(backend: Backend, store: Store, make: Make) -> None:
    """Opening an already migrated database again neither loses nor duplicates anything."""
    ex = await make.create(store)
    trail = await make.trail(store, ex.id)
    for _ in range(3):
        store = await backend.reopen(store)
    assert await make.trail(store, ex.id) == trail
    assert len(await store.list_executions()) == 1
