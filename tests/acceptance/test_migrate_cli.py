"""``trilha migrate`` and the schema check at start, on both stores.

PostgreSQL is shared by many processes: ``serve`` and ``worker`` never change
its schema and refuse one that is not current; ``trilha migrate`` applies the
migrations. The SQLite default migrates itself at open. Either refuses a
store written by a newer trilha.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from pgcluster import PgCluster, run_sync
from trilha.store.migrations import latest_version, load

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url(postgres_cluster: PgCluster) -> Iterator[str]:
    """A new, empty database on the session's server."""
    name = f"migrate_{random.randrange(1 << 30)}"
    postgres_cluster.create_database(name)
    try:
        yield postgres_cluster.url(name)
    finally:
        postgres_cluster.drop_database(name)


def fetchval(cluster: PgCluster, database: str, sql: str) -> Any:
    async def read() -> Any:
        conn = await cluster.connect(database)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return run_sync(read())


def one_line(result: Any) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


def test_postgres_is_migrated_by_trilha_migrate_not_by_serve_or_worker(
    cli: Any, pg_url: str, postgres_cluster: PgCluster
) -> None:
    line = one_line(cli("worker", "--until-idle", "--store", pg_url))
    assert "schema_mismatch" in line and "has no trilha schema" in line
    assert "trilha migrate" in line
    serve = one_line(cli("serve", "--port", "0", "--store", pg_url))
    assert "trilha migrate" in serve
    # nothing was created by the refused starts
    database = pg_url.rsplit("/", 1)[1]
    tables = fetchval(
        postgres_cluster,
        database,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    assert tables == 0

    first = cli("migrate", "--store", pg_url)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial" in first.stdout
    again = cli("migrate", "--store", pg_url, "--json")
    assert again.returncode == 0, again.stderr
    assert '"applied": []' in again.stdout
    assert cli("worker", "--until-idle", "--store", pg_url).returncode == 0


def test_a_newer_schema_is_refused_by_every_command(
    cli: Any, pg_url: str, postgres_cluster: PgCluster
) -> None:
    assert cli("migrate", "--store", pg_url).returncode == 0
    database = pg_url.rsplit("/", 1)[1]
    future = latest_version("postgresql") + 1
    postgres_cluster.execute(
        f"INSERT INTO schema_migrations VALUES ({future:d}, 'from_the_future', 0)",  # noqa: S608
        database,
    )
    for command in (["worker", "--until-idle"], ["migrate"], ["check"]):
        line = one_line(cli(*command, "--store", pg_url))
        assert f"version {future}, newer than this trilha knows" in line, command
        assert "upgrade trilha" in line


def test_sqlite_migrates_itself_but_refuses_a_newer_file(cli: Any) -> None:
    path = cli.cwd / "old.db"
    url = f"sqlite:///{path}"
    # an older file: every migration but the last applied, as that trilha applied them
    *older, newest = load("sqlite")
    last = newest.version
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations"
            " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        for migration in older:
            conn.executescript(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, 0)",
                (migration.version, migration.name),
            )
    assert cli("worker", "--until-idle", "--store", url).returncode == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (last,)
        conn.execute("INSERT INTO schema_migrations VALUES (?, 'from_the_future', 0)", (last + 1,))
    line = one_line(cli("worker", "--until-idle", "--store", url))
    assert f"version {last + 1}, newer than this trilha knows" in line


def test_a_malformed_postgres_url_is_one_line_without_the_password(cli: Any) -> None:
    line = one_line(cli("migrate", "--store", "postgresql:/user:s3cret@host/db"))
    assert "postgresql://USER" in line
    assert "s3cret" not in line
    bad_pool = one_line(cli("migrate", "--store", "postgresql://u@h/db?pool_max=0"))
    assert "pool_max must be a positive integer" in bad_pool
