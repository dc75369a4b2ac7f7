"""Store contract: channels' webhook bodies. A body is kept byte for byte and handed out
under a lease, oldest first; a body waits while an older pending body (processed
elsewhere, or waiting for its retry) names one of its conversations, other
conversations' bodies do not, and a body given up holds nothing back; a lease lapses
when it expires or its owner stops its heartbeat, and a lost lease settles nothing; a
retry resumes at its progress; settled bodies are purged after their time, with their
conversations, pending ones never; and all of it survives a restart."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest

from trilha.store.base import Store

from .conftest import LEASE, T0, Backend, PostgresBackend, SQLiteBackend

#: a body with bytes that are not UTF-8: kept as sent (the signature covered them)
RAW = b'{"object":"whatsapp_business_account","entry":[]}\xff\x00\n'
#: two contacts' conversations (``phone_number_id:wa_id``)
K, L = "106540352242922:5511900000001", "106540352242922:5511900000002"


async def _kept_keys(backend: Backend) -> list[tuple[int, str]]:
    """The stored conversation keys, read past the protocol (what purge must delete)."""
    query = "SELECT webhook_id, conversation_key FROM channel_webhook_keys ORDER BY 1, 2"
    if isinstance(backend, SQLiteBackend):
        with sqlite3.connect(backend.path) as conn:
            return [(int(r[0]), str(r[1])) for r in conn.execute(query)]
    assert isinstance(backend, PostgresBackend)
    conn = await asyncpg.connect(backend.url)
    try:
        return [(int(r[0]), str(r[1])) for r in await conn.fetch(query)]
    finally:
        await conn.close()


async def _receive(store: Store, *keys: str, channel: str = "whatsapp") -> int:
    return await store.receive_channel_webhook(channel, b"{}", now=T0, keys=keys)


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


async def test_a_conversations_bodies_go_in_the_order_stored(store: Store) -> None:
    """Oldest first; a body waits while an older one of its conversation is leased
    elsewhere, and while it waits for its retry; it resumes at its progress, and the
    later ones go once it is done."""
    ids = [await _receive(store, K) for _ in range(3)]
    assert await _claim(store, "a", limit=1) == ids[:1]
    assert await _claim(store, "b", T0 + 1) == []  # the second may not overtake the first
    assert await store.settle_channel_webhook(
        ids[0], owner="a", now=T0 + 2, status="pending", retry_at=T0 + 60, progress=3, error="x"
    )
    assert await _claim(store, "b", T0 + 3) == []  # nor while the first waits for its retry
    assert await _claim(store, "b", T0 + 59) == []
    (again,) = await store.claim_channel_webhooks(
        "whatsapp", "a", now=T0 + 60, lease_seconds=LEASE, limit=1
    )
    assert (again.id, again.progress, again.attempts, again.last_error) == (ids[0], 3, 2, "x")
    assert await store.settle_channel_webhook(ids[0], owner="a", now=T0 + 61, status="done")
    assert await _claim(store, "b", T0 + 62) == ids[1:]  # claimed together, in order


async def test_other_conversations_are_not_held_back(store: Store) -> None:
    """A body of another contact, or naming none, goes while a contact's older body
    waits; a body naming both conversations waits for the older one, and so do the
    later bodies of the conversation it holds back."""
    first = await _receive(store, K)
    other = await _receive(store, L)
    both = await _receive(store, L, K)
    after_both = await _receive(store, L)
    keyless = await _receive(store)
    assert await _claim(store, "a", limit=1) == [first]
    assert await _claim(store, "b", T0 + 1) == [other, keyless]
    assert await store.settle_channel_webhook(other, owner="b", now=T0 + 2, status="done")
    assert await _claim(store, "b", T0 + 3) == []  # `both` waits for `first`, `after_both` for it
    assert await store.settle_channel_webhook(first, owner="a", now=T0 + 4, status="done")
    assert await _claim(store, "b", T0 + 5) == [both, after_both]


async def test_a_body_given_up_holds_nothing_back(store: Store) -> None:
    """Once the older body is ``failed``, the conversation's later bodies go."""
    ids = [await _receive(store, K) for _ in range(2)]
    assert await _claim(store, "a", limit=1) == ids[:1]
    assert await store.settle_channel_webhook(
        ids[0], owner="a", now=T0 + 1, status="pending", retry_at=T0 + 100
    )
    assert await _claim(store, "a", T0 + 2) == []
    assert await _claim(store, "a", T0 + 100, limit=1) == ids[:1]
    assert await store.settle_channel_webhook(ids[0], owner="a", now=T0 + 101, status="failed")
    assert await _claim(store, "b", T0 + 102) == ids[1:]


