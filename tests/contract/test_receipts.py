"""Store contract: delivery receipts. The channel's statuses are recorded once each, the
delivery state only moves forward, every recorded receipt leaves a ``message.status``
trail line (masked), a message is found by its key only in its own institution and
conversation, and the undelivered count follows the outbox and the receipts."""

from __future__ import annotations

import asyncio

from trilha.core.execution import Execution
from trilha.store.base import Store

from .conftest import LEASE, T0, Backend, Make


async def _with_messages(store: Store, make: Make, *texts: str, **fields: object) -> Execution:
    """An execution whose first step committed one outbox message per text."""
    ex = await make.create(store, **fields)
    claimed = await make.claim(store, ex)
    await store.commit_step(make.step(claimed.execution, texts=texts, wake_at=None), now=T0)
    return ex


async def _receipt(
    store: Store, ex: Execution, key: str, status: str, at: float, error: str | None = None
) -> object:
    return await store.record_receipt(
        institution_id=ex.institution_id,
        conversation_id=ex.conversation_id,
        idempotency_key=key,
        status=status,
        at=at,
        error=error,
        now=at + 0.5,
    )


async def test_a_receipt_moves_the_delivery_forward_only(store: Store, make: Make) -> None:
    """sent → read → a late delivered and a late sent: recorded, the state stays read."""
    ex = await _with_messages(store, make, "hello")
    key = f"{ex.id}:1:0"
    sent = await store.record_receipt(
        institution_id=ex.institution_id,
        conversation_id=ex.conversation_id,
        idempotency_key=key,
        status="sent",
        at=T0 + 1,
        error=None,
        now=T0 + 1.5,
    )
    assert sent is not None
    assert (sent.duplicate, sent.advanced, sent.delivery.receipt) == (False, True, "sent")
    read = await _receipt(store, ex, key, "read", T0 + 3)
    assert read is not None
    late = await store.record_receipt(
        institution_id=ex.institution_id,
        conversation_id=ex.conversation_id,
        idempotency_key=key,
        status="delivered",
        at=T0 + 2,
        error=None,
        now=T0 + 4,
    )
    assert late is not None
    assert (late.duplicate, late.advanced) == (False, False)
    assert (late.delivery.receipt, late.delivery.receipt_at) == ("read", T0 + 3)
    (delivery,) = await store.deliveries(ex.id)
    assert (delivery.receipt, delivery.receipt_at, delivery.idempotency_key) == (
        "read",
        T0 + 3,
        key,
    )
    lines = [r for r in await store.logs(ex.id) if r.message == "message.status"]
    assert [(r.context["status"], r.context["delivery"], r.context["advanced"]) for r in lines] == [
        ("sent", "sent", True),
        ("read", "read", True),
        ("delivered", "read", False),
    ]
    assert {r.context["idempotencyKey"] for r in lines} == {key}


async def test_a_repeated_status_is_a_duplicate_and_writes_nothing(
    store: Store, make: Make
) -> None:
    ex = await _with_messages(store, make, "hello")
    key = f"{ex.id}:1:0"
    first = await store.record_receipt(
        institution_id=ex.institution_id,
        conversation_id=ex.conversation_id,
        idempotency_key=key,
        status="delivered",
        at=T0 + 1,
        error=None,
        now=T0 + 1,
    )
    again = await store.record_receipt(
        institution_id=ex.institution_id,
        conversation_id=ex.conversation_id,
        idempotency_key=key,
        status="delivered",
        at=T0 + 9,
        error=None,
        now=T0 + 9,
    )
    assert first is not None and again is not None
    assert (first.duplicate, again.duplicate, again.advanced) == (False, True, False)
    assert again.delivery.receipt_at == T0 + 1
    lines = [r for r in await store.logs(ex.id) if r.message == "message.status"]
    assert len(lines) == 1


async def test_failed_overrides_sent_only_and_its_error_is_masked_in_the_trail(
    store: Store, make: Make
) -> None:
    """failed beats sent; delivered beats failed; the failure's text is masked in the trail."""
    ex = await _with_messages(store, make, "one", "two")
    one, two = f"{ex.id}:1:0", f"{ex.id}:1:1"
    await _receipt(store, ex, one, "sent", T0 + 1)
    failed = await store.record_receipt(
        institution_id=ex.institution_id,
        conversation_id=ex.conversation_id,
        idempotency_key=one,
        status="failed",
        at=T0 + 2,
        error="number +55 11 98765-4321 is not on WhatsApp",
        now=T0 + 2,
    )
    assert failed is not None and failed.advanced
    assert failed.delivery.receipt_error == "number +55 11 98765-4321 is not on WhatsApp"
    await _receipt(store, ex, two, "read", T0 + 1)
    after_read = await _receipt(store, ex, two, "failed", T0 + 2, "late")
    assert after_read is not None
    deliveries = {d.idempotency_key: d for d in await store.deliveries(ex.id)}
    assert deliveries[one].receipt == "failed"
    assert deliveries[two].receipt == "read"
    (line,) = [
        r
        for r in await store.logs(ex.id)
        if r.message == "message.status" and r.context.get("idempotencyKey") == one
        if r.context["status"] == "failed"
    ]
    assert line.level == "WARN"
    assert "98765-4321" not in str(line.context["error"])
    # a delivered after the failure proves it wrong
    proved = await _receipt(store, ex, one, "delivered", T0 + 3)
    assert proved is not None
    assert [d.receipt for d in await store.deliveries(ex.id)] == ["delivered", "read"]


