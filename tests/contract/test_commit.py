"""Store contract: commit_step is atomic, fenced, and isolated from the commits around it."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TypeVar

import pytest

from trilha.core.execution import Execution, OutboundMessage
from trilha.core.states import ExecutionStatus
from trilha.errors import StaleLease, StoreError
from trilha.store.base import Claimed, StepCommit, Store

from .conftest import LEASE, T0, Make

S = ExecutionStatus
T = TypeVar("T")


async def _waiting_with_reply(store: Store, make: Make, text: str = "12345678901") -> Claimed:
    """An execution waiting for input, woken by a reply, claimed by w1."""
    ex = await make.create(store, status=S.WAITING_INPUT, wake_at=None)
    await make.inbound(store, ex, text)
    claimed = await make.claim(store, ex)
    assert claimed.inbound is not None
    return claimed


def _unsaved(messages: list[OutboundMessage]) -> list[OutboundMessage]:
    """The messages as the engine built them, before the store gave them an id."""
    return [dataclasses.replace(m, id=None) for m in messages]


def _tail(items: list[T], n: int) -> list[T]:
    return items[len(items) - n :]


async def test_commit_writes_every_part(store: Store, make: Make) -> None:
    """One commit lands the execution, checkpoint, transitions, outbox, inbox, handoffs, logs."""
    claimed = await _waiting_with_reply(store, make)
    assert claimed.inbound is not None
    birth = await make.trail(store, claimed.execution.id)
    commit = make.step(
        claimed.execution,
        status=S.WAITING_INPUT,
        texts=["Thanks!", "Anything else?"],
        applied=[claimed.inbound.id],
        handoffs=1,
        wake_at=T0 + 600,
        waiting_for="input",
        due_at=T0 + 600,
        variables={"name": "Ana", "cpf": "12345678901"},
    )
    expected = make.released(commit.execution, updated_at=T0 + 1)
    await store.commit_step(commit, now=T0 + 1)

    after = await make.trail(store, expected.id)
    assert after.execution == expected
    assert after.checkpoints == commit.checkpoints
    assert after.transitions == birth.transitions + commit.transitions
    assert after.logs == birth.logs + commit.logs
    assert after.handoffs == commit.handoffs
    assert _unsaved(after.outbox) == commit.outbox
    ids = [m.id for m in after.outbox]
    assert all(isinstance(i, int) for i in ids)
    assert ids == sorted(ids)
    assert [(e.sender, e.text) for e in after.transcript] == [
        ("contact", "12345678901"),
        ("bot", "Thanks!"),
        ("bot", "Anything else?"),
    ]


async def test_applied_reply_is_not_handed_out_again(store: Store, make: Make) -> None:
    """After a commit applies a reply, the next claim of the execution carries no input."""
    claimed = await _waiting_with_reply(store, make)
    assert claimed.inbound is not None
    commit = make.step(
        claimed.execution, status=S.WAITING_INPUT, applied=[claimed.inbound.id], wake_at=T0 + 60
    )
    await store.commit_step(commit, now=T0)
    again = await make.claim(store, claimed.execution, now=T0 + 60)
    assert again.inbound is None


async def test_stale_commit_writes_nothing(store: Store, make: Make) -> None:
    """A commit under a superseded fencing token raises StaleLease and changes no table."""
    first = await _waiting_with_reply(store, make)
    assert first.inbound is not None
    second = await make.claim(store, first.execution, worker="w2", now=T0 + LEASE + 1)
    before = await make.trail(store, first.execution.id)

    late = make.step(
        first.execution,
        status=S.COMPLETED,
        texts=["late 1", "late 2"],
        applied=[first.inbound.id],
        handoffs=2,
    )
    with pytest.raises(StaleLease):
        await store.commit_step(late, now=T0 + LEASE + 2)

    assert await make.trail(store, first.execution.id) == before
    assert before.execution.lease_owner == "w2"
    assert before.execution.fencing_token == second.execution.fencing_token
    # the reply is still pending: the next owner gets it
    third = await make.claim(store, first.execution, worker="w3", now=T0 + 3 * LEASE)
    assert third.inbound == first.inbound


@pytest.mark.parametrize("release", [True, False], ids=["release", "keep-lease"])
async def test_the_token_alone_fences_off_the_same_worker_after_its_lease_lapsed(
    store: Store, make: Make, release: bool
) -> None:
    """w1 claims, its lease lapses, w1 claims again: the owner is the same, only the fencing
    token tells the two claims apart. A commit or a renewal under the first token raises
    StaleLease and writes nothing; a commit under the second lands."""
    ex = await make.create(store)
    first = await make.claim(store, ex, worker="w1")
    second = await make.claim(store, ex, worker="w1", now=T0 + LEASE + 1)
    assert second.execution.lease_owner == first.execution.lease_owner == "w1"
    assert second.execution.fencing_token == first.execution.fencing_token + 1
    before = await make.trail(store, ex.id)

    late = make.step(first.execution, texts=["late"], release=release)
    with pytest.raises(StaleLease):
        await store.commit_step(late, now=T0 + LEASE + 2)
    with pytest.raises(StaleLease):
        await store.renew_lease(ex.id, "w1", first.execution.fencing_token, T0 + 3 * LEASE)
    assert await make.trail(store, ex.id) == before

    current = make.step(second.execution, texts=["current"], release=release)
    await store.commit_step(current, now=T0 + LEASE + 3)
    after = await make.trail(store, ex.id)
    assert [m.text for m in after.outbox] == ["current"]
    assert [c.seq for c in after.checkpoints] == [1]
    assert after.execution.fencing_token == second.execution.fencing_token


async def test_commit_with_a_token_never_issued_is_refused(store: Store, make: Make) -> None:
    """A commit whose token is newer than the current one is refused like a stale one."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    before = await make.trail(store, ex.id)
    bogus = make.step(claimed.execution, token=claimed.execution.fencing_token + 1)
    with pytest.raises(StaleLease):
        await store.commit_step(bogus, now=T0)
    assert await make.trail(store, ex.id) == before


