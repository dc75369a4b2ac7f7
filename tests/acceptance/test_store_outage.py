"""The store fails under a live ``trilha worker``: it backs off, logs CRITICAL once, and
carries on when the store is writable again, losing nothing it acknowledged.

Disk full: the SQLite file lives on a small tmpfs mounted for the test (root only; CI
runs as root). The WAL is truncated, then a filler file takes every free block, so the
next commit cannot grow the WAL and SQLite answers "database or disk is full". (A
read-only remount is refused by the kernel while the worker holds the file open for
writing, so disk full is the unwritable store tested.) Locked: another process holds
the write lock past the worker's busy timeout, which runs anywhere.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_crash_safety import wait_for  # tests/acceptance is on sys.path (rootdir mode)

from trilha.core.flow import load_flow
from trilha.errors import StoreUnavailable
from trilha.runtime import runtime

pytestmark = pytest.mark.slow

EXECUTIONS = 8
LOOPS = 12
FLOW = {
    "id": "drip",
    "start": "first",
    "nodes": [
        {"id": "first", "type": "question", "text": "first?", "variable": "first", "next": "tick"},
        {"id": "tick", "type": "delay", "seconds": 0.2, "next": "count"},
        {"id": "count", "type": "set", "expressions": {"n": "n + 1"}, "next": "loop"},
        {
            "id": "loop",
            "type": "condition",
            "branches": [{"when": f"n < {LOOPS}", "next": "tick"}],
            "default": "second",
        },
        {
            "id": "second",
            "type": "question",
            "text": "second?",
            "variable": "second",
            "next": "bye",
        },
        {"id": "bye", "type": "end", "text": "thanks {{first}} {{second}}"},
    ],
}


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, unmounted at the end whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the suite as root)")
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        unmounted = subprocess.run(["umount", str(mountpoint)], capture_output=True, check=False)
        if unmounted.returncode != 0:  # still busy: detach it now, the kernel frees it later
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        assert unmounted.returncode == 0, unmounted.stderr


class Lines:
    """Collects a pipe's lines in a thread, so a chatty process never blocks on it."""

    def __init__(self, pipe: Any) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: Any) -> None:
        for line in pipe:
            self.lines.append(line.rstrip("\n"))

    def events(self, level: str) -> list[dict[str, Any]]:
        found = []
        for line in list(self.lines):
            if line.startswith("{"):
                event = json.loads(line)
                if event["level"] == level:
                    found.append(event)
        return found


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db, timeout=10)) as conn:  # closed: the tmpfs must unmount
        return conn.execute(sql, params).fetchall()


def count(db: Path, status: str, node: str | None = None) -> int:
    sql = "SELECT COUNT(*) FROM executions WHERE status = ?"
    params: tuple[Any, ...] = (status,)
    if node is not None:
        sql, params = sql + " AND current_node_id = ?", (*params, node)
    return int(query(db, sql, *params)[0][0])


def start_all(store: str, config: Path) -> list[str]:
    async def main() -> list[str]:
        async with runtime(store, config) as rt:
            await rt.engine.publish(load_flow(FLOW, rt.engine.processors.node_types))
            return [
                (
                    await rt.engine.start(
                        "drip",
                        institution_id="inst",
                        conversation_id=f"conv-{i}",
                        contact_id=f"contact-{i}",
                        variables={"n": 0},
                    )
                ).id
                for i in range(EXECUTIONS)
            ]

    return asyncio.run(main())


def reply_all(store: str, config: Path, ids: list[str], text: str) -> list[str]:
    """Deliver ``text`` to every execution; returns the acknowledged message ids."""

    async def main() -> list[str]:
        async with runtime(store, config) as rt:
            acked = []
            for execution_id in ids:
                message_id = f"{execution_id}:{text}"
                result = await rt.engine.send(execution_id, text, message_id=message_id)
                assert result.status == "accepted"
                acked.append(message_id)
            return acked

    return asyncio.run(main())


@contextmanager
def disk_full(mountpoint: Path, db: Path) -> Iterator[None]:
    """Truncate the WAL (so the next commit must grow it), take every free block, and
    give them back at the end."""
    wait_for("an empty WAL", lambda: query(db, "PRAGMA wal_checkpoint(TRUNCATE)")[0][0] == 0)
    filler = mountpoint / "filler"
    try:
        with filler.open("wb") as out:
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        yield
    finally:
        filler.unlink()


