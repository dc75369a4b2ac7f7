"""Store contract: the outbox is leased in order, sent once, retried or given up; the
transcript interleaves replies and bot messages by the step that consumed them."""

from __future__ import annotations

import dataclasses

from trilha.core.execution import Execution
from trilha.core.states import ExecutionStatus
from trilha.store.base import Store

from .conftest import LEASE, T0, Make

S = ExecutionStatus


async def _with_messages(store: Store, make: Make, *texts: str) -> Execution:
    """An execution whose first step committed one outbox message per text."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    await store.commit_step(make.step(claimed.execution, texts=texts, wake_at=None), now=T0)
    return ex


async def test_claim_outbox_in_id_order_with_a_lease(store: Store, make: Make) -> None:
    """claim_outbox leases pending messages oldest first; a live lease hides them from others."""
    a = await _with_messages(store, make, "a1", "a2")
    b = await _with_messages(store, make, "b1")
    c = await _with_messages(store, make, "c1", "c2")
    all_ids = [m.id for ex in (a, b, c) for m in await store.outbox_for(ex.id)]
    assert all_ids == sorted(all_ids)

    first = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=3)
    assert [m.text for m in first] == ["a1", "a2", "b1"]
    assert [m.id for m in first] == all_ids[:3]
    assert {m.status for m in first} == {"pending"}
    second = await store.claim_outbox("d2", now=T0 + 1, lease_seconds=LEASE, limit=10)
    assert [m.text for m in second] == ["c1", "c2"]
    assert await store.claim_outbox("d3", now=T0 + 2, lease_seconds=LEASE, limit=10) == []

    # d1 died: once its lease expired, its messages are handed out again, in order
    retaken = await store.claim_outbox("d3", now=T0 + LEASE + 0.5, lease_seconds=LEASE, limit=10)
    assert [m.text for m in retaken] == ["a1", "a2", "b1"]


async def test_claimed_messages_carry_what_the_step_wrote(store: Store, make: Make) -> None:
    """A claimed outbound message is the one the step committed, with its id."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    commit = make.step(claimed.execution, texts=["Hi Ana!"])
    await store.commit_step(commit, now=T0)
    (msg,) = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    assert msg.id is not None
    assert msg == dataclasses.replace(commit.outbox[0], id=msg.id)


async def test_mark_sent_is_final(store: Store, make: Make) -> None:
    """mark_sent records the delivery; a sent message is never handed out again."""
    ex = await _with_messages(store, make, "one", "two")
    msgs = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    await store.mark_sent([m.id for m in msgs if m.id is not None], now=T0 + 1)
    stored = await store.outbox_for(ex.id)
    assert [(m.status, m.sent_at, m.attempts) for m in stored] == [("sent", T0 + 1, 1)] * 2
    assert await store.claim_outbox("d2", now=T0 + 10**6, lease_seconds=LEASE, limit=10) == []
    assert (await store.queue_stats(T0 + 2)).pending_outbox == 0


async def test_mark_failed_with_retry_at_retries_later(store: Store, make: Make) -> None:
    """A failed message with retry_at stays pending and is handed out again from retry_at."""
    ex = await _with_messages(store, make, "one", "two")
    one, two = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    assert one.id is not None
    assert two.id is not None
    await store.mark_failed(one.id, error="503 from platform", retry_at=T0 + 60, now=T0 + 1)
    await store.mark_sent([two.id], now=T0 + 1)
    stored = await store.outbox_for(ex.id)
    assert [(m.text, m.status, m.attempts) for m in stored] == [
        ("one", "pending", 1),
        ("two", "sent", 1),
    ]
    assert (await store.queue_stats(T0 + 1)).pending_outbox == 1
    assert await store.claim_outbox("d2", now=T0 + 59, lease_seconds=LEASE, limit=10) == []
    again = await store.claim_outbox("d2", now=T0 + 60, lease_seconds=LEASE, limit=10)
    assert [(m.id, m.attempts) for m in again] == [(one.id, 1)]


async def test_a_deferral_is_no_attempt(store: Store, make: Make) -> None:
    """mark_failed(attempted=False) (the channel's rate limit held it back before any
    try): due again from retry_at, released, its attempts unchanged."""
    ex = await _with_messages(store, make, "held")
    (held,) = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    assert held.id is not None
    await store.mark_failed(held.id, error="rate", retry_at=T0 + 2, now=T0 + 1, attempted=False)
    assert [(m.status, m.attempts) for m in await store.outbox_for(ex.id)] == [("pending", 0)]
    assert await store.claim_outbox("d2", now=T0 + 1.5, lease_seconds=LEASE, limit=10) == []
    (again,) = await store.claim_outbox("d2", now=T0 + 2, lease_seconds=LEASE, limit=10)
    assert (again.id, again.attempts) == (held.id, 0)
    await store.mark_failed(held.id, error="503", retry_at=T0 + 9, now=T0 + 3)
    assert [m.attempts for m in await store.outbox_for(ex.id)] == [1]


