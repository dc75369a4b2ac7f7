"""The throwaway PostgreSQL cluster of ``tests/pgcluster.py``, against a real server.

The contract suite's ``"postgresql"`` backend and the crash tests stand on this
helper, so what they rely on is checked here first: it serves, clones a template,
keeps committed data through a server crash, and leaves no process behind.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from pgcluster import PgCluster  # tests/ is on sys.path (rootdir mode)

pytestmark = pytest.mark.slow

HELPER = Path(__file__).resolve().parent.parent / "pgcluster.py"


def server_processes(cluster: PgCluster) -> list[psutil.Process]:
    """The postmaster and every process it has forked."""
    assert cluster.pid is not None
    postmaster = psutil.Process(cluster.pid)
    return [postmaster, *postmaster.children(recursive=True)]


async def session_ended(conn: asyncpg.Connection) -> bool:
    """Whether the server ended ``conn``'s session (closed, or its next query fails)."""
    if conn.is_closed():
        return True
    try:
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError):
        return True
    return False


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder of /tmp itself: as root the server runs as ``postgres``, who cannot
    reach pytest's ``tmp_path`` (inside a 0700 ``/tmp/pytest-of-root``)."""
    path = Path(tempfile.mkdtemp(prefix="trilha-pg-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_a_cluster_serves_on_loopback_and_leaves_nothing_behind() -> None:
    cluster = PgCluster().start()
    try:
        conn = await cluster.connect()
        try:
            assert await conn.fetchval("SELECT current_user") == "trilha"
            assert await conn.fetchval("SHOW fsync") == "off"
            assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
            assert await conn.fetchval("SELECT inet_server_port()") == cluster.port
        finally:
            await conn.close()
        processes = server_processes(cluster)
        assert len(processes) > 1  # the postmaster and its background workers
    finally:
        cluster.close()

    assert cluster.pid is None
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)
    assert not cluster.directory.exists()  # a temporary folder goes with it


async def test_a_database_cloned_from_a_template_has_its_rows_and_drops_with_sessions(
    postgres_cluster: PgCluster,
) -> None:
    await postgres_cluster.create_database_async("pgc_template")
    conn = await postgres_cluster.connect("pgc_template")
    await conn.execute("CREATE TABLE answers (id int PRIMARY KEY, text text NOT NULL)")
    await conn.execute("INSERT INTO answers VALUES (1, 'sim')")
    await conn.close()

    await postgres_cluster.create_database_async("pgc_copy", template="pgc_template")
    copy = await postgres_cluster.connect("pgc_copy")
    assert await copy.fetch("SELECT id, text FROM answers") == [(1, "sim")]

    # a session still open on it does not stop the drop (WITH (FORCE))
    await postgres_cluster.drop_database_async("pgc_copy")
    assert await session_ended(copy)
    await postgres_cluster.drop_database_async("pgc_template")
    admin = await postgres_cluster.connect()
    try:
        left = await admin.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'pgc_%'")
    finally:
        await admin.close()
    assert left == []


async def test_committed_rows_survive_an_immediate_restart(folder: Path) -> None:
    with PgCluster(folder, durable=True) as cluster:
        port = cluster.port
        conn = await cluster.connect()
        await conn.execute("CREATE TABLE steps (seq int PRIMARY KEY)")
        await conn.execute("INSERT INTO steps SELECT generate_series(1, 100)")
        assert await conn.fetchval("SHOW fsync") == "on"

        cluster.restart(mode="immediate")

        assert await session_ended(conn)
        await conn.close()
        assert cluster.port == port
        conn = await cluster.connect()
        try:
            assert await conn.fetchval("SELECT count(*) FROM steps") == 100
        finally:
            await conn.close()
        log = cluster.log_file.read_text()
        assert "automatic recovery in progress" in log  # it was a crash, not a clean stop
    assert cluster.pid is None
    assert (folder / "data" / "PG_VERSION").exists()  # a given folder is kept


async def test_the_command_line_starts_and_stops_a_cluster_in_a_folder(folder: Path) -> None:
    def helper(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(HELPER), *args], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    dsn = helper("start", str(folder))
    cluster = PgCluster(folder)  # adopts the running server
    try:
        assert cluster.start().dsn == dsn
        assert helper("start", str(folder)) == dsn  # a second start finds it running
        conn = await cluster.connect()
        assert await conn.fetchval("SELECT 41 + 1") == 42
        await conn.close()
        processes = server_processes(cluster)

        helper("stop", str(folder))

        assert cluster.pid is None
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)
    finally:
        cluster.close()
