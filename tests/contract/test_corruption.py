"""Store contract: an execution corrupted behind the store's back, on every backend.

The garbage is written with :meth:`~trilha.store.base.Store.tamper` (what ``trilha
chaos`` and a bad disk or hand edit do: no check runs). From then on the store must
not crash or lose the execution: ``claim_due`` flags it, keeps a copy in quarantine
with an ERROR line, and hands it out under a lease like any claim, so the engine can
restore it from its last valid checkpoint and commit the restored state. The
SQLite-only module next door corrupts columns ``tamper`` does not reach.
"""

from __future__ import annotations

import dataclasses

import pytest

from trilha.core.execution import Execution, restore_state, verified_state
from trilha.core.states import ExecutionStatus
from trilha.errors import CorruptedRecord, StaleLease
from trilha.store.base import Claimed, Store

from .conftest import LEASE, T0, Backend, Make

S = ExecutionStatus

#: (tamper target, garbage): each makes the execution row fail its checks
CORRUPTIONS = {
    "variables not json": ("variables", "}{ garbage"),
    "variables truncated json": ("variables", '{"name": "An'),
    "variables not an object": ("variables", "[1, 2]"),
    "variables changed behind the checksum": ("variables", '{"name": "Eve"}'),
    "current node changed": ("current_node", "ghost-node"),
    "row and latest checkpoint": ("checkpoint", "garbage"),
}


async def _stepped(store: Store, make: Make, steps: int) -> Execution:
    """An execution with ``steps`` committed steps (a checkpoint each), due again at T0."""
    ex = await make.create(store, wake_at=T0 - 10)
    for n in range(steps):
        claimed = await make.claim(store, ex, now=T0 - 10)
        commit = make.step(
            claimed.execution,
            node=f"node-{n + 1}",
            texts=[],
            wake_at=T0 - 10,
            variables={"name": "Ana", "step": n + 1},
        )
        await store.commit_step(commit, now=T0 - 10)
        ex = commit.execution
    return ex


async def _corrupt(
    backend: Backend, make: Make, target: str, garbage: str
) -> tuple[Store, Execution, list[str]]:
    """A victim with two committed steps, due first, and two healthy executions behind
    it; the victim is corrupted, and the store reopened (as after a restart)."""
    store = await backend.open()
    victim = await _stepped(store, make, 2)
    healthy = [(await make.create(store, wake_at=T0)).id for _ in range(2)]
    assert await store.tamper(victim.id, target, garbage)
    return await backend.reopen(store), victim, healthy


def _flagged(claims: list[Claimed]) -> dict[str, Claimed]:
    return {c.execution.id: c for c in claims if c.corruption is not None}


@pytest.mark.parametrize(("target", "garbage"), CORRUPTIONS.values(), ids=CORRUPTIONS)
async def test_corrupted_execution_is_flagged_quarantined_and_leased(
    backend: Backend, make: Make, target: str, garbage: str
) -> None:
    """claim_due does not crash on a corrupted row: it keeps a copy in quarantine with one
    ERROR line, and hands the execution out flagged, its identity salvaged and under a
    lease with the next fencing token; the healthy executions are handed out too."""
    store, victim, healthy = await _corrupt(backend, make, target, garbage)
    with pytest.raises(CorruptedRecord):
        await store.get_execution(victim.id)

    claims = await store.claim_due("w1", now=T0, lease_seconds=LEASE, limit=10)
    assert sorted(c.execution.id for c in claims) == sorted([victim.id, *healthy])
    flagged = _flagged(claims)
    assert list(flagged) == [victim.id]
    assert flagged[victim.id].corruption
    salvaged = flagged[victim.id].execution
    assert salvaged.lease_owner == "w1"
    assert salvaged.lease_expires_at == T0 + LEASE
    assert salvaged.fencing_token == victim.fencing_token + 1
    assert (salvaged.institution_id, salvaged.conversation_id, salvaged.contact_id) == (
        victim.institution_id,
        victim.conversation_id,
        victim.contact_id,
    )
    assert (salvaged.flow_id, salvaged.flow_version) == (victim.flow_id, victim.flow_version)
    assert salvaged.step_seq == victim.step_seq == 2

    [kept] = await store.quarantined(victim.id)
    assert kept["kind"] == "execution"
    assert kept["reason"]
    errors = [r for r in await store.logs(victim.id) if r.level == "ERROR"]
    assert [r.message for r in errors] == ["execution.corrupted"]

    # leased like any claim: not handed out again while the lease lives, even to its owner
    for worker in ("w1", "w2"):
        again = await store.claim_due(worker, now=T0 + 1, lease_seconds=LEASE, limit=10)
        assert victim.id not in [c.execution.id for c in again]

    # the quarantine survives a restart, and the row stays (never deleted)
    store = await backend.reopen(store)
    assert len(await store.quarantined(victim.id)) == 1
    with pytest.raises(CorruptedRecord):
        await store.get_execution(victim.id)


