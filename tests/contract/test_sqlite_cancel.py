"""A caller that stops waiting for the SQLite store must not wedge it: the writer
thread answers a cancelled future by leaving it alone, and later calls still work."""

from __future__ import annotations

import asyncio
from pathlib import Path

from trilha.store.sqlite import SQLiteStore


async def test_a_cancelled_call_leaves_the_store_working(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "cancel.db")
    await store.open()
    try:
        for _ in range(20):  # cancel reads and writes mid-flight, many times
            calls = [
                asyncio.ensure_future(store.trail_since(0)),
                asyncio.ensure_future(store.purge_responses(0.0)),
            ]
            await asyncio.sleep(0)
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
        assert await asyncio.wait_for(store.last_trail_id(), 5) == 0
        assert await asyncio.wait_for(store.list_api_keys(), 5) == []
    finally:
        await store.close()