@contextmanager
def write_locked(db: Path) -> Iterator[None]:
    """Another process holds the write lock past every busy timeout: "database is locked"."""
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")


@dataclass(frozen=True)
class Outage:
    db: Path
    #: a context manager: the store fails inside it
    make: Callable[[], AbstractContextManager[None]]
    #: what SQLite says meanwhile
    error: str


@pytest.fixture(params=["disk full", "locked"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Outage:
    """Where the store lives and how its outage is made: a full tmpfs (root only), or a
    write lock held by another process (anywhere)."""
    if request.param == "disk full":
        mountpoint: Path = request.getfixturevalue("tmpfs")
        db = mountpoint / "trilha.db"
        return Outage(db, lambda: disk_full(mountpoint, db), "database or disk is full")
    db = tmp_path / "trilha.db"
    return Outage(db, lambda: write_locked(db), "database is locked")


def test_worker_survives_a_store_outage(outage: Outage, cli: Any, tmp_path: Path) -> None:
    """The store fails under a running worker: it stays up, logs one CRITICAL line for
    the outage, recovers when the store is writable again, and every execution completes
    with every acknowledged reply applied and every committed step kept, none repeated."""
    db, error = outage.db, outage.error
    store = f"sqlite:///{db}"
    config = tmp_path / "trilha.toml"
    config.write_text(
        '[channel]\nkind = "memory"\n\n[engine]\nlease_seconds = 2\npoll_interval_seconds = 0.05\n',
        encoding="utf-8",
    )
    ids = start_all(store, config)
    worker = cli.spawn("worker", "--store", store, "--config", config)
    # the worker's process log (JSON lines, DESIGN §5) is its stdout
    _, stdout = Lines(worker.stderr), Lines(worker.stdout)
    try:
        wait_for("every execution to ask", lambda: count(db, "waiting_input", "first") == len(ids))
        acked = reply_all(store, config, ids, "one")
        wait_for("the loops to run", lambda: count(db, "waiting_delay") > 0)
        committed = set(query(db, "SELECT execution_id, seq, checksum FROM checkpoints"))

        with outage.make():
            wait_for("a CRITICAL line", lambda: bool(stdout.events("CRITICAL")), timeout=30)
            with pytest.raises(StoreUnavailable, match=error):
                reply_all(store, config, ids[:1], "lost")  # refused, so never acknowledged
            time.sleep(2)  # the worker keeps retrying through the outage
            assert worker.poll() is None, "\n".join(stdout.lines)
            (critical,) = stdout.events("CRITICAL")  # one line per outage, not per retry
            assert critical["message"] == "store.unavailable"
            assert error in critical["context"]["error"]["message"]
        wait_for(
            "the store to answer",
            lambda: any(e["message"] == "store.available" for e in stdout.events("WARN")),
            timeout=30,
        )
        wait_for(
            "every loop to finish",
            lambda: count(db, "waiting_input", "second") == len(ids),
            timeout=90,
        )
        acked += reply_all(store, config, ids, "two")
        wait_for("every execution to complete", lambda: count(db, "completed") == len(ids))
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=10)

    inbox = query(db, "SELECT message_id, applied_at FROM inbox ORDER BY id")
    assert [m for m, _ in inbox] == acked and all(applied for _, applied in inbox)
    assert committed <= set(query(db, "SELECT execution_id, seq, checksum FROM checkpoints"))
    for execution_id in ids:
        seqs = [
            s
            for (s,) in query(
                db, "SELECT seq FROM checkpoints WHERE execution_id = ? ORDER BY seq", execution_id
            )
        ]
        assert seqs == list(range(1, len(seqs) + 1))
        (variables,) = query(db, "SELECT variables FROM executions WHERE id = ?", execution_id)[0]
        assert json.loads(variables) == {"n": LOOPS, "first": "one", "second": "two"}
        texts = [
            t
            for (t,) in query(
                db, "SELECT text FROM outbox WHERE execution_id = ? ORDER BY id", execution_id
            )
        ]
        assert texts == ["first?", "second?", "thanks one two"]