async def test_released_bodies_are_not_counted_and_wait_for_the_older_one(store: Store) -> None:
    """Bodies claimed together and given back untouched lose their lease and their
    attempt; they wait while the older one waits for its retry; another owner's
    release, or a settled body's, changes nothing."""
    ids = [await _receive(store, K) for _ in range(3)]
    assert await _claim(store, "a") == ids
    assert await store.settle_channel_webhook(
        ids[0], owner="a", now=T0 + 1, status="pending", retry_at=T0 + 30
    )
    assert await store.release_channel_webhooks(ids[1:], owner="b") == 0
    assert await store.release_channel_webhooks(ids, owner="a") == 2  # ids[0] is not a's now
    kept = {w.id: w for w in await store.channel_webhooks("whatsapp")}
    assert [(kept[i].attempts, kept[i].lease_owner, kept[i].status) for i in ids[1:]] == [
        (0, None, "pending"),
        (0, None, "pending"),
    ]
    assert await store.release_channel_webhooks([], owner="a") == 0
    for at in (T0 + 2, T0 + 10, T0 + 29):  # polled again and again: never claimed
        assert await _claim(store, "a", at) == []
    assert all(w.attempts == 0 for w in await store.channel_webhooks("whatsapp") if w.id != ids[0])
    assert await _claim(store, "a", T0 + 30) == ids
    kept = {w.id: w for w in await store.channel_webhooks("whatsapp")}
    assert [kept[i].attempts for i in ids] == [2, 1, 1]


async def test_conversations_are_the_channels_own(store: Store) -> None:
    """Another channel's pending body naming the same key holds nothing back here,
    nor this channel's there."""
    elsewhere = await _receive(store, K, channel="other")
    assert await store.claim_channel_webhooks("other", "c", now=T0, lease_seconds=LEASE, limit=1)
    await store.settle_channel_webhook(
        elsewhere, owner="c", now=T0, status="pending", retry_at=T0 + 1_000
    )
    here = await _receive(store, K)
    assert await _claim(store, "a", limit=1) == [here]
    later_elsewhere = await _receive(store, L, channel="other")
    assert [
        w.id
        for w in await store.claim_channel_webhooks(
            "other", "c", now=T0 + 1, lease_seconds=LEASE, limit=10
        )
    ] == [later_elsewhere]


async def test_keys_are_bounded(store: Store) -> None:
    """Too many conversations, or an empty or overlong key: refused, nothing stored."""
    for keys in ([f"k{i}" for i in range(1_001)], [""], ["x" * 301]):
        with pytest.raises(ValueError, match="keys"):
            await store.receive_channel_webhook("whatsapp", b"{}", now=T0, keys=keys)
    assert await store.channel_webhooks("whatsapp") == []
    repeated = await store.receive_channel_webhook("whatsapp", b"{}", now=T0, keys=[K, K])
    assert await _claim(store, "a") == [repeated]


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
    ids = [await _receive(store, K) for _ in range(2)]
    await store.heartbeat(["a"], now=T0, alive_until=T0 + 5)
    assert await _claim(store, "a", limit=1) == ids[:1]
    assert await _claim(store, "b", T0 + 1) == []
    await store.heartbeat(["a"], now=T0 + 2, alive_until=T0 + 2)  # a stopped
    assert await _claim(store, "b", T0 + 3) == ids


async def test_bodies_survive_a_restart(backend: Backend, store: Store) -> None:
    """A stored body, and one under a lease, are both there after the store reopens;
    so are their conversations: a body waiting for its retry still holds the later
    one back."""
    ids = [await store.receive_channel_webhook("whatsapp", RAW, now=T0, keys=[K]) for _ in range(2)]
    assert await _claim(store, "a", limit=1) == ids[:1]
    reopened = await backend.reopen(store)
    assert await _claim(reopened, "b", T0 + LEASE + 1, limit=1) == ids[:1]
    assert await reopened.settle_channel_webhook(
        ids[0], owner="b", now=T0 + LEASE + 2, status="pending", retry_at=T0 + 1_000
    )
    again = await backend.reopen(reopened)
    assert await _claim(again, "c", T0 + LEASE + 3) == []
    assert await _claim(again, "c", T0 + 1_000) == ids
    assert [w.body for w in await again.channel_webhooks("whatsapp")] == [RAW, RAW]


async def test_settled_bodies_are_purged_after_their_time(backend: Backend, store: Store) -> None:
    """Done and failed bodies settled before the cutoff go, with their conversation
    keys; later ones and pending ones stay, whatever their age."""
    ids = [await _receive(store, f"k{i}") for i in range(4)]
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
    assert await _kept_keys(backend) == [(ids[3], "k3")]