async def test_commit_without_any_claim_is_refused(store: Store, make: Make) -> None:
    """A commit for an execution nobody claimed is refused and writes nothing."""
    ex = await make.create(store)
    before = await make.trail(store, ex.id)
    with pytest.raises(StaleLease):
        await store.commit_step(make.step(ex, owner="w1"), now=T0)
    assert await make.trail(store, ex.id) == before


async def test_commit_after_release_is_refused(store: Store, make: Make) -> None:
    """Once a commit released the lease, another commit under the same token is refused."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    first = make.step(claimed.execution, status=S.WAITING_DELAY, wake_at=T0 + 60)
    await store.commit_step(first, now=T0)
    before = await make.trail(store, ex.id)
    again = make.step(first.execution, status=S.COMPLETED, owner="w1")
    with pytest.raises(StaleLease):
        await store.commit_step(again, now=T0 + 1)
    assert await make.trail(store, ex.id) == before


async def test_release_clears_the_lease(store: Store, make: Make) -> None:
    """release=True gives the lease up: the execution is claimable as soon as it is due."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    await store.commit_step(
        make.step(claimed.execution, status=S.WAITING_DELAY, wake_at=T0 + 10), now=T0
    )
    stored = await store.get_execution(ex.id)
    assert (stored.lease_owner, stored.lease_expires_at) == (None, None)
    assert (await store.queue_stats(T0)).leased == 0
    assert await store.claim_due("w2", now=T0 + 9, lease_seconds=LEASE, limit=10) == []
    # due again well before the old lease (T0 + LEASE) would have expired
    again = await make.claim(store, ex, worker="w2", now=T0 + 10)
    assert again.execution.fencing_token > claimed.execution.fencing_token
    assert again.execution.status is S.WAITING_DELAY
    with pytest.raises(StaleLease):
        await store.renew_lease(ex.id, "w1", claimed.execution.fencing_token, T0 + 99)


async def test_release_false_keeps_the_lease(store: Store, make: Make) -> None:
    """release=False keeps the lease: nobody else claims it and the holder commits again."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    first = make.step(claimed.execution, wake_at=T0, release=False, texts=["one"])
    first.execution.lease_expires_at = T0 + 2 * LEASE
    await store.commit_step(first, now=T0)
    held = await store.get_execution(ex.id)
    assert held.lease_owner == "w1"
    assert held.fencing_token == claimed.execution.fencing_token
    assert await store.claim_due("w2", now=T0 + LEASE + 1, lease_seconds=LEASE, limit=10) == []

    second = make.step(first.execution, status=S.COMPLETED, texts=["two"])
    await store.commit_step(second, now=T0 + 1)
    done = await store.get_execution(ex.id)
    assert done.status is S.COMPLETED
    assert done.lease_owner is None
    assert [c.seq for c in await store.checkpoints(ex.id)] == [1, 2]
    assert [m.text for m in await store.outbox_for(ex.id)] == ["one", "two"]


async def test_ended_execution_is_never_claimed(store: Store, make: Make) -> None:
    """An execution committed into a terminal state without a wake time is never claimed."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    await store.commit_step(make.step(claimed.execution, status=S.COMPLETED), now=T0)
    assert await store.claim_due("w1", now=T0 + 10**6, lease_seconds=LEASE, limit=10) == []
    stats = await store.queue_stats(T0 + 10**6)
    assert (stats.due, stats.leased, stats.waiting, stats.next_wake_at) == (0, 0, 0, None)


