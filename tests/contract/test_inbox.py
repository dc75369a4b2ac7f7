"""Store contract: inbound messages are stored once, acknowledged, and handed out in order."""

from __future__ import annotations

import asyncio

import pytest

from trilha.core.states import ExecutionStatus
from trilha.errors import ExecutionNotFound
from trilha.store.base import Store

from .conftest import LEASE, T0, Make

S = ExecutionStatus

#: how long a question waits for its reply in these tests
INPUT_TIMEOUT = 3600.0


async def test_deliver_stores_and_acknowledges(store: Store, make: Make) -> None:
    """deliver_inbound returns "accepted" with the stored message, linked to the execution."""
    ex = await make.create(store, status=S.WAITING_INPUT, wake_at=None)
    result = await store.deliver_inbound(
        institution_id=ex.institution_id,
        conversation_id=ex.conversation_id,
        message_id="wamid-1",
        contact_id=ex.contact_id,
        text="oi",
        payload={"media": None, "n": 1},
        now=T0 + 3,
    )
    assert result.status == "accepted"
    msg = result.message
    assert isinstance(msg.id, int)
    assert (msg.institution_id, msg.conversation_id, msg.message_id) == (
        ex.institution_id,
        ex.conversation_id,
        "wamid-1",
    )
    assert (msg.contact_id, msg.text, msg.received_at) == (ex.contact_id, "oi", T0 + 3)
    assert msg.payload == {"media": None, "n": 1}
    assert msg.execution_id == ex.id
    assert msg.applied_at is None
    assert [(e.sender, e.text, e.at) for e in await store.transcript(ex.id)] == [
        ("contact", "oi", T0 + 3)
    ]


async def test_duplicate_message_id_is_acknowledged_not_stored(store: Store, make: Make) -> None:
    """A repeated message_id returns "duplicate" with the original and stores nothing new."""
    ex = await make.create(store, status=S.WAITING_INPUT, wake_at=None)
    first = await make.inbound(store, ex, "oi", message_id="wamid-1")
    again = await make.inbound(store, ex, "oi (resent)", message_id="wamid-1", now=T0 + 9)
    assert first.status == "accepted"
    assert again.status == "duplicate"
    assert again.message == first.message
    assert [e.text for e in await store.transcript(ex.id)] == ["oi"]


async def test_concurrent_duplicates_store_one_message(store: Store, make: Make) -> None:
    """The same message delivered many times at once is accepted exactly once."""
    ex = await make.create(store, status=S.WAITING_INPUT, wake_at=None)
    results = await asyncio.gather(
        *(make.inbound(store, ex, "oi", message_id="wamid-1") for _ in range(12))
    )
    assert sorted(r.status for r in results) == ["accepted"] + ["duplicate"] * 11
    assert len({r.message.id for r in results}) == 1
    assert [e.text for e in await store.transcript(ex.id)] == ["oi"]


async def test_same_message_id_elsewhere_is_a_new_message(store: Store, make: Make) -> None:
    """A message_id is unique per conversation: other conversations and institutions accept it."""
    a = await make.create(store, institution="inst-a", conversation="shared")
    b = await make.create(store, institution="inst-b", conversation="shared")
    c = await make.create(store, institution="inst-a", conversation="other")
    results = [await make.inbound(store, ex, "oi", message_id="wamid-1") for ex in (a, b, c)]
    assert [r.status for r in results] == ["accepted"] * 3
    assert [r.message.execution_id for r in results] == [a.id, b.id, c.id]


async def test_reply_wakes_an_execution_waiting_for_input(store: Store, make: Make) -> None:
    """A reply makes a waiting_input execution due now, and the claim carries the reply."""
    ex = await make.create(
        store, status=S.WAITING_INPUT, wake_at=T0 + INPUT_TIMEOUT, due_at=T0 + INPUT_TIMEOUT
    )
    assert await store.claim_due("w1", now=T0 + 5, lease_seconds=LEASE, limit=10) == []
    reply = await make.inbound(store, ex, "12345678901", now=T0 + 5)
    claims = await store.claim_due("w1", now=T0 + 5, lease_seconds=LEASE, limit=10)
    assert [c.execution.id for c in claims] == [ex.id]
    assert claims[0].inbound == reply.message


async def test_reply_wakes_only_its_institution(store: Store, make: Make) -> None:
    """A reply wakes the execution of its own institution, not one with the same conversation id."""
    a = await make.create(
        store, institution="inst-a", conversation="shared", status=S.WAITING_INPUT, wake_at=None
    )
    b = await make.create(
        store, institution="inst-b", conversation="shared", status=S.WAITING_INPUT, wake_at=None
    )
    await make.inbound(store, b, "oi")
    claims = await store.claim_due("w1", now=T0, lease_seconds=LEASE, limit=10)
    assert [c.execution.id for c in claims] == [b.id]
    assert (await store.get_execution(a.id)).wake_at is None


