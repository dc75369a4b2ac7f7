"""Store contract: institutions' calendars (``PUT /v1/calendars/{name}``), through the protocol
only: stored by institution and name, replaced in place, listed by name, forgotten, never
seen by another institution, and bounded per institution even under concurrent writers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from trilha.errors import LimitExceeded
from trilha.store.base import Store, StoredCalendar

from .conftest import T0, Backend


def definition(zone: str = "America/Sao_Paulo", **hours: Any) -> dict[str, Any]:
    return {
        "timeZone": zone,
        "hours": {"mon": [["08:00", "12:00"]], **hours},
        "holidays": [{"date": "2025-12-25", "name": "Natal"}],
    }


async def test_a_calendar_round_trips(store: Store) -> None:
    """A new calendar is created, reads back as stored, key order and all."""
    stored, created = await store.put_calendar("acme", "clinic", definition(), now=T0, limit=10)
    assert created is True
    assert stored == StoredCalendar("acme", "clinic", definition(), T0, T0)
    got = await store.get_calendar("acme", "clinic")
    assert got == stored
    assert got is not None and list(got.definition) == ["timeZone", "hours", "holidays"]
    assert await store.get_calendar("acme", "lab") is None


async def test_putting_again_replaces_and_keeps_the_creation_time(store: Store) -> None:
    await store.put_calendar("acme", "clinic", definition(), now=T0, limit=10)
    replaced = definition("Europe/Lisbon", sat=[["09:00", "13:00"]])
    stored, created = await store.put_calendar("acme", "clinic", replaced, now=T0 + 60, limit=10)
    assert created is False
    assert stored == StoredCalendar("acme", "clinic", replaced, T0, T0 + 60)
    assert await store.get_calendar("acme", "clinic") == stored
    assert len(await store.list_calendars("acme")) == 1


async def test_listing_by_name_and_by_names(store: Store) -> None:
    """Every calendar of the institution by name, or only those asked for (unknown names
    and an empty list give nothing)."""
    for i, name in enumerate(["pharmacy", "clinic", "lab"]):
        await store.put_calendar("acme", name, definition(), now=T0 + i, limit=10)
    assert [c.name for c in await store.list_calendars("acme")] == ["clinic", "lab", "pharmacy"]
    picked = await store.list_calendars("acme", ["lab", "nope", "clinic"])
    assert [c.name for c in picked] == ["clinic", "lab"]
    assert await store.list_calendars("acme", []) == []
    assert await store.list_calendars("nobody") == []


async def test_institutions_never_see_each_others_calendars(store: Store) -> None:
    """The same name in two institutions is two calendars; reads, deletes and the limit of
    one never touch the other's."""
    await store.put_calendar("acme", "clinic", definition(), now=T0, limit=1)
    await store.put_calendar("beta", "clinic", definition("UTC"), now=T0, limit=1)
    acme, beta = (
        await store.get_calendar("acme", "clinic"),
        await store.get_calendar("beta", "clinic"),
    )
    assert acme is not None and acme.definition["timeZone"] == "America/Sao_Paulo"
    assert beta is not None and beta.definition["timeZone"] == "UTC"
    assert [c.institution_id for c in await store.list_calendars("beta")] == ["beta"]
    assert await store.list_calendars("beta", ["clinic"]) == [beta]
    assert await store.delete_calendar("beta", "clinic") is True
    assert await store.get_calendar("acme", "clinic") == acme
    assert await store.get_calendar("beta", "clinic") is None
    assert await store.delete_calendar("gamma", "clinic") is False


async def test_delete_once(store: Store) -> None:
    await store.put_calendar("acme", "clinic", definition(), now=T0, limit=10)
    assert await store.delete_calendar("acme", "clinic") is True
    assert await store.delete_calendar("acme", "clinic") is False
    assert await store.get_calendar("acme", "clinic") is None


async def test_the_limit_counts_new_calendars_only(store: Store) -> None:
    """Past ``limit`` calendars a new one is refused (LimitExceeded, kind limit) and nothing
    is written; replacing one is always allowed; a deletion makes room."""
    for name in ("a", "b", "c"):
        await store.put_calendar("acme", name, definition(), now=T0, limit=3)
    with pytest.raises(LimitExceeded, match=r"'acme' has 3 calendars.*max_calendars") as caught:
        await store.put_calendar("acme", "d", definition(), now=T0, limit=3)
    assert caught.value.details == {"kind": "limit", "limit": 3}
    assert await store.get_calendar("acme", "d") is None
    _, created = await store.put_calendar("acme", "b", definition("UTC"), now=T0 + 1, limit=3)
    assert created is False
    await store.put_calendar("beta", "d", definition(), now=T0, limit=3)  # another's count
    assert await store.delete_calendar("acme", "a")
    _, created = await store.put_calendar("acme", "d", definition(), now=T0 + 2, limit=3)
    assert created is True


async def test_concurrent_writers_cannot_pass_the_limit(backend: Backend) -> None:
    """Twelve new calendars written at once through four handles (four connections, for a
    server) against a limit of five: exactly five are kept."""
    handles = [await backend.open() for _ in range(4)]

    async def put(i: int) -> bool:
        try:
            await handles[i % 4].put_calendar("acme", f"cal-{i}", definition(), now=T0 + i, limit=5)
        except LimitExceeded:
            return False
        return True

    results = await asyncio.gather(*(put(i) for i in range(12)))
    assert results.count(True) == 5
    assert len(await handles[0].list_calendars("acme")) == 5


async def test_calendars_outlive_a_restart(backend: Backend) -> None:
    store = await backend.open()
    stored, _ = await store.put_calendar("acme", "clinic", definition(), now=T0, limit=10)
    store = await backend.reopen(store)
    assert await store.list_calendars("acme") == [stored]