async def test_a_key_is_found_only_in_its_institution_and_conversation(
    store: Store, make: Make
) -> None:
    ex = await _with_messages(store, make, "hello", institution="inst-a")
    key = f"{ex.id}:1:0"
    for institution, conversation, k in (
        ("inst-b", ex.conversation_id, key),
        (ex.institution_id, "another-conversation", key),
        (ex.institution_id, ex.conversation_id, "no-such-key"),
    ):
        found = await store.record_receipt(
            institution_id=institution,
            conversation_id=conversation,
            idempotency_key=k,
            status="read",
            at=T0,
            error=None,
            now=T0,
        )
        assert found is None
    assert [d.receipt for d in await store.deliveries(ex.id)] == [None]
    assert not [r for r in await store.logs(ex.id) if r.message == "message.status"]


async def test_deliveries_carry_the_outbox_state_in_transcript_order(
    store: Store, make: Make
) -> None:
    ex = await _with_messages(store, make, "one", "two")
    one, two = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    assert one.id is not None and two.id is not None
    await store.mark_sent([one.id], now=T0 + 1)
    await store.mark_failed(two.id, error="webhook answered 503", retry_at=T0 + 60, now=T0 + 1)
    shown = [
        (d.text, d.status, d.attempts, d.next_attempt_at, d.last_error)
        for d in await store.deliveries(ex.id)
    ]
    assert shown == [
        ("one", "sent", 1, T0, None),
        ("two", "pending", 1, T0 + 60, "webhook answered 503"),
    ]


async def test_undelivered_counts_dead_failed_retrying_and_late_messages(
    store: Store, make: Make
) -> None:
    """One grouped count per execution: dead, failed by the channel, pending after a failed
    attempt or for longer than 30 s; a delivered receipt settles a message whatever the
    outbox says."""
    fine = await _with_messages(store, make, "ok")
    troubled = await _with_messages(store, make, "dead", "failed", "retrying", "proved")
    fresh = await _with_messages(store, make, "queued just now")
    claimed = await store.claim_outbox("d1", now=T0, lease_seconds=LEASE, limit=10)
    by_text = {m.text: m.id or 0 for m in claimed}
    await store.mark_sent([by_text["ok"], by_text["failed"]], now=T0 + 1)
    await store.mark_failed(by_text["dead"], error="gone", retry_at=None, now=T0 + 1)
    await store.mark_failed(by_text["retrying"], error="503", retry_at=T0 + 60, now=T0 + 1)
    await store.mark_failed(by_text["proved"], error="timeout", retry_at=None, now=T0 + 1)
    await _receipt(store, troubled, f"{troubled.id}:1:1", "failed", T0 + 2, "blocked")
    await _receipt(store, troubled, f"{troubled.id}:1:3", "delivered", T0 + 2)
    await _receipt(store, fine, f"{fine.id}:1:0", "read", T0 + 2)
    ids = [fine.id, troubled.id, fresh.id, "no-such-execution"]
    # the fresh message was claimed, not failed: late only once 30 s have passed
    assert await store.undelivered(ids, now=T0 + 5) == {troubled.id: 3}
    later = await store.undelivered(ids, now=T0 + 31)
    assert later == {troubled.id: 3, fresh.id: 1}
    assert await store.undelivered([], now=T0) == {}


async def test_receipts_racing_from_many_handles_keep_one_state(
    backend: Backend, make: Make
) -> None:
    """Every status sent three times at once over three connections: each is recorded
    once, and the state is the furthest whatever order they landed in."""
    first = await backend.open()
    ex = await _with_messages(first, make, "hello")
    key = f"{ex.id}:1:0"
    handles = [first, await backend.open(), await backend.open()]
    results = await asyncio.gather(
        *(
            handle.record_receipt(
                institution_id=ex.institution_id,
                conversation_id=ex.conversation_id,
                idempotency_key=key,
                status=status,
                at=T0 + n,
                error=None,
                now=T0 + n,
            )
            for n, status in enumerate(["sent", "delivered", "read", "failed"])
            for handle in handles
        )
    )
    recorded = [r for r in results if r is not None and not r.duplicate]
    assert len(recorded) == 4 and len(results) == 12
    (delivery,) = await first.deliveries(ex.id)
    assert (delivery.receipt, delivery.receipt_at) == ("read", T0 + 2)
    lines = [r for r in await first.logs(ex.id) if r.message == "message.status"]
    assert sorted(r.context["status"] for r in lines) == ["delivered", "failed", "read", "sent"]
