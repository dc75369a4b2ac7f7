"""Store contract: flows, executions, claims and queue statistics, through the protocol only."""

from __future__ import annotations

import asyncio

import pytest

from trilha.core.states import ExecutionStatus, Outcome
from trilha.errors import ConversationBusy, ExecutionNotFound, StaleLease, StoreError
from trilha.store.base import Store

from .conftest import LEASE, T0, Backend, Make

S = ExecutionStatus

FLOW = {
    "id": "onboarding",
    "name": "Onboarding",
    "start": "welcome",
    "nodes": [{"id": "welcome", "type": "end"}],
}


def _changed(flow: dict[str, object], name: str) -> dict[str, object]:
    return flow | {"name": name}


# --------------------------------------------------------------------------- flows


async def test_publish_first_version_is_one(store: Store) -> None:
    """The first publish of a flow without a version stores version 1."""
    assert await store.publish_flow("onboarding", FLOW, T0) == 1
    stored = await store.get_flow("onboarding")
    assert stored is not None
    assert (stored.flow_id, stored.version, stored.created_at) == ("onboarding", 1, T0)
    assert stored.definition == FLOW | {"version": 1}


async def test_publish_unchanged_definition_keeps_version(store: Store) -> None:
    """Publishing the same definition again returns the latest version, storing nothing new."""
    first = await store.publish_flow("onboarding", FLOW, T0)
    again = await store.publish_flow("onboarding", dict(FLOW), T0 + 10)
    assert again == first == 1
    assert await store.get_flow("onboarding", 2) is None
    latest = await store.get_flow("onboarding")
    assert latest is not None
    assert latest.created_at == T0


async def test_publish_ignores_the_version_field_when_comparing(store: Store) -> None:
    """A definition that differs only by its ``version`` field counts as unchanged."""
    await store.publish_flow("onboarding", FLOW | {"version": 1}, T0)
    assert await store.publish_flow("onboarding", FLOW | {"version": 1}, T0 + 1) == 1
    assert await store.publish_flow("onboarding", FLOW, T0 + 2) == 1


async def test_publish_changed_definition_gets_next_version(store: Store) -> None:
    """A changed definition is stored as the next version; older versions stay readable."""
    assert await store.publish_flow("onboarding", FLOW, T0) == 1
    assert await store.publish_flow("onboarding", _changed(FLOW, "v2"), T0 + 1) == 2
    assert await store.publish_flow("onboarding", _changed(FLOW, "v3"), T0 + 2) == 3
    v1 = await store.get_flow("onboarding", 1)
    v2 = await store.get_flow("onboarding", 2)
    assert v1 is not None
    assert v2 is not None
    assert v1.definition["name"] == "Onboarding"
    assert v2.definition == _changed(FLOW, "v2") | {"version": 2}


async def test_republishing_an_old_definition_is_a_new_version(store: Store) -> None:
    """Going back to an older body after a change is a change: it gets the next version."""
    await store.publish_flow("onboarding", FLOW, T0)
    await store.publish_flow("onboarding", _changed(FLOW, "v2"), T0 + 1)
    assert await store.publish_flow("onboarding", FLOW, T0 + 2) == 3


async def test_get_flow_latest_specific_and_missing(store: Store) -> None:
    """get_flow gives the latest without a version, the exact one with it, None if absent."""
    await store.publish_flow("onboarding", FLOW, T0)
    await store.publish_flow("onboarding", _changed(FLOW, "v2"), T0 + 5)
    latest = await store.get_flow("onboarding")
    first = await store.get_flow("onboarding", 1)
    assert latest is not None
    assert first is not None
    assert (latest.version, latest.created_at) == (2, T0 + 5)
    assert (first.version, first.created_at) == (1, T0)
    assert await store.get_flow("onboarding", 3) is None
    assert await store.get_flow("nope") is None


