"""Store contract: channels' webhook bodies. A body is kept byte for byte and handed out
under a lease, oldest first; nothing overtakes a body another process is processing,
but one waiting for its retry holds nothing back; a lease lapses when it expires or its
owner stops its heartbeat, and a lost lease settles nothing; a retry resumes at its
progress; settled bodies are purged after their time, pending ones never; and all of
it survives a restart."""

from __future__ import annotations

from trilha.store.base import Store

from .conftest import LEASE, T0, Backend

#: a body with bytes that are not UTF-8: kept as sent (the signature covered them)
RAW = b'{"object":"whatsapp_business_account","entry":[]}\xff\x00\n'


async def _claim(store: Store, owner: str, now: float = T0, limit: int = 10) -> list[int]:
    claimed = await store.claim_channel_webhooks(
        "whatsapp", owner, now=now, lease_seconds=LEASE, limit=limit
    )
    return [w.id for w in claimed]


async def test_a_body_is_kept_raw_and_handed_out_once(store: Store) -> None:
    """The raw bytes come back as stored; a second claimer gets nothing while the lease
    holds; a settled body is not handed out again and reads as done."""
    first = await store.receive_channel_webhook("whatsapp", RAW, now=T0)
    (claimed,) = await store.claim_channel_webhooks(
        "whatsapp", "a", now=T0, lease_seconds=LEASE, limit=10
    )
    assert (claimed.id, claimed.body, claimed.channel, claimed.attempts) == (
        first,
        RAW,
        "whatsapp",
        1,
    )
    assert (claimed.lease_owner, claimed.lease_expires_at) == ("a", T0 + LEASE)
    assert await _claim(store, "b", T0 + 1) == []
    assert await store.settle_channel_webhook(
        first, owner="a", now=T0 + 2, status="done", error="1 skipped"
    )
    assert await _claim(store, "b", T0 + 3) == []
    (kept,) = await store.channel_webhooks("whatsapp")
    assert (kept.status, kept.processed_at, kept.last_error, kept.lease_owner) == (
        "done",
        T0 + 2,
        "1 skipped",
        None,
    )
    assert await store.channel_webhooks("other") == []
    # another channel's bodies are its own: not handed to this one, not in its way
    other = await store.receive_channel_webhook("other", b"{}", now=T0)
    await store.claim_channel_webhooks("other", "c", now=T0, lease_seconds=LEASE, limit=1)
    later = await store.receive_channel_webhook("whatsapp", b"{}", now=T0)
    assert await _claim(store, "b", T0 + 3) == [later]
    assert [w.id for w in await store.channel_webhooks("other")] == [other]
    assert [w.id for w in await store.channel_webhooks("whatsapp", status="pending")] == [later]


async def test_bodies_go_in_the_order_stored(store: Store) -> None:
    """Oldest first; nothing overtakes a body under another process's live lease; a body
    waiting for its retry does not hold the next back, and resumes at its progress."""
    ids = [await store.receive_channel_webhook("whatsapp", b"%d" % i, now=T0) for i in range(3)]
    assert await _claim(store, "a", limit=1) == ids[:1]
    assert await _claim(store, "b", T0 + 1) == []  # the second may not overtake the first
    assert await store.settle_channel_webhook(
        ids[0], owner="a", now=T0 + 2, status="pending", retry_at=T0 + 60, progress=3, error="x"
    )
    assert await _claim(store, "b", T0 + 3) == ids[1:]
    for webhook_id in ids[1:]:
        assert await store.settle_channel_webhook(webhook_id, owner="b", now=T0 + 4, status="done")
    assert await _claim(store, "a", T0 + 59) == []  # not due yet
    (again,) = await store.claim_channel_webhooks(
        "whatsapp", "a", now=T0 + 60, lease_seconds=LEASE, limit=10
    )
    assert (again.id, again.progress, again.attempts, again.last_error) == (ids[0], 3, 2, "x")


async def test_a_lapsed_lease_is_taken_over_and_settles_nothing(store: Store) -> None:
    """Past its expiry the body goes to another owner; the first owner's late settle is
    refused and changes nothing."""
    webhook_id = await store.receive_channel_webhook("whatsapp", b"{}", now=T0)
    assert await _claim(store, "a") == [webhook_id]
    assert await _claim(store, "b", T0 + LEASE + 1) == [webhook_id]
    assert not await store.settle_channel_webhook(
        webhook_id, owner="a", now=T0 + LEASE + 2, status="failed", error="late"
    )
    (kept,) = await store.channel_webhooks("whatsapp")
    assert (kept.status, kept.lease_owner, kept.attempts) == ("pending", "b", 2)
    assert await store.settle_channel_webhook(
        webhook_id, owner="b", now=T0 + LEASE + 3, status="failed", error="given up"
    )
    (kept,) = await store.channel_webhooks("whatsapp")
    assert (kept.status, kept.last_error) == ("failed", "given up")
    assert await _claim(store, "c", T0 + 10 * LEASE) == []


async def test_a_stopped_owner_frees_its_bodies_before_the_lease_ends(store: Store) -> None:
    """An owner whose heartbeat says it stopped holds nothing: its body, and the ones
    after it, are handed out at once."""
    ids = [await store.receive_channel_webhook("whatsapp", b"{}", now=T0) for _ in range(2)]
    await store.heartbeat(["a"], now=T0, alive_until=T0 + 5)
    assert await _claim(store, "a", limit=1) == ids[:1]
    assert await _claim(store, "b", T0 + 1) == []
    await store.heartbeat(["a"], now=T0 + 2, alive_until=T0 + 2)  # a stopped
    assert await _claim(store, "b", T0 + 3) == ids


async def test_bodies_survive_a_restart(backend: Backend, store: Store) -> None:
    """A stored body, and one under a lease, are both there after the store reopens."""
    ids = [await store.receive_channel_webhook("whatsapp", RAW, now=T0) for _ in range(2)]
    assert await _claim(store, "a", limit=1) == ids[:1]
    reopened = await backend.reopen(store)
    assert await _claim(reopened, "b", T0 + LEASE + 1) == ids
    assert [w.body for w in await reopened.channel_webhooks("whatsapp")] == [RAW, RAW]


async def test_settled_bodies_are_purged_after_their_time(store: Store) -> None:
    """Done and failed bodies settled before the cutoff go; later ones and pending ones
    stay, whatever their age."""
    ids = [await store.receive_channel_webhook("whatsapp", b"{}", now=T0) for _ in range(4)]
    assert await _claim(store, "a", limit=3) == ids[:3]
    await store.settle_channel_webhook(ids[0], owner="a", now=T0 + 1, status="done")
    await store.settle_channel_webhook(ids[1], owner="a", now=T0 + 2, status="failed")
    await store.settle_channel_webhook(ids[2], owner="a", now=T0 + 100, status="done")
    assert await store.purge_channel_webhooks(T0 + 50) == 2
    assert [(w.id, w.status) for w in await store.channel_webhooks("whatsapp")] == [
        (ids[2], "done"),
        (ids[3], "pending"),
    ]
    assert await store.purge_channel_webhooks(T0 + 1_000, limit=10) == 1
    assert [w.id for w in await store.channel_webhooks("whatsapp")] == [ids[3]]