async def test_mark_failed_without_retry_gives_the_message_up(store: Store, make: Make) -> None:
    """A failed message with retry_at=None is dead: never handed out, not pending."""
    ex = await _with_messages(store, make, "doomed", "fine")
    doomed, fine = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    assert doomed.id is not None
    assert fine.id is not None
    await store.mark_failed(doomed.id, error="400 invalid number", retry_at=None, now=T0 + 1)
    stored = await store.outbox_for(ex.id)
    assert (stored[0].status, stored[0].attempts) == ("dead", 1)
    assert stored[1].status == "pending"
    await store.mark_sent([fine.id], now=T0 + 1)
    for when in (T0 + LEASE + 1, T0 + 10**6):
        claimed = await store.claim_outbox("d2", now=when, lease_seconds=LEASE, limit=10)
        assert doomed.id not in [m.id for m in claimed]
    assert (await store.queue_stats(T0 + 10**6)).pending_outbox == 0


async def test_transcript_puts_a_reply_before_the_step_that_consumed_it(
    store: Store, make: Make
) -> None:
    """Transcript order follows the steps: a reply precedes the bot messages of the step that
    applied it even when it was received earlier; unapplied replies come last."""
    ex = await make.create(store)
    claimed = await make.claim(store, ex)
    # the reply arrives while step 1 (the question) is still running
    early = await make.inbound(store, ex, "12345678901", now=T0 + 0.5)
    ask = make.step(
        claimed.execution, status=S.WAITING_INPUT, texts=["Your CPF?"], wake_at=T0 + 3600, at=T0 + 1
    )
    await store.commit_step(ask, now=T0 + 1)
    woken = await make.claim(store, ex, now=T0 + 2)
    assert woken.inbound == early.message
    answer = make.step(
        woken.execution,
        status=S.WAITING_INPUT,
        texts=["Thanks!", "Anything else?"],
        applied=[early.message.id],
        wake_at=T0 + 3600,
        at=T0 + 2,
    )
    await store.commit_step(answer, now=T0 + 2)
    await make.inbound(store, ex, "no", now=T0 + 3)
    transcript = await store.transcript(ex.id)
    assert [(e.sender, e.text) for e in transcript] == [
        ("bot", "Your CPF?"),
        ("contact", "12345678901"),
        ("bot", "Thanks!"),
        ("bot", "Anything else?"),
        ("contact", "no"),
    ]
    assert [e.at for e in transcript] == [T0 + 1, T0 + 0.5, T0 + 2, T0 + 2, T0 + 3]


async def test_transcript_keeps_executions_apart(store: Store, make: Make) -> None:
    """An execution's transcript holds only its own messages."""
    a = await _with_messages(store, make, "for a")
    b = await _with_messages(store, make, "for b")
    assert [e.text for e in await store.transcript(a.id)] == ["for a"]
    assert [e.text for e in await store.transcript(b.id)] == ["for b"]
    assert await store.transcript("no-such-execution") == []


async def test_released_messages_wait_behind_the_one_that_failed(store: Store, make: Make) -> None:
    """A dispatcher gives back the leases of messages it did not try after an earlier
    one of their conversation failed: they are held by that one's retry, not by their
    lease's term, and only the dispatcher holding a lease can give it back."""
    await _with_messages(store, make, "m1", "m2", "m3")
    first, second, third = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    assert first.id is not None and second.id is not None and third.id is not None
    await store.mark_failed(first.id, error="busy", retry_at=T0 + 2, now=T0, attempted=False)
    await store.release_outbox("someone-else", [second.id, third.id])  # not its leases
    await store.release_outbox("d1", [])
    assert await store.claim_outbox("d2", now=T0 + 3, lease_seconds=LEASE, limit=10) == [
        dataclasses.replace(first, attempts=0)
    ]  # still leased by d1: only the one that failed is due
    await store.mark_failed(first.id, error="busy", retry_at=T0 + 5, now=T0 + 3, attempted=False)
    await store.release_outbox("d1", [second.id, third.id])
    # held behind the failed one until its retry, then all three, in order
    assert await store.claim_outbox("d3", now=T0 + 4, lease_seconds=LEASE, limit=10) == []
    again = await store.claim_outbox("d3", now=T0 + 6, lease_seconds=LEASE, limit=10)
    assert [m.text for m in again] == ["m1", "m2", "m3"]
