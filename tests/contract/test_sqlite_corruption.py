"""SQLite only: rows corrupted behind the store's back, and the migration bookkeeping.

The corruption contract (flagged at claim, quarantined, leased, restored) runs on
every backend in :mod:`test_corruption`, through ``Store.tamper``. These tests reach
further, into columns ``tamper`` does not write (binary or invalid UTF-8 text, an
unknown status, a non-numeric ``step_seq``, the checksum itself), with the ``sqlite3``
module, always while the store is closed (a disk error, a bad manual edit, a buggy
older release), then reopen the store and check that it sets the broken row aside
instead of crashing or losing it.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from trilha.core.states import ExecutionStatus
from trilha.errors import StoreError
from trilha.store import migrations
from trilha.store.base import Store

from .conftest import LEASE, T0, Make, SQLiteBackend

S = ExecutionStatus


def _execute(path: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(sql, params)


def _rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


#: (column, SQL expression) pairs written over one execution row; never user input
CORRUPTIONS = {
    "variables binary": ("variables", "X'00FF10'"),
    "variables invalid utf-8": ("variables", "CAST(X'FFFE7B7D' AS TEXT)"),
    "node_state not json": ("node_state", "'nope'"),
    "current_node_id changed": ("current_node_id", "'ghost-node'"),
    "step_seq not a number": ("step_seq", "'seven'"),
    "checksum wrong": ("checksum", "'00000000000000000000000000000000'"),
    "status unknown": ("status", "'exploded'"),
    "stack not frames": ("stack", "'[1]'"),
    "stack not json": ("stack", "'[{'"),
}


async def _corrupt(
    backend: SQLiteBackend, make: Make, column: str, expression: str, **victim: Any
) -> tuple[Store, str, list[str]]:
    """Store a victim (due first) and two healthy executions, corrupt the victim while
    the store is closed, and reopen it."""
    store = await backend.open()
    bad = await make.create(store, wake_at=T0 - 10, **victim)
    healthy = [(await make.create(store, wake_at=T0)).id for _ in range(2)]
    await backend.close(store)
    _execute(
        backend.path,
        f"UPDATE executions SET {column} = {expression} WHERE id = ?",  # noqa: S608 - constants
        (bad.id,),
    )
    return await backend.open(), bad.id, healthy


@pytest.mark.parametrize(("column", "expression"), CORRUPTIONS.values(), ids=CORRUPTIONS)
async def test_corrupted_execution_is_quarantined_and_handed_out_flagged(
    sqlite_backend: SQLiteBackend, make: Make, column: str, expression: str
) -> None:
    """claim_due does not crash on a corrupted row: it keeps a copy in quarantine with an
    ERROR log line, and hands the execution out flagged (identity and lease salvaged) so
    the engine can restore it from a checkpoint; healthy executions are handed out too."""
    store, bad, healthy = await _corrupt(sqlite_backend, make, column, expression)

    claims = await store.claim_due("w1", now=T0, lease_seconds=LEASE, limit=10)
    assert sorted(c.execution.id for c in claims) == sorted([bad, *healthy])
    flagged = {c.execution.id: c for c in claims if c.corruption is not None}
    assert list(flagged) == [bad]
    salvaged = flagged[bad].execution
    assert salvaged.lease_owner == "w1"
    assert salvaged.fencing_token >= 1
    assert salvaged.institution_id == "inst-1"

    quarantined = _rows(sqlite_backend.path, "SELECT execution_id, kind, reason FROM quarantine")
    assert [q[0] for q in quarantined] == [bad]
    assert quarantined[0][1] == "execution"
    assert quarantined[0][2]
    assert _rows(sqlite_backend.path, "SELECT COUNT(*) FROM executions WHERE id = ?", (bad,)) == [
        (1,)
    ]
    errors = [r for r in await store.logs(bad) if r.level == "ERROR"]
    assert len(errors) == 1
    with pytest.raises(StoreError):
        await store.get_execution(bad)

    # leased like any claim: not handed out again while the lease lives
    again = await store.claim_due("w2", now=T0 + 1, lease_seconds=LEASE, limit=10)
    assert bad not in [c.execution.id for c in again]

    # the quarantine survives a restart
    await sqlite_backend.reopen(store)
    assert [q[0] for q in _rows(sqlite_backend.path, "SELECT execution_id FROM quarantine")] == [
        bad
    ]


async def test_replace_cancels_an_execution_with_an_unknown_status(
    sqlite_backend: SQLiteBackend, make: Make
) -> None:
    """replace=True frees a conversation whose active execution has a garbage status."""
    store, bad, _ = await _corrupt(sqlite_backend, make, "status", "'exploded'", conversation="c1")
    new = await make.create(store, conversation="c1", created_at=T0 + 1, replace=True)
    assert (await store.latest_execution("inst-1", "c1")).id == new.id
    assert _rows(sqlite_backend.path, "SELECT status FROM executions WHERE id = ?", (bad,)) == [
        ("cancelled",)
    ]


async def test_reply_to_an_execution_with_an_unknown_status_is_stored(
    sqlite_backend: SQLiteBackend, make: Make
) -> None:
    """A contact's message is stored and acknowledged even if the execution row is corrupted."""
    store, _, _ = await _corrupt(sqlite_backend, make, "status", "'exploded'", conversation="c1")
    kwargs: dict[str, Any] = {
        "institution_id": "inst-1",
        "conversation_id": "c1",
        "message_id": "m1",
        "contact_id": "contact-x",
        "text": "hello?",
        "payload": None,
        "now": T0,
    }
    first = await store.deliver_inbound(**kwargs)
    assert first.status == "accepted"
    assert (await store.deliver_inbound(**kwargs)).status == "duplicate"
    assert _rows(sqlite_backend.path, "SELECT text FROM inbox") == [("hello?",)]


# --------------------------------------------------------------------------- migrations


async def test_reopening_does_not_reapply_migrations(
    sqlite_backend: SQLiteBackend, make: Make
) -> None:
    """schema_migrations holds exactly one row per migration, however often the file is opened."""
    store = await sqlite_backend.open()
    await make.create(store)
    for _ in range(3):
        store = await sqlite_backend.reopen(store)
    await sqlite_backend.close(store)
    expected = [(m.version, m.name) for m in migrations.load("sqlite")]
    assert expected
    assert _rows(sqlite_backend.path, "SELECT version, name FROM schema_migrations ORDER BY 1") == (
        expected
    )
    assert _rows(sqlite_backend.path, "SELECT COUNT(*) FROM executions") == [(1,)]


async def test_the_file_is_in_wal_mode(sqlite_backend: SQLiteBackend) -> None:
    """The store opens its file in WAL mode (readers never block the writer)."""
    store = await sqlite_backend.open()
    await sqlite_backend.close(store)
    assert _rows(sqlite_backend.path, "PRAGMA journal_mode") == [("wal",)]
