"""SQLite only: the API's reads over rows corrupted behind the store's back.

Like ``test_sqlite_corruption``, these tests break the database file with the
``sqlite3`` module while the store is closed, then reopen it: an execution
listing leaves an unreadable row out without cutting a page short, and the live
trail goes on past a line it cannot fully read or whose execution is gone.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from trilha.core.execution import Execution
from trilha.store.base import ExecutionFilter, Store

from .conftest import T0, Make, SQLiteBackend


def _execute(path: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(sql, params)


async def _listed_in_pages(store: Store, page: int, **where: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    before: tuple[float, str] | None = None
    while True:
        got = await store.list_executions(limit=page, where=ExecutionFilter(**where), before=before)
        pages.append([ex.id for ex in got])
        if len(got) < page:
            return pages
        before = (got[-1].created_at, got[-1].id)


async def test_listing_skips_unreadable_rows_without_short_pages(
    sqlite_backend: SQLiteBackend, make: Make
) -> None:
    """Unreadable executions are left out of a listing, and every page but the last is
    still full: a client that stops at a short page misses no healthy execution."""
    store = await sqlite_backend.open()
    made: list[Execution] = [await make.create(store, created_at=T0 + i) for i in range(9)]
    await sqlite_backend.close(store)
    bad = {made[7].id, made[6].id, made[2].id}
    for ex_id, (column, value) in zip(
        sorted(bad),
        [("variables", "'}{'"), ("status", "'exploded'"), ("checksum", "'0'")],
        strict=True,
    ):
        _execute(
            sqlite_backend.path,
            f"UPDATE executions SET {column} = {value} WHERE id = ?",  # noqa: S608 - constants
            (ex_id,),
        )
    store = await sqlite_backend.open()

    healthy = [ex.id for ex in reversed(made) if ex.id not in bad]
    assert [ex.id for ex in await store.list_executions()] == healthy
    for page in (1, 2, 3, 4):
        pages = await _listed_in_pages(store, page)
        assert [i for p in pages for i in p] == healthy
        assert all(len(p) == page for p in pages[:-1])
    assert [ex.id for ex in await store.list_executions(limit=2)] == healthy[:2]
    # the stuck filter reads the same way (every execution here has a past wake time)
    stuck = await store.list_executions(where=ExecutionFilter(stuck_before=T0 + 100))
    assert [ex.id for ex in stuck] == healthy


async def test_trail_streams_past_lines_it_cannot_fully_read(
    sqlite_backend: SQLiteBackend, make: Make
) -> None:
    """A line whose context is not JSON, one whose execution row is gone and one whose
    execution has an unknown status all go out, with what can be read."""
    store = await sqlite_backend.open()
    a = await make.create(store, institution="inst-1")
    b = await make.create(store, institution="inst-2")
    c = await make.create(store, institution="inst-1", flow_id="billing")
    await make.create(store, institution="inst-1")
    before = await store.trail_since(0)
    await sqlite_backend.close(store)
    path = sqlite_backend.path
    _execute(
        path, "UPDATE execution_logs SET context = '}{ not json' WHERE execution_id = ?", (a.id,)
    )
    _execute(path, "DELETE FROM executions WHERE id = ?", (b.id,))
    _execute(path, "UPDATE executions SET status = 'exploded' WHERE id = ?", (c.id,))
    store = await sqlite_backend.open()

    events = await store.trail_since(0)
    assert [e.id for e in events] == [e.id for e in before]
    broken, orphan, odd, fine = events
    assert broken.record.context == {"raw": "}{ not json"}
    assert broken.record.message == before[0].record.message
    assert (broken.institution_id, broken.flow_id) == ("inst-1", "onboarding")
    assert orphan.record == before[1].record
    assert (orphan.institution_id, orphan.flow_id, orphan.status) == ("", "", "")
    assert (odd.institution_id, odd.flow_id, odd.status) == ("inst-1", "billing", "exploded")
    assert fine == before[3]
    # a tenant's stream cannot place a line whose execution is gone: it is not sent
    assert [e.id for e in await store.trail_since(0, institution_id="inst-2")] == []
    assert [e.id for e in await store.trail_since(0, institution_id="inst-1")] == [
        broken.id,
        odd.id,
        fine.id,
    ]
    assert await store.trail_since(0, execution_id=b.id) == [orphan]
