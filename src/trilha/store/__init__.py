"""Stores: one protocol (:mod:`trilha.store.base`), one module per backend."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlparse

from trilha.errors import ConfigError
from trilha.store.base import Store

DEFAULT_STORE_URL = "sqlite:///./trilha.db"


def resolve_store_url(url: str | None) -> str:
    """``--store`` beats ``TRILHA_STORE`` beats the default ``./trilha.db``."""
    return url or os.environ.get("TRILHA_STORE") or DEFAULT_STORE_URL


def open_store(
    url: str | None = None, *, must_exist: bool = False, auto_migrate: bool | None = None
) -> Store:
    """Build the store a URL names (not yet opened).

    ``sqlite:///relative.db``, ``sqlite:////absolute.db``; query parameter
    ``synchronous`` (OFF, NORMAL, FULL, EXTRA; default FULL).
    ``postgresql://user:password@host:port/database`` (or ``postgres://``); query
    parameters ``pool_min`` (1), ``pool_max`` (10) and ``command_timeout`` (seconds,
    30) are ours, any other goes to the driver (``sslmode=require``...).

    ``auto_migrate`` (default: the backend's own, True for SQLite, False for
    PostgreSQL) says whether opening may apply pending migrations.
    """
    resolved = resolve_store_url(url)
    parsed = urlparse(resolved)
    if parsed.scheme in ("postgresql", "postgres"):
        from trilha.store.postgres import PostgresStore, parse_url

        dsn, options = parse_url(resolved)
        return PostgresStore(
            dsn,
            pool_min=int(options.get("pool_min", 1)),
            pool_max=int(options.get("pool_max", 10)),
            command_timeout=options.get("command_timeout", 30.0),
            auto_migrate=bool(auto_migrate),
        )
    if parsed.scheme == "sqlite":
        from trilha.store.sqlite import SQLiteStore

        path = parsed.path
        # sqlite:///rel.db -> "rel.db", sqlite:////abs.db -> "/abs.db";
        # sqlite://rel.db is a common slip, read as relative
        path = parsed.netloc + path if parsed.netloc else path[1:]
        if not path:
            raise ConfigError(f"--store {resolved!r}: no database path after sqlite:///")
        query = parse_qs(parsed.query)
        sync = query.get("synchronous", ["FULL"])[0]
        if sync.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ConfigError(
                f"--store: synchronous must be OFF, NORMAL, FULL or EXTRA, not {sync!r}"
            )
        return SQLiteStore(
            path,
            synchronous=sync,
            must_exist=must_exist,
            auto_migrate=True if auto_migrate is None else auto_migrate,
        )
    raise ConfigError(
        f"--store {resolved!r}: unsupported scheme {parsed.scheme!r}"
        " (expected sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE)"
    )


__all__ = ["DEFAULT_STORE_URL", "Store", "open_store", "resolve_store_url"]