async def test_commit_does_not_move_the_fencing_token(store: Store, make: Make) -> None:
    """The fencing token belongs to the store: a commit cannot move it back."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    token = claimed.execution.fencing_token
    commit = make.step(claimed.execution, wake_at=T0 + 1)
    commit.execution = dataclasses.replace(commit.execution, fencing_token=0)
    await store.commit_step(commit, now=T0)
    assert (await store.get_execution(ex.id)).fencing_token == token
    again = await make.claim(store, ex, now=T0 + 1)
    assert again.execution.fencing_token > token


# --------------------------------------------------------------------------- group commit


async def _claimed_many(store: Store, make: Make, n: int) -> list[Execution]:
    made = [await make.create(store) for _ in range(n)]
    claims = await store.claim_due("w1", now=T0, lease_seconds=LEASE, limit=n)
    assert len(claims) == n
    by_id = {c.execution.id: c.execution for c in claims}
    return [by_id[e.id] for e in made]


async def _assert_landed(store: Store, make: Make, commit: StepCommit) -> None:
    trail = await make.trail(store, commit.execution.id)
    assert trail.execution.step_seq == commit.execution.step_seq
    assert trail.execution.status is commit.execution.status
    assert trail.checkpoints[-1] == commit.checkpoints[-1]
    assert _tail(trail.transitions, len(commit.transitions)) == commit.transitions
    assert trail.logs[-1] == commit.logs[-1]
    assert _tail(_unsaved(trail.outbox), len(commit.outbox)) == commit.outbox
    assert trail.handoffs == commit.handoffs


async def test_concurrent_commits_isolate_a_stale_one(store: Store, make: Make) -> None:
    """Of many commits made at once, only the one with a stale token fails; the rest land."""
    claimed = await _claimed_many(store, make, 16)
    victim = claimed[7]
    await make.claim(store, victim, worker="w2", now=T0 + LEASE + 1)
    before = await make.trail(store, victim.id)
    commits = [
        make.step(ex, status=S.WAITING_INPUT, texts=[f"hi {i}"], handoffs=1, wake_at=T0 + 99)
        for i, ex in enumerate(claimed)
    ]
    results = await asyncio.gather(
        *(store.commit_step(c, now=T0 + LEASE + 2) for c in commits), return_exceptions=True
    )
    for i, result in enumerate(results):
        if i == 7:
            assert isinstance(result, StaleLease)
        else:
            assert result is None, (i, result)
            await _assert_landed(store, make, commits[i])
    assert await make.trail(store, victim.id) == before


@pytest.mark.parametrize("fault", ["replayed step", "reused idempotency key"])
async def test_concurrent_commits_isolate_a_failing_one(
    store: Store, make: Make, fault: str
) -> None:
    """A commit that fails on its own data (a replayed step, a reused idempotency key)
    fails alone with a StoreError; the commits made together with it still land."""
    claimed = await _claimed_many(store, make, 16)
    bad_ex = claimed[5]
    done = make.step(bad_ex, texts=["first"], release=False)
    await store.commit_step(done, now=T0)
    before = await make.trail(store, bad_ex.id)
    if fault == "replayed step":
        bad = make.step(bad_ex, texts=["first"])
    else:
        bad = make.step(done.execution, texts=["second"])
        bad.outbox = [
            dataclasses.replace(bad.outbox[0], idempotency_key=done.outbox[0].idempotency_key)
        ]
    commits = [make.step(ex, texts=[f"hi {i}"]) for i, ex in enumerate(claimed)]
    commits[5] = bad
    results = await asyncio.gather(
        *(store.commit_step(c, now=T0 + 1) for c in commits), return_exceptions=True
    )
    assert isinstance(results[5], StoreError)
    assert not isinstance(results[5], StaleLease)
    assert await make.trail(store, bad_ex.id) == before
    failed = [(i, r) for i, r in enumerate(results) if i != 5 and r is not None]
    assert failed == []
    for i, commit in enumerate(commits):
        if i != 5:
            await _assert_landed(store, make, commit)


async def test_many_concurrent_commits_all_land(store: Store, make: Make) -> None:
    """Hundreds of commits made at once all land, each with all its rows."""
    claimed = await _claimed_many(store, make, 300)
    commits = [make.step(ex, texts=["a", "b"], handoffs=1) for ex in claimed]
    await asyncio.gather(*(store.commit_step(c, now=T0 + 1) for c in commits))
    for commit in commits[::37]:
        await _assert_landed(store, make, commit)
    stats = await store.queue_stats(T0 + 1)
    assert stats.pending_outbox == 600
    assert stats.leased == 0
