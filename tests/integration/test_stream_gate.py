"""The gate of open event streams over a real SQLite store of API keys: places per key
and per process, given back when a stream ends, and a revoked or changed key's streams
told to end at the next check, while a store that cannot be read ends none."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from trilha.api.auth import KeyRing, Principal, RateLimiter, Role, new_key
from trilha.api.events import StreamGate, StreamsFull, stream_budget
from trilha.store.sqlite import SQLiteStore


async def principal(store: SQLiteStore, ring: KeyRing, institution: str, role: Role) -> Principal:
    return (await keyed(store, ring, institution, role))[0]


async def keyed(
    store: SQLiteStore, ring: KeyRing, institution: str, role: Role
) -> tuple[Principal, str]:
    """A stored key, verified once by ``ring`` (so its cache holds it), and its plain form."""
    key, plain = new_key(institution, role, now=time.time())
    await store.create_api_key(key)
    found = await ring.verify(plain)
    assert found is not None
    return found, plain


@pytest.fixture
def ring(sqlite_store: SQLiteStore) -> KeyRing:
    return KeyRing(sqlite_store, RateLimiter(100, 100))


async def test_a_key_holds_its_share_and_the_process_its_total(
    sqlite_store: SQLiteStore, ring: KeyRing
) -> None:
    """Past ``per_key`` a key is refused (scope key), past ``total`` every key is (scope
    process); a released place is free again, and releasing twice frees one."""
    gate = StreamGate(per_key=2, total=3, recheck=ring.still_valid)
    acme = await principal(sqlite_store, ring, "acme", "viewer")
    beta = await principal(sqlite_store, ring, "beta", "viewer")
    first, _ = gate.open(acme), gate.open(acme)
    with pytest.raises(StreamsFull) as full:
        gate.open(acme)
    assert (full.value.scope, full.value.limit) == ("key", 2)
    gate.open(beta)
    with pytest.raises(StreamsFull) as full:
        gate.open(beta)
    assert (full.value.scope, full.value.limit) == ("process", 3)
    first.release()
    first.release()
    assert gate.count == 2 and gate.held_by(acme.key_id) == 1
    gate.open(beta)
    assert gate.held_by(beta.key_id) == 2


async def test_a_revoked_or_changed_key_has_its_streams_told_to_end(
    sqlite_store: SQLiteStore, ring: KeyRing
) -> None:
    """A check reads each key from the store (not the cache): the streams of a revoked
    key and of a key whose role changed are told to end; the others are not, and the
    ring, its cache refreshed by the check, stops accepting the revoked key at once."""
    gate = StreamGate(per_key=8, total=8, recheck=ring.still_valid)
    revoked, plain = await keyed(sqlite_store, ring, "acme", "viewer")
    changed = await principal(sqlite_store, ring, "acme", "admin")
    kept = await principal(sqlite_store, ring, "beta", "operator")
    doomed = [gate.open(revoked), gate.open(revoked), gate.open(changed)]
    alive = gate.open(kept)
    assert await gate.check_keys() == 0
    assert await sqlite_store.revoke_api_key(revoked.key_id, now=time.time())
    with sqlite3.connect(sqlite_store.path) as other_writer:  # no command changes a role
        other_writer.execute(
            "UPDATE api_keys SET role = 'viewer' WHERE key_id = ?", (changed.key_id,)
        )
    assert await gate.check_keys() == 3
    assert all(slot.revoked.is_set() for slot in doomed)
    assert not alive.revoked.is_set()
    assert await ring.verify(plain) is None


async def test_the_watch_ends_a_revoked_keys_streams_within_its_period(
    sqlite_store: SQLiteStore, ring: KeyRing
) -> None:
    """Started, the gate checks by itself every ``recheck_seconds``."""
    gate = StreamGate(per_key=8, total=8, recheck=ring.still_valid, recheck_seconds=0.05)
    viewer = await principal(sqlite_store, ring, "acme", "viewer")
    slot = gate.open(viewer)
    await gate.start()
    try:
        await sqlite_store.revoke_api_key(viewer.key_id, now=time.time())
        await asyncio.wait_for(slot.revoked.wait(), 2)
    finally:
        await gate.stop()


async def test_while_the_store_cannot_be_read_no_stream_is_ended(tmp_path: Path) -> None:
    """A key that cannot be read is not taken for revoked: the streams go on and the next
    round checks again."""
    store = SQLiteStore(tmp_path / "keys.db")
    await store.open()
    ring = KeyRing(store, RateLimiter(100, 100))
    gate = StreamGate(per_key=8, total=8, recheck=ring.still_valid)
    slot = gate.open(await principal(store, ring, "acme", "viewer"))
    await store.close()
    assert await gate.check_keys() == 0
    assert not slot.revoked.is_set()


def test_streams_never_take_more_than_half_the_file_descriptors() -> None:
    """The process's bound is the configured one, lowered to half the descriptors."""
    assert stream_budget(256, descriptors=1024) == 256
    assert stream_budget(256, descriptors=64) == 32
    assert stream_budget(256, descriptors=1) == 1
    assert 1 <= stream_budget(256) <= 256