async def test_replies_are_handed_out_one_at_a_time_in_order(store: Store, make: Make) -> None:
    """Several pending replies come out oldest first, one per step, each once."""
    ex = await make.create(store, status=S.WAITING_INPUT, wake_at=None)
    sent = [(await make.inbound(store, ex, t, now=T0 + i)).message for i, t in enumerate("abc")]
    got = []
    now = T0 + 10
    for _ in sent:
        claim = (await store.claim_due("w1", now=now, lease_seconds=LEASE, limit=10))[0]
        assert claim.inbound is not None
        got.append(claim.inbound)
        commit = make.step(
            claim.execution,
            status=S.WAITING_INPUT,
            applied=[claim.inbound.id],
            wake_at=now + INPUT_TIMEOUT,
            due_at=now + INPUT_TIMEOUT,
        )
        await store.commit_step(commit, now=now)
        now += 1
    assert got == sent
    # all three applied: nothing is due until the input timeout
    assert await store.claim_due("w1", now=now, lease_seconds=LEASE, limit=10) == []
    assert (await store.get_execution(ex.id)).wake_at == now - 1 + INPUT_TIMEOUT


async def test_reply_during_a_step_is_picked_up_when_it_commits(store: Store, make: Make) -> None:
    """A reply that arrives while the execution runs wakes it as soon as it waits for input."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    reply = await make.inbound(store, ex, "fast reply", now=T0 + 1)
    assert reply.status == "accepted"
    assert await store.claim_due("w2", now=T0 + 1, lease_seconds=LEASE, limit=10) == []
    commit = make.step(
        claimed.execution,
        status=S.WAITING_INPUT,
        texts=["Your CPF?"],
        wake_at=T0 + 2 + INPUT_TIMEOUT,
        due_at=T0 + 2 + INPUT_TIMEOUT,
        waiting_for="input",
    )
    await store.commit_step(commit, now=T0 + 2)
    stored = await store.get_execution(ex.id)
    assert stored.wake_at is not None
    assert stored.wake_at <= T0 + 2
    claims = await store.claim_due("w1", now=T0 + 2, lease_seconds=LEASE, limit=10)
    assert [c.execution.id for c in claims] == [ex.id]
    assert claims[0].inbound == reply.message


async def test_reply_to_a_waiting_input_execution_under_lease(store: Store, make: Make) -> None:
    """A reply to a leased waiting_input execution is handed out after that lease's commit."""
    ex = await make.create(store, status=S.WAITING_INPUT, wake_at=T0, due_at=T0 + INPUT_TIMEOUT)
    claimed = await make.claim(store, ex)  # e.g. a worker checking the input timeout
    assert claimed.inbound is None
    reply = await make.inbound(store, ex, "late but here", now=T0 + 1)
    commit = make.step(
        claimed.execution, status=S.WAITING_INPUT, texts=[], wake_at=T0 + INPUT_TIMEOUT
    )
    await store.commit_step(commit, now=T0 + 2)
    again = (await store.claim_due("w1", now=T0 + 2, lease_seconds=LEASE, limit=10))[0]
    assert again.inbound == reply.message


async def test_reply_does_not_cut_a_timer_short(store: Store, make: Make) -> None:
    """A reply to an execution waiting on a timer waits until it asks for input."""
    ex = await make.create(store, status=S.WAITING_DELAY, wake_at=T0 + 60)
    reply = await make.inbound(store, ex, "hello?", now=T0 + 1)
    assert await store.claim_due("w1", now=T0 + 1, lease_seconds=LEASE, limit=10) == []
    fired = await make.claim(store, ex, now=T0 + 60)
    assert fired.inbound is None
    await store.commit_step(
        make.step(fired.execution, status=S.WAITING_INPUT, wake_at=T0 + 60 + INPUT_TIMEOUT),
        now=T0 + 60,
    )
    asked = await make.claim(store, ex, now=T0 + 60)
    assert asked.inbound == reply.message


async def test_deliver_by_execution_id(store: Store, make: Make) -> None:
    """execution_id addresses the reply to that execution; an unknown id raises."""
    ex = await make.create(store, status=S.WAITING_INPUT, wake_at=None)
    result = await store.deliver_inbound(
        institution_id=ex.institution_id,
        conversation_id=ex.conversation_id,
        message_id="m1",
        contact_id=ex.contact_id,
        text="oi",
        payload=None,
        now=T0,
        execution_id=ex.id,
    )
    assert result.status == "accepted"
    assert result.message.execution_id == ex.id
    assert result.message.payload is None
    assert (await make.claim(store, ex)).inbound == result.message
    with pytest.raises(ExecutionNotFound):
        await store.deliver_inbound(
            institution_id=ex.institution_id,
            conversation_id=ex.conversation_id,
            message_id="m2",
            contact_id=ex.contact_id,
            text="oi",
            payload=None,
            now=T0,
            execution_id="no-such-execution",
        )


async def test_reply_after_the_end_is_still_acknowledged(store: Store, make: Make) -> None:
    """A message for a conversation whose execution ended is stored (once) and wakes nothing."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    await store.commit_step(make.step(claimed.execution, status=S.COMPLETED), now=T0)
    first = await make.inbound(store, ex, "thanks!", message_id="m1", now=T0 + 1)
    again = await make.inbound(store, ex, "thanks!", message_id="m1", now=T0 + 2)
    assert first.status == "accepted"
    assert first.message.execution_id is None
    assert again.status == "duplicate"
    assert await store.claim_due("w1", now=T0 + 9, lease_seconds=LEASE, limit=10) == []
    assert (await store.get_execution(ex.id)).status is S.COMPLETED