async def test_list_flows_gives_the_latest_of_each(store: Store) -> None:
    """list_flows returns one entry per flow, each at its latest version."""
    assert await store.list_flows() == []
    await store.publish_flow("b-flow", FLOW | {"id": "b-flow"}, T0)
    await store.publish_flow("a-flow", FLOW | {"id": "a-flow"}, T0)
    await store.publish_flow("a-flow", _changed(FLOW | {"id": "a-flow"}, "a2"), T0 + 1)
    flows = await store.list_flows()
    assert sorted((f.flow_id, f.version) for f in flows) == [("a-flow", 2), ("b-flow", 1)]
    a = next(f for f in flows if f.flow_id == "a-flow")
    assert a.definition["name"] == "a2"


# --------------------------------------------------------------------------- executions


async def test_create_execution_round_trips(store: Store, make: Make) -> None:
    """A created execution reads back field for field, with its birth transition and log."""
    ex = make.execution(
        variables={"cpf": "123", "nested": {"a": [1, 2]}},
        node_state={"asked": 1},
        channel="whatsapp",
        due_at=T0 + 100,
        waiting_for=None,
    )
    birth = make.started(ex)
    log = make.log(ex)
    returned = await store.create_execution(ex, birth, [log])
    assert returned == ex
    assert await store.get_execution(ex.id) == ex
    assert await store.transitions(ex.id) == [birth]
    assert await store.logs(ex.id) == [log]
    assert await store.checkpoints(ex.id) == []
    assert await store.outbox_for(ex.id) == []


async def test_get_execution_unknown_raises(store: Store) -> None:
    """get_execution of an unknown id raises ExecutionNotFound."""
    with pytest.raises(ExecutionNotFound):
        await store.get_execution("no-such-execution")


async def test_second_active_execution_is_refused(store: Store, make: Make) -> None:
    """A second active execution in one conversation raises ConversationBusy, writing nothing."""
    first = await make.create(store, conversation="c1")
    second = make.execution(conversation="c1")
    with pytest.raises(ConversationBusy):
        await store.create_execution(second, make.started(second), [make.log(second)])
    with pytest.raises(ExecutionNotFound):
        await store.get_execution(second.id)
    assert await store.transitions(second.id) == []
    assert await store.logs(second.id) == []
    assert (await store.get_execution(first.id)).status is S.RUNNING


@pytest.mark.parametrize("status", [S.WAITING_INPUT, S.WAITING_DELAY, S.PAUSED, S.RECOVERING])
async def test_every_non_terminal_status_is_active(
    store: Store, make: Make, status: ExecutionStatus
) -> None:
    """An execution in any non-terminal status keeps its conversation busy."""
    await make.create(store, conversation="c1", status=status)
    with pytest.raises(ConversationBusy):
        await make.create(store, conversation="c1")


async def test_new_execution_allowed_once_the_old_one_ended(store: Store, make: Make) -> None:
    """After the active execution reaches a terminal state, the conversation takes a new one."""
    old = await make.create(store, conversation="c1")
    claimed = await make.claim(store, old)
    await store.commit_step(make.step(claimed.execution, status=S.COMPLETED), now=T0)
    new = await make.create(store, conversation="c1", created_at=T0 + 1)
    assert (await store.get_execution(new.id)).status is S.RUNNING
    assert (await store.get_execution(old.id)).status is S.COMPLETED


async def test_replace_cancels_the_active_execution(store: Store, make: Make) -> None:
    """replace=True cancels the old execution with a recorded reason and inserts the new one."""
    old = await make.create(store, conversation="c1", status=S.WAITING_INPUT, wake_at=T0 + 50)
    new = await make.create(store, conversation="c1", created_at=T0 + 1, replace=True)
    gone = await store.get_execution(old.id)
    assert gone.status is S.CANCELLED
    assert gone.outcome is Outcome.CANCELLED
    assert gone.wake_at is None
    assert gone.ended_at is not None
    last = (await store.transitions(old.id))[-1]
    assert (last.source, last.target) == (S.WAITING_INPUT, S.CANCELLED)
    assert last.reason == f"replaced by execution {new.id}"
    # its trail ends like any other: the state change, then the end
    tail = [(r.message, r.context) for r in (await store.logs(old.id))[-2:]]
    assert tail == [
        (
            "execution.state_changed",
            {"from": "waiting_input", "to": "cancelled", "reason": last.reason},
        ),
        (
            "execution.ended",
            {"status": "cancelled", "outcome": "cancelled", "reason": last.reason},
        ),
    ]
    assert (await store.get_execution(new.id)).status is S.RUNNING
    assert (await store.latest_execution("inst-1", "c1")).id == new.id
    claims = await store.claim_due("w1", now=T0 + 100, lease_seconds=LEASE, limit=10)
    assert [c.execution.id for c in claims] == [new.id]