@pytest.mark.parametrize(("target", "garbage"), CORRUPTIONS.values(), ids=CORRUPTIONS)
async def test_corrupted_execution_is_restored_under_its_lease(
    backend: Backend, make: Make, target: str, garbage: str
) -> None:
    """What the engine does with a flagged claim lands: the state of the last checkpoint
    that passes its checks, committed under the claim's token, reads back whole; the next
    claim is a healthy one, and a commit under the token before the claim is refused."""
    store, victim, _ = await _corrupt(backend, make, target, garbage)
    [claimed] = await store.claim_due(
        "w1", now=T0, lease_seconds=LEASE, limit=10, execution_id=victim.id
    )
    assert claimed.corruption is not None
    salvaged = claimed.execution

    valid = [
        (cp.seq, state)
        for cp in await store.checkpoints(victim.id)
        if (state := verified_state(cp)) is not None
    ]
    # a corrupted latest checkpoint is walked back past
    assert [seq for seq, _ in valid] == ([1] if target == "checkpoint" else [1, 2])
    seq, state = valid[-1]
    restored = dataclasses.replace(salvaged, variables={}, node_state={}, meta={})
    restore_state(restored, state)
    assert restored.variables == {"name": "Ana", "step": seq}

    with pytest.raises(StaleLease):  # the claim moved the token: the old one is fenced off
        await store.commit_step(make.step(victim, node=restored.current_node_id or ""), now=T0)
    commit = make.step(
        restored,
        status=S.RUNNING,
        node=restored.current_node_id or "",
        texts=["restored"],
        wake_at=T0 + 5,
        variables=restored.variables,
    )
    await store.commit_step(commit, now=T0 + 1)

    back = await store.get_execution(victim.id)
    assert back == make.released(commit.execution, updated_at=T0 + 1)
    assert back.variables == {"name": "Ana", "step": seq}
    assert back.step_seq == 3
    assert [m.text for m in await store.outbox_for(victim.id)] == ["restored"]
    [again] = await store.claim_due(
        "w2", now=T0 + 5, lease_seconds=LEASE, limit=10, execution_id=victim.id
    )
    assert again.corruption is None
    assert again.execution.variables == back.variables
    assert len(await store.quarantined(victim.id)) == 1  # the bad copy is kept


async def test_corrupted_row_does_not_starve_the_queue(backend: Backend, make: Make) -> None:
    """Claiming one at a time, the corrupted execution and the healthy ones behind it are
    all handed out, each once."""
    store, victim, healthy = await _corrupt(backend, make, "variables", "garbage")
    got: list[str] = []
    for _ in range(5):
        got += [
            c.execution.id
            for c in await store.claim_due("w1", now=T0, lease_seconds=LEASE, limit=1)
        ]
    assert sorted(got) == sorted([victim.id, *healthy])


async def test_a_reply_to_a_corrupted_execution_is_kept_and_handed_out_with_it(
    backend: Backend, make: Make
) -> None:
    """A contact's reply to an execution whose row is corrupted is stored and acknowledged
    once, and the flagged claim carries it, so restoring does not lose it."""
    store = await backend.open()
    ex = await make.create(store, status=S.WAITING_INPUT, wake_at=None, conversation="c1")
    assert await store.tamper(ex.id, "variables", "}{")
    first = await make.inbound(store, ex, "12345678901", message_id="m1", now=T0)
    assert first.status == "accepted"
    again = await make.inbound(store, ex, "12345678901", message_id="m1", now=T0)
    assert again.status == "duplicate"

    [claimed] = await store.claim_due("w1", now=T0, lease_seconds=LEASE, limit=10)
    assert claimed.execution.id == ex.id
    assert claimed.corruption is not None
    assert claimed.inbound is not None
    assert (claimed.inbound.message_id, claimed.inbound.text) == ("m1", "12345678901")


async def test_replace_cancels_an_unreadable_execution(backend: Backend, make: Make) -> None:
    """replace=True still frees a conversation whose active execution cannot be read."""
    store = await backend.open()
    bad = await make.create(store, conversation="c1")
    assert await store.tamper(bad.id, "variables", "garbage")
    new = await make.create(store, conversation="c1", created_at=T0 + 1, replace=True)
    assert (await store.latest_execution("inst-1", "c1")).id == new.id
    assert (await store.transitions(bad.id))[-1].target is S.CANCELLED
    # the old execution is never handed out again
    claims = await store.claim_due("w1", now=T0 + 2, lease_seconds=LEASE, limit=10)
    assert [c.execution.id for c in claims] == [new.id]