async def test_replace_is_one_transaction(store: Store, make: Make) -> None:
    """If the new execution cannot be inserted, the old one is not cancelled either."""
    old = await make.create(store, conversation="c1")
    clash = make.execution(conversation="c1", id=old.id, created_at=T0 + 1)
    with pytest.raises(StoreError):
        await store.create_execution(clash, make.started(clash), [make.log(clash)], replace=True)
    assert await store.get_execution(old.id) == old
    assert [t.target for t in await store.transitions(old.id)] == [S.RUNNING]


async def test_concurrent_creates_admit_one(store: Store, make: Make) -> None:
    """Of many executions created at once for one conversation, exactly one is stored."""
    results = await asyncio.gather(
        *(make.create(store, conversation="c1") for _ in range(8)), return_exceptions=True
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    assert len(created) == 1
    assert all(isinstance(r, ConversationBusy) for r in results if r not in created)
    assert (await store.latest_execution("inst-1", "c1")).id == created[0].id


async def test_replace_without_an_active_execution_just_creates(store: Store, make: Make) -> None:
    """replace=True on an idle conversation creates the execution and cancels nothing."""
    new = await make.create(store, conversation="c1", replace=True)
    assert (await store.get_execution(new.id)).status is S.RUNNING
    assert [t.target for t in await store.transitions(new.id)] == [S.RUNNING]


async def test_replace_fences_out_the_worker_of_the_old_execution(store: Store, make: Make) -> None:
    """A worker still holding the replaced execution cannot commit to it afterwards."""
    old = await make.create(store, conversation="c1")
    claimed = await make.claim(store, old)
    await make.create(store, conversation="c1", created_at=T0 + 1, replace=True)
    late = make.step(claimed.execution, status=S.WAITING_INPUT, texts=["late"])
    with pytest.raises(StaleLease):
        await store.commit_step(late, now=T0 + 2)
    gone = await store.get_execution(old.id)
    assert gone.status is S.CANCELLED
    assert await store.outbox_for(old.id) == []
    assert await store.checkpoints(old.id) == []


async def test_institutions_are_independent(store: Store, make: Make) -> None:
    """The same conversation id in two institutions holds two active executions."""
    a = await make.create(store, institution="inst-a", conversation="shared")
    b = await make.create(store, institution="inst-b", conversation="shared")
    assert (await store.latest_execution("inst-a", "shared")).id == a.id
    assert (await store.latest_execution("inst-b", "shared")).id == b.id
    c = await make.create(store, institution="inst-b", conversation="shared", replace=True)
    assert (await store.get_execution(a.id)).status is S.RUNNING
    assert (await store.get_execution(b.id)).status is S.CANCELLED
    assert (await store.latest_execution("inst-b", "shared")).id == c.id


async def test_latest_execution(store: Store, make: Make) -> None:
    """latest_execution gives the conversation's newest execution, ended or not."""
    with pytest.raises(ExecutionNotFound):
        await store.latest_execution("inst-1", "c1")
    first = await make.create(store, conversation="c1", created_at=T0)
    second = await make.create(store, conversation="c1", created_at=T0 + 5, replace=True)
    await make.create(store, conversation="other", created_at=T0 + 9)
    assert (await store.latest_execution("inst-1", "c1")).id == second.id
    assert (await store.latest_execution(None, "c1")).id == second.id
    assert first.id != second.id
    with pytest.raises(ExecutionNotFound):
        await store.latest_execution("inst-2", "c1")


async def test_list_executions_newest_first(store: Store, make: Make) -> None:
    """list_executions returns executions newest first, at most ``limit``."""
    made = [await make.create(store, created_at=T0 + i) for i in range(4)]
    listed = await store.list_executions(limit=3)
    assert [e.id for e in listed] == [e.id for e in reversed(made)][:3]
    assert len(await store.list_executions()) == 4


# --------------------------------------------------------------------------- claims


async def test_claim_takes_only_due_executions(store: Store, make: Make) -> None:
    """claim_due leases executions whose wake time has come and nothing else."""
    due = await make.create(store, wake_at=T0 - 1)
    exact = await make.create(store, wake_at=T0)
    await make.create(store, wake_at=T0 + 1)
    await make.create(store, status=S.WAITING_INPUT, wake_at=None)
    claims = await store.claim_due("w1", now=T0, lease_seconds=LEASE, limit=10)
    assert sorted(c.execution.id for c in claims) == sorted([due.id, exact.id])
    for c in claims:
        assert c.execution.lease_owner == "w1"
        assert c.execution.lease_expires_at == T0 + LEASE
        assert c.inbound is None


async def test_claim_bumps_the_fencing_token(store: Store, make: Make) -> None:
    """Every claim hands out a higher fencing token, also seen by get_execution."""
    ex = await make.create(store)
    before = (await store.get_execution(ex.id)).fencing_token
    claimed = await make.claim(store, ex)
    assert claimed.execution.fencing_token > before
    stored = await store.get_execution(ex.id)
    assert stored.fencing_token == claimed.execution.fencing_token
    assert stored.lease_owner == "w1"


async def test_claim_is_exclusive_while_the_lease_lives(store: Store, make: Make) -> None:
    """A second claim before the lease expires gets nothing, even asking for the id."""
    ex = await make.create(store)
    await make.claim(store, ex, worker="w1")
    for when in (T0, T0 + LEASE / 2, T0 + LEASE - 0.001):
        assert await store.claim_due("w2", now=when, lease_seconds=LEASE, limit=10) == []
        assert (
            await store.claim_due("w2", now=when, lease_seconds=LEASE, limit=10, execution_id=ex.id)
            == []
        )


async def test_claim_after_lease_expiry_gets_a_higher_token(store: Store, make: Make) -> None:
    """Once the lease expired another worker claims it, with a strictly higher token."""
    ex = await make.create(store)
    first = await make.claim(store, ex, worker="w1")
    second = await make.claim(store, ex, worker="w2", now=T0 + LEASE + 1)
    assert second.execution.fencing_token > first.execution.fencing_token
    assert second.execution.lease_owner == "w2"
    assert second.execution.lease_expires_at == T0 + 2 * LEASE + 1


async def test_claim_execution_id_filter(store: Store, make: Make) -> None:
    """execution_id restricts the claim to that execution; the others stay claimable."""
    a = await make.create(store)
    b = await make.create(store)
    claims = await store.claim_due("w1", now=T0, lease_seconds=LEASE, limit=10, execution_id=b.id)
    assert [c.execution.id for c in claims] == [b.id]
    rest = await store.claim_due("w1", now=T0, lease_seconds=LEASE, limit=10)
    assert [c.execution.id for c in rest] == [a.id]
    future = await make.create(store, wake_at=T0 + 100)
    assert (
        await store.claim_due("w1", now=T0, lease_seconds=LEASE, limit=10, execution_id=future.id)
        == []
    )


async def test_claim_limit_takes_the_earliest_first(store: Store, make: Make) -> None:
    """limit caps the claim and the earliest wake times go first."""
    late = await make.create(store, wake_at=T0 - 1)
    early = await make.create(store, wake_at=T0 - 30)
    middle = await make.create(store, wake_at=T0 - 10)
    first = await store.claim_due("w1", now=T0, lease_seconds=LEASE, limit=2)
    assert [c.execution.id for c in first] == [early.id, middle.id]
    second = await store.claim_due("w1", now=T0, lease_seconds=LEASE, limit=2)
    assert [c.execution.id for c in second] == [late.id]


async def test_concurrent_claims_never_share_an_execution(store: Store, make: Make) -> None:
    """Many workers claiming at once each get disjoint executions, all of them in total."""
    made = {(await make.create(store)).id for _ in range(20)}
    results = await asyncio.gather(
        *(store.claim_due(f"w{i}", now=T0, lease_seconds=LEASE, limit=3) for i in range(10))
    )
    ids = [c.execution.id for claims in results for c in claims]
    assert len(ids) == len(set(ids)) == len(made)
    assert set(ids) == made


async def test_two_handles_never_share_an_execution(
    backend: Backend, store: Store, make: Make
) -> None:
    """Two store handles on one database (two processes) never lease the same execution."""
    other = await backend.open()
    made = {(await make.create(store)).id for _ in range(30)}
    results = await asyncio.gather(
        *(
            handle.claim_due(f"w{i}", now=T0, lease_seconds=LEASE, limit=4)
            for i in range(8)
            for handle in (store, other)
        )
    )
    ids = [c.execution.id for claims in results for c in claims]
    assert len(ids) == len(set(ids))
    assert set(ids) == made


async def test_renew_lease(store: Store, make: Make) -> None:
    """renew_lease extends a held lease; a stale token or owner raises StaleLease."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    token = claimed.execution.fencing_token
    await store.renew_lease(ex.id, "w1", token, T0 + 3 * LEASE)
    assert (await store.get_execution(ex.id)).lease_expires_at == T0 + 3 * LEASE
    assert await store.claim_due("w2", now=T0 + 2 * LEASE, lease_seconds=LEASE, limit=10) == []
    with pytest.raises(StaleLease):
        await store.renew_lease(ex.id, "w2", token, T0 + 4 * LEASE)
    with pytest.raises(StaleLease):
        await store.renew_lease(ex.id, "w1", token - 1, T0 + 4 * LEASE)
    stolen = await make.claim(store, ex, worker="w2", now=T0 + 3 * LEASE + 1)
    with pytest.raises(StaleLease):
        await store.renew_lease(ex.id, "w1", token, T0 + 9 * LEASE)
    assert (await store.get_execution(ex.id)).lease_owner == "w2"
    assert stolen.execution.fencing_token > token


# --------------------------------------------------------------------------- queue stats


async def test_queue_stats_counts(store: Store, make: Make) -> None:
    """queue_stats counts due, leased, waiting executions and pending outbox messages."""
    empty = await store.queue_stats(T0)
    assert (empty.due, empty.leased, empty.waiting, empty.pending_outbox) == (0, 0, 0, 0)
    assert empty.next_wake_at is None
    due = await make.create(store, wake_at=T0 - 5)
    await make.create(store, wake_at=T0 - 1)
    await make.create(store, status=S.WAITING_DELAY, wake_at=T0 + 60)
    await make.create(store, status=S.WAITING_INPUT, wake_at=None)
    stats = await store.queue_stats(T0)
    assert (stats.due, stats.leased, stats.waiting, stats.pending_outbox) == (2, 0, 2, 0)
    assert stats.next_wake_at == T0 - 5

    claimed = await make.claim(store, due)
    await store.commit_step(
        make.step(claimed.execution, texts=["a", "b"], wake_at=T0 + 30, release=False), now=T0
    )
    stats = await store.queue_stats(T0)
    assert stats.leased == 1
    assert stats.pending_outbox == 2
    mine = await store.queue_stats(T0, due.id)
    assert (mine.due, mine.leased, mine.waiting, mine.pending_outbox) == (0, 1, 0, 2)
    assert mine.next_wake_at == T0 + 30


async def test_count_by_status(store: Store, make: Make) -> None:
    """count_by_status counts executions per status and leaves out statuses with none."""
    assert await store.count_by_status() == {}
    await make.create(store, wake_at=T0)
    await make.create(store, wake_at=T0)
    await make.create(store, status=S.WAITING_INPUT, wake_at=None)
    assert await store.count_by_status() == {"running": 2, "waiting_input": 1}


async def test_queue_stats_due_counts_only_claimable_work(store: Store, make: Make) -> None:
    """An execution under a live lease is counted as leased, not as due (claim_due skips it)."""
    ex = await make.create(store, wake_at=T0)
    await make.claim(store, ex)
    assert await store.claim_due("w2", now=T0 + 1, lease_seconds=LEASE, limit=10) == []
    stats = await store.queue_stats(T0 + 1)
    assert stats.leased == 1
    assert stats.due == 0
