"""The SQLite backend: the embedded default, one file, no server.

One dedicated thread owns the connection. Every call is a job on its queue;
consecutive step commits are taken off the queue together and written in one
transaction, each inside its own SAVEPOINT (group commit): the fsync is paid
once for many executions, yet a stale fencing token rolls back only its own
step. Each caller is answered only after the transaction is durable.

Several processes may share the file: writes use ``BEGIN IMMEDIATE`` and a
busy timeout, so claims and commits serialise through SQLite's own lock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

from trilha.core.alerts import AlertState
from trilha.core.delivery import advances
from trilha.core.execution import (
    Checkpoint,
    Execution,
    Handoff,
    InboundMessage,
    LogRecord,
    OutboundMessage,
    TranscriptEntry,
    Transition,
    TurnRecord,
    checksum,
    dumps,
)
from trilha.core.percentiles import percentile
from trilha.core.signals import Signal, event_wait, waited_event
from trilha.core.states import TERMINAL, ExecutionStatus, Outcome
from trilha.errors import (
    ConversationBusy,
    CorruptedRecord,
    ExecutionEnded,
    ExecutionNotFound,
    StaleLease,
    StoreError,
    StoreUnavailable,
)
from trilha.observability.masking import mask_text, masked_record
from trilha.store import (
    bulk_sqlite,
    erasure_sqlite,
    holds_sqlite,
    migrations,
    webhooks_sqlite,
)
from trilha.store.base import (
    AgentMessageResult,
    ApiKey,
    BulkJob,
    ChannelWebhook,
    Claimed,
    Delivery,
    DeskMessage,
    ErrorGroup,
    ExecutionFilter,
    FailedStep,
    FlowTurnStats,
    InboundResult,
    InstitutionErrors,
    LongestTurn,
    NodeTypeStats,
    OutboxItem,
    OutboxStatus,
    QueueStats,
    ReceiptResult,
    Redrive,
    SignalResult,
    SlowNode,
    StepCommit,
    StepErrorMatch,
    StoredCalendar,
    StoredFlow,
    StoredResponse,
    StoredTriggers,
    StoreStats,
    Stuck,
    TemplateResend,
    TrailEvent,
    redriven_line,
    replaced_lines,
    too_many_calendars,
)
from trilha.store.erasure import Erased, ErasureRecord
from trilha.store.receipts import (
    DELIVERY_COLUMNS,
    RESEND_COLUMNS,
    late_before,
    receipt_line,
    resend_decision,
    resent_error,
    row_to_delivery,
    undelivered_sql,
)
from trilha.store.rows import (
    ACTIVE_SQL,
    API_KEY_COLUMNS,
    CHECKPOINT_COLUMNS,
    COMMIT_FIELDS,
    EXEC_COLUMNS,
    EXEC_FIELDS,
    INBOX_COLUMNS,
    OUTBOX_COLUMNS,
    OUTBOX_ITEM_COLUMNS,
    STEP_ERROR_COLUMNS,
    STEP_ERROR_GROUP,
    TERMINAL_SQL,
    TRAIL_MARK,
    TRANSCRIPT_ORDER,
    TRANSITION_COLUMNS,
    Row,
    dependency_waited_for,
    error_groups_from_rows,
    execution_params,
    json_or_none,
    lenient_json,
    readable,
    row_to_alert,
    row_to_api_key,
    row_to_checkpoint,
    row_to_execution,
    row_to_failed_step,
    row_to_inbound,
    row_to_outbound,
    row_to_outbox_item,
    row_to_trail_event,
    row_to_transcript_entry,
    row_to_transition,
    salvage,
    step_error_rows,
    stored_status,
)
from trilha.store.signals import (
    SIGNAL_COLUMNS,
    ended,
    not_found,
    received_line,
    row_to_signal,
    too_many,
)

T = TypeVar("T")

_SYNC_MODES = {"OFF", "NORMAL", "FULL", "EXTRA"}
_MAX_GROUP = 256
#: ``PRAGMA secure_delete``'s values as read (0, 1, 2) and as set again
_SECURE_DELETE = {0: "OFF", 1: "ON", 2: "FAST"}
#: tries of the checkpoint that empties the WAL after an erasure, 20 ms apart
_WAL_TRIES = 25


def _truncate_wal(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database and empty it, so an erased contact's old pages
    are gone from the ``-wal`` file too. A reader on an older snapshot (a stream, a
    listing) makes the checkpoint answer busy: it is tried again for half a second, then
    left to the next checkpoint, with a WARN line saying so."""
    for _ in range(_WAL_TRIES):
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if not busy:
            return
        time.sleep(0.02)
    logging.getLogger("trilha.store").warning(
        "store.erasure_wal_busy: readers kept the WAL from being emptied after an erasure;"
        " its old pages go at the next checkpoint"
    )


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """Translate driver errors into the trilha tree at the boundary."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if "executions_one_active" in str(exc) or "executions.institution_id" in str(exc):
            raise ConversationBusy("the conversation already has an active execution") from exc
        raise StoreError(f"integrity error: {exc}") from exc
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if any(w in text for w in ("locked", "busy", "unable to open", "disk", "readonly", "full")):
            raise StoreUnavailable(f"sqlite: {text}") from exc
        raise StoreError(f"sqlite: {text}") from exc
    except sqlite3.DatabaseError as exc:
        raise StoreUnavailable(f"sqlite: {exc}") from exc


class SQLiteStore:
    """:class:`~trilha.store.base.Store` over one SQLite file in WAL mode."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
        must_exist: bool = False,
        auto_migrate: bool = True,
    ) -> None:
        mode = synchronous.upper()
        if mode not in _SYNC_MODES:
            raise StoreError(
                f"synchronous must be one of {sorted(_SYNC_MODES)}, not {synchronous!r}"
            )
        self.path = Path(path)
        self.synchronous = mode
        self.busy_timeout_ms = busy_timeout_ms
        #: read-only commands refuse to create an empty store from a mistyped path
        self.must_exist = must_exist
        #: the embedded default migrates at open (one file, its processes upgrade it
        #: together); False makes an outdated file a SchemaMismatch, as on PostgreSQL
        self.auto_migrate = auto_migrate
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._serve, name="trilha-sqlite", daemon=True)
        self._thread.start()
        await self._call(self._connect, lifecycle=True)

    async def close(self) -> None:
        if self._thread is None:
            return
        await self._call(self._disconnect, lifecycle=True)
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _connect(self, _: sqlite3.Connection | None) -> None:
        if self.must_exist and not self.path.exists():
            raise StoreUnavailable(f"no store at {self.path} (check --store)")
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout_ms / 1000,
            )
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
        # a row with bytes that are not UTF-8 must read back (and fail its checksum),
        # not stop every query that touches it
        conn.text_factory = lambda b: b.decode("utf-8", "replace")
        try:
            with _mapped_errors():
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA cache_size = -16000")
                # a row's old bytes are zeroed when it is rewritten or deleted, at no
                # extra I/O (FAST), unless the build already zeroes freed pages too (ON):
                # a contact's erased data must not linger in the file (trilha forget)
                if conn.execute("PRAGMA secure_delete").fetchone()[0] == 0:
                    conn.execute("PRAGMA secure_delete = FAST")
                self._migrate(conn, may_migrate=self.auto_migrate, where=str(self.path))
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _disconnect(self, conn: sqlite3.Connection | None) -> None:
        if conn is not None:
            conn.close()
        self._conn = None

    async def migrate(self) -> list[str]:
        """Apply the pending migrations (``trilha migrate``); their names, oldest first.
        Works on a store that is not open too, over a connection of its own."""

        def run(conn: sqlite3.Connection) -> list[str]:
            return self._migrate(conn, may_migrate=True, where=str(self.path))

        if self._thread is not None:
            return await self._read(run)

        def standalone() -> list[str]:
            try:
                conn = sqlite3.connect(
                    self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000
                )
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
            try:
                with _mapped_errors():
                    conn.execute("PRAGMA journal_mode = WAL")
                    return run(conn)
            finally:
                conn.close()

        return await asyncio.to_thread(standalone)

    @staticmethod
    def _migrate(conn: sqlite3.Connection, *, may_migrate: bool, where: str) -> list[str]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            pending = migrations.plan("sqlite", done, may_migrate=may_migrate, where=where)
            for migration in pending:
                for statement in _split_sql(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, strftime('%s','now'))",
                    (migration.version, migration.name),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return [f"{m.version:04d}_{m.name}" for m in pending]

    # the writer thread -------------------------------------------------------------------

    def _serve(self) -> None:
        pending: _Job | None = None
        while True:
            job = pending or self._jobs.get()
            pending = None
            if job is None:
                return
            if job.group is None:
                job.run(self._conn)
                continue
            batch = [job]
            while len(batch) < _MAX_GROUP:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None or nxt.group != job.group:
                    pending = nxt
                    if nxt is None:
                        self._jobs.put(None)
                        pending = None
                    break
                batch.append(nxt)
            self._run_group(batch)

    def _run_group(self, batch: list[_Job]) -> None:
        conn = self._conn
        if conn is None:
            for job in batch:
                _fail(job.future, StoreUnavailable("store is closed"))
            return
        results: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            with _mapped_errors():
                conn.execute("BEGIN IMMEDIATE")
                for i, job in enumerate(batch):
                    conn.execute(f"SAVEPOINT s{i}")
                    try:
                        value = job.fn(conn)
                        conn.execute(f"RELEASE s{i}")
                        results.append((job, value, None))
                    except (StaleLease, ConversationBusy, CorruptedRecord) as exc:
                        conn.execute(f"ROLLBACK TO s{i}")
                        conn.execute(f"RELEASE s{i}")
                        results.append((job, None, exc))
                    except (sqlite3.IntegrityError, ValueError, TypeError) as exc:
                        # one bad step (a replayed seq, a reused key) must not sink the group
                        conn.execute(f"ROLLBACK TO s{i}")
                        conn.execute(f"RELEASE s{i}")
                        results.append((job, None, _map(exc)))
                conn.execute("COMMIT")
        except BaseException as exc:  # the whole group failed: every caller learns why
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in batch:
                _fail(job.future, _map(exc))
            return
        for job, value, error in results:
            if error is None:
                _resolve(job.future, value)
            else:
                _fail(job.future, error)

    async def _call(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        group: str | None = None,
        lifecycle: bool = False,
    ) -> T:
        if self._thread is None:
            raise StoreUnavailable("store is not open")
        job = _Job(fn, group, lifecycle)
        self._jobs.put(job)
        return await asyncio.wrap_future(job.future)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run(conn: sqlite3.Connection) -> T:
            with _mapped_errors():
                return fn(conn)

        return await self._call(run)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run(conn: sqlite3.Connection) -> T:
            with _mapped_errors():
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result

        return await self._call(run)

    # flows -------------------------------------------------------------------------------

    async def publish_flow(self, flow_id: str, definition: dict[str, Any], at: float) -> int:
        body = {k: v for k, v in definition.items() if k != "version"}
        digest = checksum(dumps(body))

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT version, digest FROM flows WHERE flow_id = ? ORDER BY version DESC LIMIT 1",
                (flow_id,),
            ).fetchone()
            if row is not None and row[1] == digest:
                return int(row[0])
            wanted = int(definition.get("version") or 1)
            version = max(wanted, int(row[0]) + 1) if row is not None else wanted
            conn.execute(
                "INSERT INTO flows VALUES (?, ?, ?, ?, ?)",
                (flow_id, version, dumps(body | {"version": version}), digest, at),
            )
            return version

        return await self._write(run)

    async def get_flow(self, flow_id: str, version: int | None = None) -> StoredFlow | None:
        def run(conn: sqlite3.Connection) -> StoredFlow | None:
            if version is None:
                row = conn.execute(
                    "SELECT flow_id, version, definition, created_at FROM flows"
                    " WHERE flow_id = ? ORDER BY version DESC LIMIT 1",
                    (flow_id,),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT flow_id, version, definition, created_at FROM flows"
                    " WHERE flow_id = ? AND version = ?",
                    (flow_id, version),
                ).fetchone()
            return None if row is None else StoredFlow(row[0], row[1], orjson.loads(row[2]), row[3])

        return await self._read(run)

    async def list_flows(self) -> list[StoredFlow]:
        def run(conn: sqlite3.Connection) -> list[StoredFlow]:
            rows = conn.execute(
                "SELECT f.flow_id, f.version, f.definition, f.created_at FROM flows f"
                " JOIN (SELECT flow_id, MAX(version) v FROM flows GROUP BY flow_id) m"
                " ON m.flow_id = f.flow_id AND m.v = f.version ORDER BY f.flow_id"
            ).fetchall()
            return [StoredFlow(r[0], r[1], orjson.loads(r[2]), r[3]) for r in rows]

        return await self._read(run)

    # calendars ---------------------------------------------------------------------------

    async def put_calendar(
        self,
        institution_id: str,
        name: str,
        definition: dict[str, Any],
        *,
        now: float,
        limit: int,
    ) -> tuple[StoredCalendar, bool]:
        def run(conn: sqlite3.Connection) -> tuple[StoredCalendar, bool]:
            row = conn.execute(
                "SELECT created_at FROM calendars WHERE institution_id = ? AND name = ?",
                (institution_id, name),
            ).fetchone()
            if row is None:
                (count,) = conn.execute(
                    "SELECT COUNT(*) FROM calendars WHERE institution_id = ?", (institution_id,)
                ).fetchone()
                if count >= limit:
                    raise too_many_calendars(institution_id, limit)
            created = now if row is None else float(row[0])
            conn.execute(
                "INSERT INTO calendars (institution_id, name, definition, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (institution_id, name) DO UPDATE"
                " SET definition = excluded.definition, updated_at = excluded.updated_at",
                (institution_id, name, orjson.dumps(definition).decode(), created, now),
            )
            stored = StoredCalendar(institution_id, name, definition, created, now)
            return stored, row is None

        return await self._write(run)

    async def get_calendar(self, institution_id: str, name: str) -> StoredCalendar | None:
        found = await self.list_calendars(institution_id, [name])
        return found[0] if found else None

    async def list_calendars(
        self, institution_id: str, names: Sequence[str] | None = None
    ) -> list[StoredCalendar]:
        def run(conn: sqlite3.Connection) -> list[StoredCalendar]:
            sql = (
                "SELECT institution_id, name, definition, created_at, updated_at"
                " FROM calendars WHERE institution_id = ?"
            )
            params: list[Any] = [institution_id]
            if names is not None:
                if not names:
                    return []
                sql += f" AND name IN ({','.join('?' * len(names))})"
                params.extend(names)
            rows = conn.execute(sql + " ORDER BY name", params).fetchall()
            return [StoredCalendar(r[0], r[1], orjson.loads(r[2]), r[3], r[4]) for r in rows]

        return await self._read(run)

    async def delete_calendar(self, institution_id: str, name: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM calendars WHERE institution_id = ? AND name = ?",
                (institution_id, name),
            )
            return cur.rowcount == 1

        return await self._write(run)

    # executions --------------------------------------------------------------------------

    async def create_execution(
        self,
        execution: Execution,
        transition: Transition,
        logs: list[LogRecord],
        *,
        replace: bool = False,
    ) -> Execution:
        def run(conn: sqlite3.Connection) -> Execution:
            if replace:
                old = conn.execute(
                    "SELECT id, status FROM executions"
                    f" WHERE institution_id = ? AND conversation_id = ? AND {ACTIVE_SQL}",
                    (execution.institution_id, execution.conversation_id),
                ).fetchone()
                if old is not None:
                    _cancel_row(
                        conn,
                        old[0],
                        stored_status(old[1]),
                        execution.created_at,
                        f"replaced by execution {execution.id}",
                    )
            if not replace:
                active = conn.execute(
                    "SELECT id FROM executions WHERE institution_id = ? AND conversation_id = ?"
                    f" AND {ACTIVE_SQL}",
                    (execution.institution_id, execution.conversation_id),
                ).fetchone()
                if active is not None:
                    raise ConversationBusy(
                        f"conversation '{execution.conversation_id}' already has an active"
                        f" execution ({active[0]}); replace it with --replace (API: replace: true)",
                        execution_id=active[0],
                    )
            conn.execute(_INSERT_EXECUTION, execution_params(execution))
            _insert_transitions(conn, [transition])
            _insert_logs(conn, logs)
            return execution

        # grouped with step commits: many starts share one fsync
        return await self._call(run, group="commit")

    async def create_triggered(
        self,
        execution: Execution,
        transition: Transition,
        logs: list[LogRecord],
        message: InboundMessage,
        *,
        replace_reason: str | None = None,
    ) -> InboundResult:
        def run(conn: sqlite3.Connection) -> InboundResult:
            # the duplicate first: a retry finds the message its first delivery stored
            existing = conn.execute(
                f"SELECT {INBOX_COLUMNS} FROM inbox WHERE institution_id = ?"
                " AND conversation_id = ? AND message_id = ?",
                (message.institution_id, message.conversation_id, message.message_id),
            ).fetchone()
            if existing is not None:
                return InboundResult("duplicate", row_to_inbound(existing))
            active = conn.execute(
                "SELECT id, status FROM executions WHERE institution_id = ? AND conversation_id = ?"
                f" AND {ACTIVE_SQL}",
                (execution.institution_id, execution.conversation_id),
            ).fetchone()
            if active is not None and replace_reason is None:
                raise ConversationBusy(
                    f"conversation '{execution.conversation_id}' already has an active"
                    f" execution ({active[0]})",
                    execution_id=active[0],
                )
            if active is not None and replace_reason is not None:
                _cancel_row(
                    conn, active[0], stored_status(active[1]), execution.created_at, replace_reason
                )
            conn.execute(_INSERT_EXECUTION, execution_params(execution))
            _insert_transitions(conn, [transition])
            _insert_logs(conn, logs)
            inserted = conn.execute(
                "INSERT INTO inbox (institution_id, conversation_id, message_id, contact_id, text,"
                " payload, received_at, execution_id, content, applied_at, applied_step)"
                f" VALUES (?,?,?,?,?,?,?,?,?,?,0) RETURNING {INBOX_COLUMNS}",
                (
                    message.institution_id,
                    message.conversation_id,
                    message.message_id,
                    message.contact_id,
                    message.text,
                    json_or_none(message.payload),
                    message.received_at,
                    execution.id,
                    json_or_none(message.content),
                    message.received_at,
                ),
            ).fetchone()
            return InboundResult("accepted", row_to_inbound(inserted))

        return await self._write(run)

    async def get_execution(self, execution_id: str) -> Execution:
        def run(conn: sqlite3.Connection) -> Execution:
            row = conn.execute(
                f"SELECT {EXEC_COLUMNS} FROM executions WHERE id = ?", (execution_id,)
            ).fetchone()
            if row is None:
                raise ExecutionNotFound(f"no execution '{execution_id}'")
            return row_to_execution(row)

        return await self._read(run)

    async def latest_execution(self, institution_id: str | None, conversation_id: str) -> Execution:
        def run(conn: sqlite3.Connection) -> Execution:
            sql = f"SELECT {EXEC_COLUMNS} FROM executions WHERE conversation_id = ?"
            params: tuple[Any, ...] = (conversation_id,)
            if institution_id is not None:
                # unary + : the conversation's index, never a walk of the tenant's history
                sql += " AND +institution_id = ?"
                params += (institution_id,)
            row = conn.execute(
                sql + " ORDER BY created_at DESC, rowid DESC LIMIT 1", params
            ).fetchone()
            if row is None:
                raise ExecutionNotFound(f"no execution for conversation '{conversation_id}'")
            return row_to_execution(row)

        return await self._read(run)

    async def count_by_status(self, institution_id: str | None = None) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            if institution_id is None:
                rows = conn.execute("SELECT status, COUNT(*) FROM executions GROUP BY status")
            else:
                rows = conn.execute(
                    "SELECT status, COUNT(*) FROM executions WHERE institution_id = ?"
                    " GROUP BY status",
                    (institution_id,),
                )
            return {str(status): int(n) for status, n in rows}

        return await self._read(run)

    async def count_by_outcome(self, institution_id: str | None = None) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            # off the partial outcome indexes alone: only ended executions are read
            if institution_id is None:
                rows = conn.execute(
                    "SELECT outcome, COUNT(*) FROM executions WHERE outcome IS NOT NULL"
                    " GROUP BY outcome"
                )
            else:
                rows = conn.execute(
                    "SELECT outcome, COUNT(*) FROM executions"
                    " INDEXED BY executions_institution_outcome"
                    " WHERE institution_id = ? AND outcome IS NOT NULL GROUP BY outcome",
                    (institution_id,),
                )
            return {str(outcome): int(n) for outcome, n in rows}

        return await self._read(run)

    async def waiting_for_dependencies(self, institution_id: str | None = None) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            sql = (
                "SELECT error FROM executions WHERE status = 'recovering'"
                " AND +waiting_for = 'dependency'"
            )
            params: tuple[Any, ...] = ()
            if institution_id is not None:
                sql += " AND +institution_id = ?"
                params = (institution_id,)
            counts: dict[str, int] = {}
            for (error,) in conn.execute(sql, params):
                name = dependency_waited_for(error)
                if name is not None:
                    counts[name] = counts.get(name, 0) + 1
            return counts

        return await self._read(run)

    async def status_since(self, execution_ids: Sequence[str]) -> dict[str, float]:
        ids = list(dict.fromkeys(execution_ids))

        def run(conn: sqlite3.Connection) -> dict[str, float]:
            found: dict[str, float] = {}
            for execution_id in ids:  # one index seek each, newest transition first
                row = conn.execute(
                    "SELECT at FROM transitions WHERE execution_id = ? ORDER BY id DESC LIMIT 1",
                    (execution_id,),
                ).fetchone()
                if row is not None:
                    found[execution_id] = float(row[0])
            return found

        return await self._read(run) if ids else {}

    async def claim_due(
        self,
        worker_id: str,
        *,
        now: float,
        lease_seconds: float,
        limit: int,
        execution_id: str | None = None,
    ) -> list[Claimed]:
        def run(conn: sqlite3.Connection) -> list[Claimed]:
            sql = f"SELECT id, lease_owner FROM executions WHERE wake_at <= ? AND {_LEASE_FREE}"
            params: tuple[Any, ...] = (now, now, now)
            if execution_id is not None:
                sql += " AND id = ?"
                params += (execution_id,)
            found = conn.execute(sql + " ORDER BY wake_at LIMIT ?", (*params, limit)).fetchall()
            claimed: list[Claimed] = []
            for eid, previous in found:
                row = conn.execute(
                    "UPDATE executions SET lease_owner = ?, lease_expires_at = ?,"
                    " fencing_token = fencing_token + 1 WHERE id = ?"
                    f" RETURNING {EXEC_COLUMNS}",
                    (worker_id, now + lease_seconds, eid),
                ).fetchone()
                try:
                    execution = row_to_execution(row)
                except CorruptedRecord as exc:
                    _quarantine(conn, eid, "execution", str(exc), row, now)
                    claimed.append(
                        Claimed(
                            salvage(row),
                            _pending_inbound(conn, eid),
                            corruption=str(exc),
                            taken_from=previous,
                        )
                    )
                    continue
                inbound = None
                if execution.status is ExecutionStatus.WAITING_INPUT:
                    inbound = _pending_inbound(conn, eid)
                claimed.append(Claimed(execution, inbound, taken_from=previous))
            return claimed

        return await self._write(run)

    async def heartbeat(self, owners: Sequence[str], *, now: float, alive_until: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO workers (worker_id, alive_until, started_at, beat_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (worker_id) DO UPDATE"
                " SET alive_until = excluded.alive_until, beat_at = excluded.beat_at",
                [(owner, alive_until, now, now) for owner in owners],
            )
            # rows of owners gone for a day are of no use to any claim
            conn.execute("DELETE FROM workers WHERE alive_until < ?", (now - 86_400,))

        await self._write(run)

    async def tamper(self, execution_id: str, target: str, garbage: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            if target == "current_node":
                sql = "UPDATE executions SET current_node_id = ? WHERE id = ?"
            elif target in ("variables", "checkpoint"):
                sql = "UPDATE executions SET variables = ? WHERE id = ?"
            else:
                raise ValueError(f"tamper: unknown target {target!r}")
            touched = conn.execute(sql, (garbage, execution_id)).rowcount
            if target == "checkpoint":
                touched = conn.execute(
                    "UPDATE checkpoints SET state = ? WHERE execution_id = ? AND seq ="
                    " (SELECT MAX(seq) FROM checkpoints WHERE execution_id = ?)",
                    (garbage, execution_id, execution_id),
                ).rowcount
            return touched == 1

        return await self._write(run)

    def subscribe_wake(self, callback: Callable[[], None]) -> Callable[[], None]:
        """SQLite has no notifications: workers of other processes poll the file."""
        return lambda: None

    async def renew_lease(
        self, execution_id: str, worker_id: str, fencing_token: int, until: float
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE executions SET lease_expires_at = ?"
                " WHERE id = ? AND lease_owner = ? AND fencing_token = ?",
                (until, execution_id, worker_id, fencing_token),
            )
            if cur.rowcount != 1:
                raise StaleLease(f"lease on {execution_id} lost (token {fencing_token})")

        await self._write(run)

    async def commit_step(self, commit: StepCommit, *, now: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            ex = commit.execution
            ex.updated_at = now
            wake = ex.wake_at
            if commit.applied_inbox:
                conn.executemany(
                    "UPDATE inbox SET applied_at = ?, applied_step = ? WHERE id = ?",
                    [(now, seq, i) for i, seq in commit.applied_inbox],
                )
            if commit.applied_signals:
                conn.executemany(
                    "UPDATE signals SET consumed_at = ?, consumed_step = ? WHERE id = ?",
                    [(now, seq, i) for i, seq in commit.applied_signals],
                )
            if ex.status is ExecutionStatus.WAITING_INPUT and _has_pending_input(conn, ex):
                wake = now  # a reply (or the signal waited for) arrived while we ran
            ex.wake_at = wake
            params = [
                v
                for f, v in zip(EXEC_FIELDS, execution_params(ex), strict=True)
                if f not in ("id", "fencing_token")
            ]
            lease_owner = None if commit.release else commit.lease_owner
            lease_expires = None if commit.release else ex.lease_expires_at
            cur = conn.execute(
                _UPDATE_EXECUTION,
                (
                    *params,
                    lease_owner,
                    lease_expires,
                    ex.id,
                    commit.fencing_token,
                    commit.lease_owner,
                ),
            )
            if cur.rowcount != 1:
                raise StaleLease(
                    f"commit on {ex.id} refused: fencing token {commit.fencing_token} is stale"
                )
            if commit.checkpoints:
                conn.executemany(
                    "INSERT INTO checkpoints VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            c.execution_id,
                            c.seq,
                            c.node_id,
                            c.node_type,
                            c.status.value,
                            c.state,
                            c.checksum,
                            c.schema_version,
                            c.started_at,
                            c.duration,
                            json_or_none(c.input),
                            json_or_none(c.output),
                            json_or_none(c.error),
                            c.attempt,
                        )
                        for c in commit.checkpoints
                    ],
                )
                failed = step_error_rows(ex, commit.checkpoints)
                if failed:
                    conn.executemany(_INSERT_STEP_ERROR, failed)
            _insert_transitions(conn, commit.transitions)
            if commit.outbox:
                conn.executemany(
                    "INSERT INTO outbox (idempotency_key, execution_id, institution_id,"
                    " conversation_id, contact_id, channel, text, payload, step_seq, created_at,"
                    " next_attempt_at, content, reply_to) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            m.idempotency_key,
                            m.execution_id,
                            m.institution_id,
                            m.conversation_id,
                            m.contact_id,
                            m.channel,
                            m.text,
                            json_or_none(m.payload),
                            m.step_seq,
                            m.created_at,
                            m.created_at,
                            json_or_none(m.content),
                            m.reply_to,
                        )
                        for m in commit.outbox
                    ],
                )
            if commit.handoffs:
                conn.executemany(
                    "INSERT INTO handoffs (execution_id, institution_id, conversation_id,"
                    " contact_id, queue, reason, at, next_notify_at, mode)"
                    " VALUES (?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            h.execution_id,
                            h.institution_id,
                            h.conversation_id,
                            h.contact_id,
                            h.queue,
                            h.reason,
                            h.at,
                            h.at,
                            h.mode,
                        )
                        for h in commit.handoffs
                    ],
                )
            _insert_turns(conn, commit.turns)
            _insert_logs(conn, commit.logs)
            if commit.hold_inbox:  # a person holds it now: unread replies are theirs
                _insert_logs(
                    conn,
                    holds_sqlite.hold_pending(conn, ex.id, ex.step_seq, ex.current_node_id, now),
                )

        await self._call(run, group="commit")

    async def deliver_inbound(
        self,
        *,
        institution_id: str | None,
        conversation_id: str,
        message_id: str,
        contact_id: str,
        text: str,
        payload: dict[str, Any] | None,
        now: float,
        execution_id: str | None = None,
        content: dict[str, Any] | None = None,
    ) -> InboundResult:
        def run(conn: sqlite3.Connection) -> InboundResult:
            conversation, contact = conversation_id, contact_id
            if execution_id is not None:
                row = conn.execute(
                    "SELECT id, institution_id, status, conversation_id, contact_id"
                    " FROM executions WHERE id = ?",
                    (execution_id,),
                ).fetchone()
                if row is None:
                    raise ExecutionNotFound(f"no execution '{execution_id}'")
                # the row's identity columns serve even when its state cannot be read
                conversation, contact = conversation or row[3], contact or row[4]
            else:
                row = conn.execute(
                    "SELECT id, institution_id, status FROM executions WHERE conversation_id = ?"
                    f" AND institution_id = ? AND {ACTIVE_SQL}",
                    (conversation_id, institution_id),
                ).fetchone()
            institution = row[1] if row is not None else institution_id
            if institution is None:
                raise ExecutionNotFound(f"no active execution for conversation '{conversation_id}'")
            existing = conn.execute(
                f"SELECT {INBOX_COLUMNS} FROM inbox WHERE institution_id = ?"
                " AND conversation_id = ? AND message_id = ?",
                (institution, conversation, message_id),
            ).fetchone()
            if existing is not None:
                return InboundResult("duplicate", row_to_inbound(existing))
            if execution_id is not None and stored_status(row[2]) in TERMINAL:
                raise ExecutionEnded(
                    f"execution '{execution_id}' is {row[2]}; it takes no more replies"
                )
            status = stored_status(row[2]) if row is not None else None
            target = row[0] if row is not None and status not in TERMINAL else None
            inserted = conn.execute(
                "INSERT INTO inbox (institution_id, conversation_id, message_id, contact_id, text,"
                " payload, received_at, execution_id, content) VALUES (?,?,?,?,?,?,?,?,?)"
                f" RETURNING {INBOX_COLUMNS}",
                (
                    institution,
                    conversation,
                    message_id,
                    contact,
                    text,
                    json_or_none(payload),
                    now,
                    target,
                    json_or_none(content),
                ),
            ).fetchone()
            if target is not None:
                conn.execute(
                    "UPDATE executions SET wake_at = ? WHERE id = ? AND status = 'waiting_input'"
                    " AND waiting_for = 'input'"
                    " AND (wake_at IS NULL OR wake_at > ?)",
                    (now, target, now),
                )
                hold = holds_sqlite.holding(conn, target)
                if hold is not None:  # said to the person holding the conversation
                    _insert_logs(conn, holds_sqlite.hold_pending(conn, target, *hold, now))
                    inserted = conn.execute(
                        f"SELECT {INBOX_COLUMNS} FROM inbox WHERE id = ?", (inserted[0],)
                    ).fetchone()
            return InboundResult("accepted", row_to_inbound(inserted))

        return await self._write(run)

    async def deliver_signal(
        self,
        *,
        execution_id: str,
        institution_id: str | None,
        event: str,
        signal_id: str,
        payload: Any,
        now: float,
        max_pending: int,
    ) -> SignalResult:
        def run(conn: sqlite3.Connection) -> SignalResult:
            row = conn.execute(
                "SELECT institution_id, status, current_node_id FROM executions WHERE id = ?",
                (execution_id,),
            ).fetchone()
            if row is None or (institution_id is not None and row[0] != institution_id):
                raise not_found(execution_id)
            existing = conn.execute(
                f"SELECT {SIGNAL_COLUMNS} FROM signals WHERE execution_id = ? AND signal_id = ?",
                (execution_id, signal_id),
            ).fetchone()
            if existing is not None:
                return SignalResult("duplicate", row_to_signal(existing))
            status = stored_status(row[1])
            if status in TERMINAL:
                raise ended(execution_id, status, row[1])
            pending = conn.execute(
                "SELECT COUNT(*) FROM signals WHERE execution_id = ? AND consumed_at IS NULL",
                (execution_id,),
            ).fetchone()[0]
            if pending >= max_pending:
                raise too_many(execution_id, pending, max_pending)
            text = dumps(payload)
            signal = row_to_signal(
                conn.execute(
                    "INSERT INTO signals (execution_id, institution_id, event, signal_id,"
                    f" payload, received_at) VALUES (?,?,?,?,?,?) RETURNING {SIGNAL_COLUMNS}",
                    (execution_id, row[0], event, signal_id, text, now),
                ).fetchone()
            )
            _insert_logs(conn, [received_line(signal, row[2], len(text.encode()))])
            conn.execute(
                "UPDATE executions SET wake_at = ? WHERE id = ? AND status = 'waiting_input'"
                " AND waiting_for = ? AND (wake_at IS NULL OR wake_at > ?)",
                (now, execution_id, event_wait(event), now),
            )
            return SignalResult("accepted", signal)

        return await self._write(run)

    async def pending_signal(
        self, execution_id: str, event: str, *, skip: Sequence[int] = ()
    ) -> Signal | None:
        def run(conn: sqlite3.Connection) -> Signal | None:
            return _pending_signal(conn, execution_id, event, skip)

        return await self._read(run)

    async def signals_for(self, execution_id: str) -> list[Signal]:
        def run(conn: sqlite3.Connection) -> list[Signal]:
            rows = conn.execute(
                f"SELECT {SIGNAL_COLUMNS} FROM signals WHERE execution_id = ? ORDER BY id",
                (execution_id,),
            ).fetchall()
            return [row_to_signal(r) for r in rows]

        return await self._read(run)

    async def pending_inbound(self, execution_id: str, *, limit: int) -> list[InboundMessage]:
        def run(conn: sqlite3.Connection) -> list[InboundMessage]:
            rows = conn.execute(
                f"SELECT {INBOX_COLUMNS} FROM inbox WHERE execution_id = ?"
                " AND applied_at IS NULL ORDER BY id LIMIT ?",
                (execution_id, limit),
            ).fetchall()
            return [row_to_inbound(r) for r in rows]

        return await self._read(run)

    async def snooze(
        self,
        execution_id: str,
        *,
        worker_id: str,
        fencing_token: int,
        wake_at: float,
        now: float,
        logs: Sequence[LogRecord] = (),
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE executions SET wake_at = ?, lease_owner = NULL, lease_expires_at = NULL"
                " WHERE id = ? AND fencing_token = ? AND lease_owner = ?",
                (wake_at, execution_id, fencing_token, worker_id),
            )
            if cur.rowcount != 1:
                raise StaleLease(f"lease on {execution_id} lost (token {fencing_token})")
            _insert_logs(conn, list(logs))

        await self._write(run)

    async def queue_stats(self, now: float, execution_id: str | None = None) -> QueueStats:
        def run(conn: sqlite3.Connection) -> QueueStats:
            where, params = ("", ()) if execution_id is None else (" AND id = ?", (execution_id,))
            due = conn.execute(
                f"SELECT COUNT(*) FROM executions WHERE wake_at <= ? AND {_LEASE_FREE}" + where,
                (now, now, now, *params),
            ).fetchone()[0]
            leased = conn.execute(
                # lease_owner first: the partial index of the leased rows, not every row
                "SELECT COUNT(*) FROM executions WHERE lease_owner IS NOT NULL"
                " AND lease_expires_at >= ?" + where,
                (now, *params),
            ).fetchone()[0]
            waiting = conn.execute(
                "SELECT COUNT(*) FROM executions WHERE status IN ('waiting_input', 'waiting_delay')"
                + where,
                params,
            ).fetchone()[0]
            next_wake = conn.execute(
                "SELECT MIN(wake_at) FROM executions WHERE wake_at IS NOT NULL" + where, params
            ).fetchone()[0]
            owhere, oparams = (
                ("", ()) if execution_id is None else (" AND execution_id = ?", (execution_id,))
            )
            pending = conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE status = 'pending'" + owhere, oparams
            ).fetchone()[0]
            return QueueStats(due, leased, waiting, pending, next_wake)

        return await self._read(run)

    async def operator_write(
        self,
        execution: Execution,
        *,
        expected_token: int,
        transitions: list[Transition],
        logs: list[LogRecord],
        now: float,
    ) -> Execution:
        def run(conn: sqlite3.Connection) -> Execution:
            # a step commit does not move the token, so the step count and the update
            # time read by the operator must still hold too: a commit landing between
            # the operator's read and this write is never rolled back
            read_seq, read_updated = execution.step_seq, execution.updated_at
            execution.updated_at = now
            if execution.status is ExecutionStatus.WAITING_INPUT and _has_pending_input(
                conn, execution
            ):
                execution.wake_at = now
            execution.fencing_token = expected_token + 1
            execution.lease_owner = execution.lease_expires_at = None
            cur = conn.execute(
                _UPDATE_EXECUTION_BY_ID[: -len(" WHERE id = ?")]
                + " WHERE id = ? AND fencing_token = ? AND step_seq = ? AND updated_at = ?",
                (
                    *execution_params(execution)[1:],
                    None,
                    None,
                    execution.id,
                    expected_token,
                    read_seq,
                    read_updated,
                ),
            )
            if cur.rowcount != 1:
                raise StaleLease(f"execution {execution.id} changed meanwhile; try again")
            _insert_transitions(conn, transitions)
            _insert_logs(conn, logs)
            return execution

        return await self._write(run)

    async def quarantine(
        self, execution_id: str, *, kind: str, reason: str, payload: Any, now: float
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO quarantine (execution_id, kind, reason, payload, at)"
                " VALUES (?,?,?,?,?)",
                (execution_id, kind, reason, json_or_none(payload), now),
            )

        await self._write(run)

    async def quarantined(self, execution_id: str) -> list[dict[str, Any]]:
        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT kind, reason, payload, at FROM quarantine WHERE execution_id = ?"
                " ORDER BY id",
                (execution_id,),
            ).fetchall()
            return [{"kind": r[0], "reason": r[1], "payload": r[2], "at": r[3]} for r in rows]

        return await self._read(run)

    async def find_stuck(self, now: float, *, grace_seconds: float) -> list[Stuck]:
        def run(conn: sqlite3.Connection) -> list[Stuck]:
            rows = conn.execute(
                "SELECT id, status, wake_at, due_at FROM executions"
                f" WHERE status NOT IN ({TERMINAL_SQL}, 'paused')"
                " AND (lease_expires_at IS NULL OR lease_expires_at < ?)"
                " AND (wake_at IS NULL"
                " OR (due_at IS NOT NULL AND due_at < ? AND wake_at > due_at))",
                (now, now - grace_seconds),
            ).fetchall()
            return [
                Stuck(
                    r[0], r[1], "no wake time" if r[2] is None else "wake time after its due time"
                )
                for r in rows
            ]

        return await self._read(run)

    async def reschedule(
        self, execution_id: str, *, wake_at: float, reason: str, now: float
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE executions SET wake_at = ? WHERE id = ?", (wake_at, execution_id))
            _insert_logs(
                conn,
                [
                    LogRecord(
                        execution_id, "WARN", "sweeper.rescheduled", now, context={"reason": reason}
                    )
                ],
            )

        await self._write(run)

    async def claim_handoff_notices(
        self, *, now: float, lease_seconds: float, limit: int
    ) -> list[tuple[int, Handoff]]:
        def run(conn: sqlite3.Connection) -> list[tuple[int, Handoff]]:
            rows = conn.execute(
                "UPDATE handoffs SET lease_expires_at = ? WHERE id IN ("
                " SELECT id FROM handoffs WHERE notified_at IS NULL AND next_notify_at <= ?"
                " AND (lease_expires_at IS NULL OR lease_expires_at < ?) ORDER BY id LIMIT ?)"
                " RETURNING id, execution_id, institution_id, conversation_id, contact_id,"
                " queue, reason, at, mode",
                (now + lease_seconds, now, now, limit),
            ).fetchall()
            return sorted((r[0], Handoff(*r[1:])) for r in rows)

        return await self._write(run)

    async def mark_handoff_notice(
        self, handoff_id: int, *, now: float, error: str | None, retry_at: float | None
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if error is None:
                conn.execute(
                    "UPDATE handoffs SET notified_at = ?, notify_attempts = notify_attempts + 1,"
                    " lease_expires_at = NULL WHERE id = ?",
                    (now, handoff_id),
                )
            else:
                conn.execute(
                    "UPDATE handoffs SET notify_attempts = notify_attempts + 1, last_error = ?,"
                    " next_notify_at = ?, lease_expires_at = NULL WHERE id = ?",
                    (error[:2000], retry_at, handoff_id),
                )

        await self._write(run)

    # a person holds the conversation ------------------------------------------------------

    async def record_agent_message(
        self,
        *,
        institution_id: str,
        conversation_id: str,
        message_id: str,
        agent_id: str,
        text: str,
        content: dict[str, Any] | None,
        now: float,
    ) -> AgentMessageResult:
        def run(conn: sqlite3.Connection) -> AgentMessageResult:
            result, lines = holds_sqlite.record_agent_message(
                conn,
                institution_id=institution_id,
                conversation_id=conversation_id,
                message_id=message_id,
                agent_id=agent_id,
                text=text,
                content=content,
                now=now,
            )
            _insert_logs(conn, lines)
            return result

        return await self._write(run)

    async def claim_desk_messages(
        self, *, now: float, lease_seconds: float, limit: int
    ) -> list[DeskMessage]:
        def run(conn: sqlite3.Connection) -> list[DeskMessage]:
            return holds_sqlite.claim_desk_messages(
                conn, now=now, lease_seconds=lease_seconds, limit=limit
            )

        return await self._write(run)

    async def mark_desk_message(
        self, forward_id: int, *, now: float, error: str | None, retry_at: float | None
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            holds_sqlite.mark_desk_message(
                conn, forward_id, now=now, error=error, retry_at=retry_at
            )

        await self._write(run)

    # outbox -------------------------------------------------------------------------------

    async def claim_outbox(
        self, dispatcher_id: str, *, now: float, lease_seconds: float, limit: int
    ) -> list[OutboundMessage]:
        def run(conn: sqlite3.Connection) -> list[OutboundMessage]:
            rows = conn.execute(
                "UPDATE outbox SET lease_owner = ?, lease_expires_at = ? WHERE id IN ("
                " SELECT o.id FROM outbox o WHERE o.status = 'pending' AND o.next_attempt_at <= ?"
                " AND (o.lease_expires_at IS NULL OR o.lease_expires_at < ?"
                " OR o.lease_owner IN (SELECT worker_id FROM workers WHERE alive_until < ?))"
                # keep each conversation in order: nothing overtakes an earlier message
                # that waits for its retry or is out with another dispatcher
                " AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.status = 'pending'"
                " AND e.institution_id = o.institution_id"
                " AND e.conversation_id = o.conversation_id AND e.id < o.id"
                " AND (e.next_attempt_at > ? OR e.lease_expires_at >= ?))"
                " ORDER BY o.id LIMIT ?)"
                f" RETURNING {OUTBOX_COLUMNS}",
                (dispatcher_id, now + lease_seconds, now, now, now, now, now, limit),
            ).fetchall()
            return sorted((row_to_outbound(r) for r in rows), key=lambda m: m.id or 0)

        return await self._write(run)

    async def release_outbox(self, dispatcher_id: str, message_ids: list[int]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET lease_owner = NULL, lease_expires_at = NULL"
                " WHERE id = ? AND lease_owner = ? AND status = 'pending'",
                [(i, dispatcher_id) for i in message_ids],
            )

        if message_ids:
            await self._write(run)

    async def mark_sent(
        self, message_ids: list[int], *, now: float, logs: Sequence[LogRecord] = ()
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                " lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
                [(now, i) for i in message_ids],
            )
            _insert_logs(conn, list(logs))

        await self._write(run)

    async def mark_failed(
        self,
        message_id: int,
        *,
        error: str,
        retry_at: float | None,
        now: float,
        logs: Sequence[LogRecord] = (),
        attempted: bool = True,
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + ?, last_error = ?, next_attempt_at = ?,"
                " status = ?, lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
                (
                    int(attempted),
                    error[:2000],
                    retry_at,
                    "pending" if retry_at is not None else "dead",
                    message_id,
                ),
            )
            _insert_logs(conn, list(logs))

        await self._write(run)

    async def list_outbox(
        self,
        status: OutboxStatus,
        *,
        institution_id: str | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> list[OutboxItem]:
        def run(conn: sqlite3.Connection) -> list[OutboxItem]:
            sql = f"SELECT {OUTBOX_ITEM_COLUMNS} FROM outbox WHERE status = ? AND id > ?"
            params: list[Any] = [status, after or 0]
            if institution_id is not None:
                sql += " AND institution_id = ?"
                params.append(institution_id)
            rows = conn.execute(sql + " ORDER BY id LIMIT ?", (*params, limit)).fetchall()
            return [row_to_outbox_item(r) for r in rows]

        return await self._read(run)

    async def count_dead_outbox(self, institution_id: str | None = None) -> int:
        def run(conn: sqlite3.Connection) -> int:
            sql, params = "SELECT COUNT(*) FROM outbox WHERE status = 'dead'", []
            if institution_id is not None:
                sql += " AND institution_id = ?"
                params.append(institution_id)
            return int(conn.execute(sql, params).fetchone()[0])

        return await self._read(run)

    async def redrive_outbox(
        self, message_id: int, *, institution_id: str | None, now: float, actor: str
    ) -> Redrive:
        def run(conn: sqlite3.Connection) -> Redrive:
            row = conn.execute(
                f"SELECT {OUTBOX_ITEM_COLUMNS} FROM outbox WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                return Redrive("not_found")
            item = row_to_outbox_item(row)
            if institution_id is not None and item.institution_id != institution_id:
                return Redrive("not_found")
            if item.status == "sent":
                return Redrive("sent", item)
            # the lease is left as it is: a pending message out with a dispatcher now is
            # not handed to a second one
            conn.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?"
                " WHERE id = ?",
                (now, message_id),
            )
            _insert_logs(conn, [redriven_line(item, actor=actor, now=now)])
            redriven = dataclasses.replace(item, status="pending", attempts=0, next_attempt_at=now)
            return Redrive("redriven", redriven)

        return await self._write(run)

    # delivery receipts ---------------------------------------------------------------------

    async def record_receipt(
        self,
        *,
        institution_id: str,
        conversation_id: str,
        idempotency_key: str,
        status: str,
        at: float,
        error: str | None,
        now: float,
        message_id: str | None = None,
    ) -> ReceiptResult | None:
        def run(conn: sqlite3.Connection) -> ReceiptResult | None:
            row = conn.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM outbox WHERE idempotency_key = ?"
                " AND institution_id = ? AND conversation_id = ?",
                (idempotency_key, institution_id, conversation_id),
            ).fetchone()
            if row is None:
                return None
            before = row_to_delivery(row)
            inserted = conn.execute(
                "INSERT INTO delivery_receipts"
                " (outbox_id, status, at, error, received_at, message_id)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT (outbox_id, status, message_id) DO NOTHING",
                (before.outbox_id, status, at, error, now, message_id or ""),
            ).rowcount
            if inserted == 0:
                return ReceiptResult(duplicate=True, advanced=False, delivery=before)
            advanced = advances(before.receipt, status)
            after = before
            if advanced:
                conn.execute(
                    "UPDATE outbox SET delivery_status = ?, delivery_at = ?, delivery_error = ?"
                    " WHERE id = ?",
                    (status, at, error, before.outbox_id),
                )
                after = replace(before, receipt=status, receipt_at=at, receipt_error=error)
            line = receipt_line(
                after, status=status, at=at, error=error, advanced=advanced, now=now
            )
            _insert_logs(conn, [line])
            return ReceiptResult(duplicate=False, advanced=advanced, delivery=after)

        return await self._write(run)

    async def resend_as_template(
        self,
        *,
        institution_id: str,
        conversation_id: str,
        idempotency_key: str,
        code: int,
        error: str | None,
        now: float,
        first: bool,
    ) -> TemplateResend:
        def run(conn: sqlite3.Connection) -> TemplateResend:
            # under the write lock (BEGIN IMMEDIATE): two processes decide in turn, and
            # the second finds the content switched already
            row = conn.execute(
                f"SELECT {RESEND_COLUMNS} FROM outbox WHERE idempotency_key = ?"
                " AND institution_id = ? AND conversation_id = ?",
                (idempotency_key, institution_id, conversation_id),
            ).fetchone()
            result, content, lines = resend_decision(
                row, idempotency_key=idempotency_key, code=code, error=error, now=now, first=first
            )
            if content is not None:
                conn.execute(
                    "UPDATE outbox SET content = ?, status = 'pending', next_attempt_at = ?,"
                    " last_error = ?, sent_at = NULL WHERE id = ?",
                    (content, now, resent_error(code, error), row[0]),
                )
            _insert_logs(conn, lines)
            return result

        return await self._write(run)

    async def deliveries(self, execution_id: str) -> list[Delivery]:
        def run(conn: sqlite3.Connection) -> list[Delivery]:
            rows = conn.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM outbox WHERE execution_id = ?"
                " ORDER BY step_seq, id",
                (execution_id,),
            ).fetchall()
            return [row_to_delivery(r) for r in rows]

        return await self._read(run)

    async def undelivered(self, execution_ids: Sequence[str], *, now: float) -> dict[str, int]:
        ids = list(dict.fromkeys(execution_ids))

        def run(conn: sqlite3.Connection) -> dict[str, int]:
            marks = ",".join("?" * len(ids))
            rows = conn.execute(
                f"SELECT execution_id, COUNT(*) FROM outbox WHERE execution_id IN ({marks})"
                f" AND {undelivered_sql('?')} GROUP BY execution_id",
                (*ids, late_before(now)),
            ).fetchall()
            return {str(r[0]): int(r[1]) for r in rows}

        return await self._read(run) if ids else {}

    # trail --------------------------------------------------------------------------------

    async def transitions(self, execution_id: str) -> list[Transition]:
        def run(conn: sqlite3.Connection) -> list[Transition]:
            rows = conn.execute(
                f"SELECT {TRANSITION_COLUMNS} FROM transitions WHERE execution_id = ? ORDER BY id",
                (execution_id,),
            ).fetchall()
            return [row_to_transition(r) for r in rows]

        return await self._read(run)

    async def checkpoints(self, execution_id: str) -> list[Checkpoint]:
        def run(conn: sqlite3.Connection) -> list[Checkpoint]:
            rows = conn.execute(
                f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE execution_id = ? ORDER BY seq",
                (execution_id,),
            ).fetchall()
            return [row_to_checkpoint(r) for r in rows]

        return await self._read(run)

    async def transcript(self, execution_id: str) -> list[TranscriptEntry]:
        def run(conn: sqlite3.Connection) -> list[TranscriptEntry]:
            rows = conn.execute(
                # a reply comes before the messages of the step that consumed it;
                # replies not yet applied come last
                # (what a person holding the conversation and the contact said to
                # each other: by time, after the step's bot messages)
                "SELECT CASE WHEN agent_id IS NULL THEN 'bot' ELSE 'agent' END, text,"
                " created_at, step_seq, CASE WHEN agent_id IS NULL THEN 1 ELSE 2 END,"
                " CASE WHEN agent_id IS NULL THEN 0 ELSE created_at END, id, content, agent_id"
                " FROM outbox WHERE execution_id = ?"
                " UNION ALL SELECT 'contact', text, received_at,"
                " COALESCE(applied_step, 9223372036854775807),"
                " CASE WHEN held_at IS NULL THEN 0 ELSE 2 END,"
                " CASE WHEN held_at IS NULL THEN 0 ELSE received_at END, id, content, NULL"
                f" FROM inbox WHERE execution_id = ? {TRANSCRIPT_ORDER}",
                (execution_id, execution_id),
            ).fetchall()
            return [row_to_transcript_entry(r) for r in rows]

        return await self._read(run)

    async def inbox_for(self, execution_id: str) -> list[InboundMessage]:
        def run(conn: sqlite3.Connection) -> list[InboundMessage]:
            rows = conn.execute(
                f"SELECT {INBOX_COLUMNS} FROM inbox WHERE execution_id = ? ORDER BY id",
                (execution_id,),
            ).fetchall()
            return [row_to_inbound(r) for r in rows]

        return await self._read(run)

    async def last_heard_at(self, execution_id: str) -> float | None:
        def run(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT MAX(t) FROM (SELECT received_at AS t FROM inbox WHERE execution_id = ?"
                " UNION ALL SELECT at FROM transitions WHERE execution_id = ?"
                " AND source = 'paused')",
                (execution_id, execution_id),
            ).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._read(run)

    async def last_inbound_at(self, institution_id: str, conversation_id: str) -> float | None:
        def run(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT MAX(received_at) FROM inbox WHERE institution_id = ?"
                " AND conversation_id = ?",
                (institution_id, conversation_id),
            ).fetchone()
            return None if row is None or row[0] is None else float(row[0])

        return await self._read(run)

    async def execution_ids(
        self, *, after: str | None = None, limit: int = 500, institution_id: str | None = None
    ) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            sql, params = "SELECT id FROM executions WHERE id > ?", [after or ""]
            if institution_id is not None:  # the column stays readable in a corrupted row
                sql += " AND institution_id = ?"
                params.append(institution_id)
            rows = conn.execute(sql + " ORDER BY id LIMIT ?", (*params, limit)).fetchall()
            return [str(r[0]) for r in rows]

        return await self._read(run)

    async def outbox_for(self, execution_id: str) -> list[OutboundMessage]:
        def run(conn: sqlite3.Connection) -> list[OutboundMessage]:
            rows = conn.execute(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE execution_id = ? ORDER BY id",
                (execution_id,),
            ).fetchall()
            return [row_to_outbound(r) for r in rows]

        return await self._read(run)

    async def logs(self, execution_id: str) -> list[LogRecord]:
        def run(conn: sqlite3.Connection) -> list[LogRecord]:
            rows = conn.execute(
                "SELECT execution_id, level, message, at, node_id, node_type, context"
                " FROM execution_logs WHERE execution_id = ? ORDER BY id",
                (execution_id,),
            ).fetchall()
            return [LogRecord(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6])) for r in rows]

        return await self._read(run)

    async def handoffs(self, execution_id: str) -> list[Handoff]:
        def run(conn: sqlite3.Connection) -> list[Handoff]:
            rows = conn.execute(
                "SELECT execution_id, institution_id, conversation_id, contact_id, queue,"
                " reason, at, mode"
                " FROM handoffs WHERE execution_id = ? ORDER BY id",
                (execution_id,),
            ).fetchall()
            return [Handoff(*r) for r in rows]

        return await self._read(run)

    # observability ---------------------------------------------------------------------

    async def step_outcomes(self, since: float) -> tuple[int, int]:
        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            total, errors = conn.execute(
                "SELECT COUNT(*), COUNT(error) FROM checkpoints WHERE started_at >= ?"
                " AND node_type IS NOT NULL",
                (since,),
            ).fetchone()
            return int(total), int(errors)

        return await self._read(run)

    async def longest_turn(self, since: float, now: float) -> LongestTurn | None:
        def run(conn: sqlite3.Connection) -> LongestTurn | None:
            found: list[LongestTurn] = []
            row = conn.execute(
                "SELECT duration, execution_id FROM turns WHERE ended_at >= ?"
                " ORDER BY duration DESC LIMIT 1",
                (since,),
            ).fetchone()
            if row is not None:
                found.append(LongestTurn(float(row[0]), row[1], running=False))
            row = conn.execute(
                "SELECT turn_started_at, id FROM executions WHERE turn_started_at IS NOT NULL"
                f" AND status NOT IN ({TERMINAL_SQL}, 'paused') ORDER BY turn_started_at LIMIT 1"
            ).fetchone()
            if row is not None:
                found.append(LongestTurn(max(0.0, now - float(row[0])), row[1], running=True))
            return max(found, key=lambda t: t.seconds, default=None)

        return await self._read(run)

    async def stats(
        self, since: float, *, institution_id: str | None = None, limit: int = 10
    ) -> StoreStats:
        def run(conn: sqlite3.Connection) -> StoreStats:
            join, where, params = "", "", list[Any]([since])
            if institution_id is not None:
                join = " JOIN executions e ON e.id = c.execution_id"
                # unary + : read the window's steps off checkpoints_started, not every
                # execution the tenant ever had
                where = " AND +e.institution_id = ?"
                params.append(institution_id)
            node_types = [
                NodeTypeStats(r[0], r[1], r[2], r[3])
                for r in conn.execute(
                    "SELECT c.node_type, COUNT(*), COUNT(c.error), AVG(c.duration)"
                    " FROM checkpoints c" + join + " WHERE c.started_at >= ?"
                    " AND c.node_type IS NOT NULL" + where + " GROUP BY c.node_type"
                    " ORDER BY COUNT(*) DESC",
                    params,
                )
            ]
            slowest = [
                SlowNode(r[0], r[1], r[2], r[3], r[4], r[5])
                for r in conn.execute(
                    "SELECT x.flow_id, c.node_id, c.node_type, COUNT(*), AVG(c.duration),"
                    " MAX(c.duration) FROM checkpoints c JOIN executions x"
                    " ON x.id = c.execution_id WHERE c.started_at >= ?"
                    " AND c.node_id IS NOT NULL"
                    + where.replace("e.", "x.")
                    + " GROUP BY x.flow_id, c.node_id ORDER BY AVG(c.duration) DESC LIMIT ?",
                    [*params, limit],
                )
            ]
            twhere, tparams = (
                ("", [since]) if institution_id is None else (" AND institution_id = ?", params)
            )
            durations: dict[str, list[float]] = {}
            for flow_id, duration in conn.execute(
                "SELECT flow_id, duration FROM turns WHERE ended_at >= ?" + twhere, tparams
            ):
                durations.setdefault(flow_id, []).append(float(duration))
            flows = [
                FlowTurnStats(
                    flow_id,
                    len(values),
                    sum(values) / len(values),
                    percentile(values, 0.95),
                    max(values),
                )
                for flow_id, values in sorted(durations.items())
            ]
            errors: dict[str, list[int]] = {}
            for inst, count in conn.execute(
                "SELECT e.institution_id, COUNT(*) FROM checkpoints c JOIN executions e"
                " ON e.id = c.execution_id WHERE c.started_at >= ? AND c.error IS NOT NULL"
                + where
                + " GROUP BY e.institution_id",
                params,
            ):
                errors.setdefault(inst, [0, 0])[0] = count
            ewhere = "" if institution_id is None else " AND institution_id = ?"
            for inst, count in conn.execute(
                "SELECT institution_id, COUNT(*) FROM executions WHERE ended_at >= ?"
                " AND status = 'failed'" + ewhere + " GROUP BY institution_id",
                params,
            ):
                errors.setdefault(inst, [0, 0])[1] = count
            institutions = sorted(
                (InstitutionErrors(k, v[0], v[1]) for k, v in errors.items()),
                key=lambda i: (-i.errors, -i.failed_executions, i.institution_id),
            )
            return StoreStats(since, node_types, flows, institutions, slowest)

        return await self._read(run)

    async def error_groups(
        self,
        since: float,
        *,
        institution_id: str | None = None,
        flow_id: str | None = None,
        limit: int = 50,
        inputs: int = 10,
    ) -> list[ErrorGroup]:
        where, params = _step_error_terms(
            StepErrorMatch(since=since), institution_id=institution_id, flow_id=flow_id
        )

        def run(conn: sqlite3.Connection) -> list[ErrorGroup]:
            groups = conn.execute(
                f"SELECT {STEP_ERROR_GROUP}, MAX(node_type), COUNT(*),"
                " COUNT(DISTINCT execution_id), MIN(at), MAX(at) FROM step_errors"
                f" WHERE {where} GROUP BY {STEP_ERROR_GROUP}"
                f" ORDER BY COUNT(*) DESC, MAX(at) DESC, {STEP_ERROR_GROUP} LIMIT ?",
                (*params, limit),
            ).fetchall()
            examples = conn.execute(_ERROR_EXAMPLES.format(where=where), (*params, inputs))
            return error_groups_from_rows(groups, examples.fetchall())

        return await self._read(run)

    async def failed_steps(
        self, execution_ids: Sequence[str], match: StepErrorMatch
    ) -> dict[str, FailedStep]:
        ids = list(dict.fromkeys(execution_ids))
        where, params = _step_error_terms(match, alias="s.")

        def run(conn: sqlite3.Connection) -> dict[str, FailedStep]:
            rows = conn.execute(
                "SELECT s.execution_id, s.seq, s.node_id, s.at, s.input, c.error"
                " FROM step_errors s JOIN checkpoints c"
                " ON c.execution_id = s.execution_id AND c.seq = s.seq"
                f" WHERE s.execution_id IN ({', '.join('?' * len(ids))}) AND {where}"
                " ORDER BY s.execution_id, s.seq DESC",
                (*ids, *params),
            ).fetchall()
            found: dict[str, FailedStep] = {}
            for row in rows:
                found.setdefault(row[0], row_to_failed_step(row))
            return found

        return await self._read(run) if ids else {}

    async def purge_logs(self, ended_before: float, *, limit: int = 10_000) -> int:
        def run(conn: sqlite3.Connection) -> int:
            # SQLite gives a new row max(id) + 1: were the newest line deleted, its id
            # would go to the next line, and a trail stream resuming after that id
            # (trail_since) would never see it. So the newest line, when its turn comes,
            # is blanked into a placeholder of no execution (TRAIL_MARK) that keeps the
            # ids climbing; trail_since skips it, and a later purge drops it once newer
            # lines exist.
            top = conn.execute("SELECT MAX(id) FROM execution_logs").fetchone()[0]
            if top is None:
                return 0
            conn.execute(
                "DELETE FROM execution_logs WHERE execution_id = ? AND id < ?", (TRAIL_MARK, top)
            )
            purged = conn.execute(
                "DELETE FROM execution_logs WHERE id IN (SELECT l.id FROM executions e"
                " JOIN execution_logs l ON l.execution_id = e.id"
                " WHERE e.ended_at < ? AND l.id < ? LIMIT ?)",
                (ended_before, top, limit),
            ).rowcount
            if purged < limit:
                purged += conn.execute(
                    "UPDATE execution_logs SET execution_id = ?, level = 'DEBUG',"
                    " message = 'trail.purged', node_id = NULL, node_type = NULL, context = '{}'"
                    " WHERE id = ? AND execution_id IN"
                    " (SELECT id FROM executions WHERE ended_at < ?)",
                    (TRAIL_MARK, top, ended_before),
                ).rowcount
            return int(purged)

        return await self._write(run)

    # erasure and retention (trilha.store.erasure) ----------------------------------------

    async def forget_contact(
        self, institution_id: str, contact_id: str, *, record: ErasureRecord
    ) -> Erased:
        return await self._erase(
            lambda conn: erasure_sqlite.forget(
                conn, institution_id, contact_id=contact_id, record=record
            )
        )

    async def forget_executions(
        self, institution_id: str, execution_ids: Sequence[str], *, record: ErasureRecord
    ) -> Erased:
        return await self._erase(
            lambda conn: erasure_sqlite.forget(
                conn, institution_id, contact_id=None, execution_ids=execution_ids, record=record
            )
        )

    async def _erase(self, fn: Callable[[sqlite3.Connection], Erased]) -> Erased:
        """One erasure transaction with ``secure_delete`` on (the bytes of every row it
        deletes or rewrites are zeroed, freed pages too), then a WAL checkpoint that
        empties the WAL, where older copies of the pages would still be."""

        def run(conn: sqlite3.Connection) -> Erased:
            with _mapped_errors():
                before = int(conn.execute("PRAGMA secure_delete").fetchone()[0])
                conn.execute("PRAGMA secure_delete = ON")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = fn(conn)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                finally:
                    conn.execute(f"PRAGMA secure_delete = {_SECURE_DELETE[before]}")
                _truncate_wal(conn)
                return result

        return await self._call(run)

    async def expired_executions(
        self,
        ended_before: float,
        *,
        institution_id: str | None = None,
        exclude: Sequence[str] = (),
        limit: int = 500,
    ) -> list[tuple[str, str]]:
        def run(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            return erasure_sqlite.expired(
                conn, ended_before, institution_id=institution_id, exclude=exclude, limit=limit
            )

        return await self._read(run)

    async def erasures(self, institution_id: str, *, limit: int = 100) -> list[ErasureRecord]:
        def run(conn: sqlite3.Connection) -> list[ErasureRecord]:
            return erasure_sqlite.listed(conn, institution_id, limit)

        return await self._read(run)

    async def save_alert(self, state: AlertState, *, expected: AlertState | None) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            values = (
                state.status.value,
                state.severity,
                state.value,
                state.threshold,
                state.summary,
                state.active_at,
                state.fired_at,
                state.resolved_at,
                state.updated_at,
            )
            if expected is None:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO alerts (state, severity, value, threshold, summary,"
                    " active_at, fired_at, resolved_at, updated_at, rule, instance)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (*values, state.rule, state.instance),
                )
            else:
                cur = conn.execute(
                    "UPDATE alerts SET state = ?, severity = ?, value = ?, threshold = ?,"
                    " summary = ?, active_at = ?, fired_at = ?, resolved_at = ?, updated_at = ?"
                    " WHERE rule = ? AND instance = ? AND state = ? AND updated_at = ?",
                    (
                        *values,
                        state.rule,
                        state.instance,
                        expected.status.value,
                        expected.updated_at,
                    ),
                )
            if cur.rowcount != 1:
                return False
            if expected is None or expected.status is not state.status:
                conn.execute(
                    "INSERT INTO alert_history (rule, instance, state, value, summary, at)"
                    " VALUES (?,?,?,?,?,?)",
                    (
                        state.rule,
                        state.instance,
                        state.status.value,
                        state.value,
                        state.summary,
                        state.updated_at,
                    ),
                )
            return True

        return await self._write(run)

    async def alerts(self) -> list[AlertState]:
        def run(conn: sqlite3.Connection) -> list[AlertState]:
            rows = conn.execute(
                "SELECT rule, instance, state, severity, value, threshold, summary, active_at,"
                " fired_at, resolved_at, updated_at FROM alerts ORDER BY rule, instance"
            ).fetchall()
            return [row_to_alert(r) for r in rows]

        return await self._read(run)

    async def alert_history(self, *, limit: int = 50) -> list[AlertState]:
        def run(conn: sqlite3.Connection) -> list[AlertState]:
            rows = conn.execute(
                "SELECT h.rule, h.instance, h.state, a.severity, h.value, a.threshold,"
                " h.summary, NULL, NULL, NULL, h.at FROM alert_history h"
                " LEFT JOIN alerts a ON a.rule = h.rule AND a.instance = h.instance"
                " ORDER BY h.id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [row_to_alert(r) for r in rows]

        return await self._read(run)

    # the API -----------------------------------------------------------------------------

    async def list_executions(
        self,
        *,
        limit: int = 100,
        where: ExecutionFilter | None = None,
        before: tuple[float, str] | None = None,
    ) -> list[Execution]:
        source, conditions, values = _execution_filter(where)

        def run(conn: sqlite3.Connection) -> list[Execution]:
            found: list[Execution] = []
            cursor: tuple[Any, Any] | None = before
            # a corrupted row is left out, not allowed to hide the others or to cut a
            # page short (a short page reads as the last one): fetch on past it
            while len(found) < limit:
                want = limit - len(found)
                terms, params = list(conditions), list(values)
                if cursor is not None:
                    terms.append("(created_at, id) < (?, ?)")
                    params.extend(cursor)
                sql = f"SELECT {EXEC_COLUMNS} FROM {source}"
                if terms:
                    sql += " WHERE " + " AND ".join(terms)
                rows = conn.execute(
                    sql + " ORDER BY created_at DESC, id DESC LIMIT ?", (*params, want)
                ).fetchall()
                found.extend(ex for r in rows if (ex := readable(r)) is not None)
                if len(rows) < want:
                    break
                last = Row(rows[-1])
                cursor = (last["created_at"], last["id"])
            return found

        return await self._read(run)

    async def count_executions(
        self,
        *,
        where: ExecutionFilter | None = None,
        before: tuple[float, str] | None = None,
        limit: int,
    ) -> int:
        source, terms, params = _execution_filter(where)
        if before is not None:
            terms, params = [*terms, "(created_at, id) < (?, ?)"], [*params, *before]
        sql = f"SELECT 1 FROM {source}" + (" WHERE " + " AND ".join(terms) if terms else "")

        def run(conn: sqlite3.Connection) -> int:
            (found,) = conn.execute(
                f"SELECT count(*) FROM ({sql} LIMIT ?)", (*params, limit)
            ).fetchone()
            return int(found)

        return await self._read(run)

    # bulk actions --------------------------------------------------------------------------

    async def create_bulk_job(self, job: BulkJob, *, max_running: int) -> BulkJob:
        def run(conn: sqlite3.Connection) -> BulkJob:
            return bulk_sqlite.create(conn, job, max_running)

        return await self._write(run)

    async def get_bulk_job(self, job_id: str) -> BulkJob | None:
        def run(conn: sqlite3.Connection) -> BulkJob | None:
            return bulk_sqlite.get(conn, job_id)

        return await self._read(run)

    async def claim_bulk_job(
        self, owner: str, *, now: float, lease_seconds: float, job_id: str | None = None
    ) -> BulkJob | None:
        def run(conn: sqlite3.Connection) -> BulkJob | None:
            return bulk_sqlite.claim(
                conn, owner, now=now, lease_seconds=lease_seconds, job_id=job_id
            )

        return await self._write(run)

    async def save_bulk_progress(
        self, job: BulkJob, *, owner: str, now: float, lease_until: float
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return bulk_sqlite.save(conn, job, owner=owner, now=now, lease_until=lease_until)

        return await self._write(run)

    async def bulk_jobs(
        self, *, institution_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[BulkJob]:
        def run(conn: sqlite3.Connection) -> list[BulkJob]:
            return bulk_sqlite.listed(conn, institution_id, status, limit)

        return await self._read(run)

    async def flow_versions(self, flow_id: str) -> list[StoredFlow]:
        def run(conn: sqlite3.Connection) -> list[StoredFlow]:
            rows = conn.execute(
                "SELECT flow_id, version, definition, created_at FROM flows"
                " WHERE flow_id = ? ORDER BY version",
                (flow_id,),
            ).fetchall()
            return [StoredFlow(r[0], r[1], orjson.loads(r[2]), r[3]) for r in rows]

        return await self._read(run)

    # channel webhooks ----------------------------------------------------------------------

    async def receive_channel_webhook(
        self, channel: str, body: bytes, *, now: float, keys: Sequence[str] = ()
    ) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return webhooks_sqlite.receive(conn, channel, body, now, keys)

        return await self._write(run)

    async def claim_channel_webhooks(
        self, channel: str, owner: str, *, now: float, lease_seconds: float, limit: int
    ) -> list[ChannelWebhook]:
        def run(conn: sqlite3.Connection) -> list[ChannelWebhook]:
            return webhooks_sqlite.claim(
                conn, channel, owner, now=now, lease_seconds=lease_seconds, limit=limit
            )

        return await self._write(run)

    async def release_channel_webhooks(self, webhook_ids: Sequence[int], *, owner: str) -> int:
        if not webhook_ids:
            return 0

        def run(conn: sqlite3.Connection) -> int:
            return webhooks_sqlite.release(conn, webhook_ids, owner)

        return await self._write(run)

    async def settle_channel_webhook(
        self,
        webhook_id: int,
        *,
        owner: str,
        now: float,
        status: Literal["done", "failed", "pending"],
        error: str | None = None,
        retry_at: float | None = None,
        progress: int = 0,
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return webhooks_sqlite.settle(
                conn,
                webhook_id,
                owner=owner,
                now=now,
                status=status,
                error=error,
                retry_at=retry_at,
                progress=progress,
            )

        return await self._write(run)

    async def channel_webhooks(
        self, channel: str, *, limit: int = 100, status: str | None = None
    ) -> list[ChannelWebhook]:
        def run(conn: sqlite3.Connection) -> list[ChannelWebhook]:
            return webhooks_sqlite.listed(conn, channel, limit=limit, status=status)

        return await self._read(run)

    async def purge_channel_webhooks(self, before: float, *, limit: int = 10_000) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return webhooks_sqlite.purge(conn, before, limit)

        return await self._write(run)

    # triggers ----------------------------------------------------------------------------

    async def put_triggers(
        self, institution_id: str, triggers: list[dict[str, Any]], *, now: float, actor: str
    ) -> StoredTriggers:
        def run(conn: sqlite3.Connection) -> StoredTriggers:
            conn.execute(
                "INSERT INTO triggers (institution_id, triggers, updated_at, updated_by)"
                " VALUES (?,?,?,?) ON CONFLICT (institution_id) DO UPDATE SET"
                " triggers = excluded.triggers, updated_at = excluded.updated_at,"
                " updated_by = excluded.updated_by",
                (institution_id, dumps(triggers), now, actor),
            )
            return StoredTriggers(institution_id, triggers, now, actor)

        return await self._write(run)

    async def get_triggers(self, institution_id: str) -> StoredTriggers | None:
        def run(conn: sqlite3.Connection) -> StoredTriggers | None:
            row = conn.execute(
                "SELECT triggers, updated_at, updated_by FROM triggers WHERE institution_id = ?",
                (institution_id,),
            ).fetchone()
            if row is None:
                return None
            return StoredTriggers(institution_id, orjson.loads(row[0]), row[1], row[2])

        return await self._read(run)

    async def delete_triggers(self, institution_id: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM triggers WHERE institution_id = ?", (institution_id,))
            return cur.rowcount > 0

        return await self._write(run)

    async def create_api_key(self, key: ApiKey) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO api_keys (key_id, institution_id, role, secret_hash, name,"
                " created_at, revoked_at) VALUES (?,?,?,?,?,?,?)",
                (
                    key.key_id,
                    key.institution_id,
                    key.role,
                    key.secret_hash,
                    key.name,
                    key.created_at,
                    key.revoked_at,
                ),
            )

        await self._write(run)

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        def run(conn: sqlite3.Connection) -> ApiKey | None:
            row = conn.execute(
                f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,)
            ).fetchone()
            return None if row is None else row_to_api_key(row)

        return await self._read(run)

    async def list_api_keys(self) -> list[ApiKey]:
        def run(conn: sqlite3.Connection) -> list[ApiKey]:
            rows = conn.execute(
                f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id"
            ).fetchall()
            return [row_to_api_key(r) for r in rows]

        return await self._read(run)

    async def revoke_api_key(self, key_id: str, *, now: float) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (now, key_id),
            )
            return cur.rowcount == 1

        return await self._write(run)

    async def remembered_response(self, scope: str, key: str) -> StoredResponse | None:
        def run(conn: sqlite3.Connection) -> StoredResponse | None:
            return _stored_response(conn, scope, key)

        return await self._read(run)

    async def remember_response(
        self, scope: str, key: str, response: StoredResponse
    ) -> StoredResponse:
        def run(conn: sqlite3.Connection) -> StoredResponse:
            # the first writer wins: a concurrent retry (another process too: the write
            # lock serialises us) reads back the response that was kept
            conn.execute(
                "INSERT OR IGNORE INTO idempotency"
                " (scope, key, request_hash, status, body, created_at) VALUES (?,?,?,?,?,?)",
                (
                    scope,
                    key,
                    response.request_hash,
                    response.status,
                    json_or_none(response.body),
                    response.created_at,
                ),
            )
            kept = _stored_response(conn, scope, key)
            if kept is None:  # pragma: no cover - the row was written or was there
                raise StoreError(f"idempotency record {scope}/{key} vanished")
            return kept

        return await self._write(run)

    async def purge_responses(self, before: float) -> int:
        def run(conn: sqlite3.Connection) -> int:
            cur = conn.execute("DELETE FROM idempotency WHERE created_at < ?", (before,))
            return int(cur.rowcount)

        return await self._write(run)

    async def trail_since(
        self,
        after_id: int,
        *,
        limit: int = 500,
        execution_id: str | None = None,
        institution_id: str | None = None,
    ) -> list[TrailEvent]:
        def run(conn: sqlite3.Connection) -> list[TrailEvent]:
            # the log table leads: its id range, or the (execution_id, id) index for one
            # execution, read in order and stopped at `limit`; the execution row is a
            # primary-key probe per line, and a line whose execution is gone or unreadable
            # still goes out (LEFT JOIN) so that a stream never stalls on it
            sql = (
                "SELECT l.id, l.execution_id, l.level, l.message, l.at, l.node_id,"
                " l.node_type, l.context, e.institution_id, e.flow_id, e.status"
                " FROM execution_logs l LEFT JOIN executions e ON e.id = l.execution_id"
                " WHERE l.id > ? AND l.execution_id <> ?"
            )
            params: list[Any] = [after_id, TRAIL_MARK]
            if execution_id is not None:
                sql += " AND l.execution_id = ?"
                params.append(execution_id)
            if institution_id is not None:
                # unary + : never drive the scan from the executions' tenant index
                sql += " AND +e.institution_id = ?"
                params.append(institution_id)
            rows = conn.execute(sql + " ORDER BY l.id LIMIT ?", (*params, limit)).fetchall()
            return [row_to_trail_event(r) for r in rows]

        return await self._read(run)

    async def last_trail_id(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT MAX(id) FROM execution_logs").fetchone()
            return int(row[0] or 0)

        return await self._read(run)


class _Job:
    __slots__ = ("fn", "future", "group", "lifecycle")

    def __init__(
        self, fn: Callable[[sqlite3.Connection], Any], group: str | None, lifecycle: bool = False
    ) -> None:
        self.fn = fn
        self.group = group
        #: opening and closing run without a connection; every other job needs one
        self.lifecycle = lifecycle
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run(self, conn: sqlite3.Connection | None) -> None:
        try:
            if conn is None and not self.lifecycle:
                raise StoreUnavailable("store is closed")
            value = self.fn(conn)  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the awaiting caller, never lost
            _fail(self.future, _map(exc))
        else:
            _resolve(self.future, value)


def _resolve(future: concurrent.futures.Future[Any], value: Any) -> None:
    """Answer a caller; one that was cancelled meanwhile (it stopped waiting) is left
    alone: raising here would kill the writer thread and hang every later call."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_result(value)


def _fail(future: concurrent.futures.Future[Any], error: BaseException) -> None:
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        future.set_exception(error)


def _map(exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        try:
            with _mapped_errors():
                raise exc
        except StoreError as mapped:
            return mapped
    return exc


def _split_sql(script: str) -> list[str]:
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


#: when an execution's lease can be claimed (two parameters, both "now"): none, expired,
#: or held by an owner that stopped its heartbeat
_LEASE_FREE = (
    "(lease_expires_at IS NULL OR lease_expires_at < ?"
    " OR lease_owner IN (SELECT worker_id FROM workers WHERE alive_until < ?))"
)
_INSERT_EXECUTION = (
    f"INSERT INTO executions ({', '.join(EXEC_FIELDS)})"
    f" VALUES ({', '.join('?' * len(EXEC_FIELDS))})"
)
_UPDATE_EXECUTION = (
    "UPDATE executions SET "
    + ", ".join(f"{f} = ?" for f in COMMIT_FIELDS)
    + ", lease_owner = ?, lease_expires_at = ?"
    + " WHERE id = ? AND fencing_token = ? AND lease_owner = ?"
)
_INSERT_STEP_ERROR = (
    f"INSERT INTO step_errors ({STEP_ERROR_COLUMNS})"
    f" VALUES ({', '.join('?' * len(STEP_ERROR_COLUMNS.split(',')))})"
)
#: the newest failure of each distinct input per error group, newest first, the first
#: ``?`` of each group (the group's newest failure is its first row: its example)
_ERROR_EXAMPLES = (
    f"SELECT {STEP_ERROR_GROUP}, input, execution_id, type, message FROM ("
    f" SELECT *, ROW_NUMBER() OVER (PARTITION BY {STEP_ERROR_GROUP}"
    "  ORDER BY at DESC, execution_id DESC, seq DESC) AS n FROM ("
    f"  SELECT {STEP_ERROR_GROUP}, input, execution_id, type, message, at, seq,"
    f"  ROW_NUMBER() OVER (PARTITION BY {STEP_ERROR_GROUP}, input"
    "   ORDER BY at DESC, execution_id DESC, seq DESC) AS per_input"
    "  FROM step_errors WHERE {where}) WHERE per_input = 1)"
    " WHERE n <= ? ORDER BY n"
)
_UPDATE_EXECUTION_BY_ID = (
    "UPDATE executions SET "
    + ", ".join(f"{f} = ?" for f in EXEC_FIELDS[1:])
    + ", lease_owner = ?, lease_expires_at = ? WHERE id = ?"
)


def _has_pending_reply(conn: sqlite3.Connection, execution_id: str) -> bool:
    """Whether a reply waits to be applied (a waiting execution must then wake now)."""
    return (
        conn.execute(
            "SELECT 1 FROM inbox WHERE execution_id = ? AND applied_at IS NULL LIMIT 1",
            (execution_id,),
        ).fetchone()
        is not None
    )


def _has_pending_input(conn: sqlite3.Connection, ex: Execution) -> bool:
    """Whether what a waiting execution waits for has arrived: a reply, or for a
    ``wait_event`` node a signal of its event (the replies then wait for a question)."""
    event = waited_event(ex.waiting_for)
    if event is None:
        return _has_pending_reply(conn, ex.id)
    return _pending_signal(conn, ex.id, event, ()) is not None


def _pending_signal(
    conn: sqlite3.Connection, execution_id: str, event: str, skip: Sequence[int]
) -> Signal | None:
    """The oldest signal of ``event`` not consumed (nor in ``skip``)."""
    leave_out = f" AND id NOT IN ({', '.join('?' * len(skip))})" if skip else ""
    row = conn.execute(
        f"SELECT {SIGNAL_COLUMNS} FROM signals WHERE execution_id = ? AND event = ?"
        f" AND consumed_at IS NULL{leave_out} ORDER BY id LIMIT 1",
        (execution_id, event, *skip),
    ).fetchone()
    return None if row is None else row_to_signal(row)


def _pending_inbound(conn: sqlite3.Connection, execution_id: str) -> InboundMessage | None:
    """The oldest reply not yet applied: replies are applied one at a time, in order."""
    msg = conn.execute(
        f"SELECT {INBOX_COLUMNS} FROM inbox WHERE execution_id = ?"
        " AND applied_at IS NULL ORDER BY id LIMIT 1",
        (execution_id,),
    ).fetchone()
    return None if msg is None else row_to_inbound(msg)


def _insert_transitions(conn: sqlite3.Connection, transitions: list[Transition]) -> None:
    """Reasons are log text (an error quoting a URL with a CPF): masked on the way in."""
    if transitions:
        conn.executemany(
            "INSERT INTO transitions (execution_id, source, target, reason, actor, node_id, at)"
            " VALUES (?,?,?,?,?,?,?)",
            [
                (
                    t.execution_id,
                    t.source.value if t.source else None,
                    t.target.value,
                    mask_text(t.reason),
                    t.actor,
                    t.node_id,
                    t.at,
                )
                for t in transitions
            ],
        )


def _insert_turns(conn: sqlite3.Connection, turns: list[TurnRecord]) -> None:
    if turns:
        conn.executemany(
            "INSERT INTO turns (execution_id, institution_id, flow_id, flow_version, started_at,"
            " ended_at, duration, status) VALUES (?,?,?,?,?,?,?,?)",
            [
                (
                    t.execution_id,
                    t.institution_id,
                    t.flow_id,
                    t.flow_version,
                    t.started_at,
                    t.ended_at,
                    t.duration,
                    t.status,
                )
                for t in turns
            ],
        )


def _insert_logs(conn: sqlite3.Connection, logs: list[LogRecord]) -> None:
    """Every trail line goes through here, whoever wrote it (engine, operator, sweeper,
    the store itself), so personal data and secrets are masked in one place."""
    if logs:
        logs = [masked_record(r) for r in logs]
        conn.executemany(
            "INSERT INTO execution_logs"
            " (execution_id, at, level, message, node_id, node_type, context)"
            " VALUES (?,?,?,?,?,?,?)",
            [
                (r.execution_id, r.at, r.level, r.message, r.node_id, r.node_type, dumps(r.context))
                for r in logs
            ],
        )


def _cancel_row(
    conn: sqlite3.Connection,
    execution_id: str,
    source: ExecutionStatus | None,
    now: float,
    reason: str,
) -> None:
    """Cancel an execution, bumping the fencing token so a worker that holds it cannot
    commit afterwards. A row that cannot be read is cancelled by SQL alone."""
    row = conn.execute(
        f"SELECT {EXEC_COLUMNS} FROM executions WHERE id = ?", (execution_id,)
    ).fetchone()
    try:
        ex: Execution | None = row_to_execution(row)
    except CorruptedRecord:
        ex = None
    if ex is not None:
        ex.status, ex.outcome = ExecutionStatus.CANCELLED, Outcome.CANCELLED
        ex.wake_at = ex.due_at = ex.waiting_for = None
        ex.ended_at = ex.updated_at = now
        ex.fencing_token += 1
        conn.execute(_UPDATE_EXECUTION_BY_ID, (*execution_params(ex)[1:], None, None, execution_id))
    else:
        conn.execute(
            "UPDATE executions SET status = 'cancelled', outcome = 'cancelled', wake_at = NULL,"
            " waiting_for = NULL, due_at = NULL, ended_at = ?, updated_at = ?,"
            " fencing_token = fencing_token + 1, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id = ?",
            (now, now, execution_id),
        )
    _insert_transitions(
        conn, [Transition(execution_id, source, ExecutionStatus.CANCELLED, reason, now, "engine")]
    )
    # the trail says it too, as for any other end (a replaced execution's story ends)
    node = ex.current_node_id if ex is not None else None
    _insert_logs(conn, replaced_lines(execution_id, source, node, reason, now))


def _quarantine(
    conn: sqlite3.Connection, execution_id: str, kind: str, reason: str, row: Any, now: float
) -> None:
    """Keep a copy of a record that cannot be read, for diagnosis; never deleted."""
    conn.execute(
        "INSERT INTO quarantine (execution_id, kind, reason, payload, at) VALUES (?,?,?,?,?)",
        (
            execution_id,
            kind,
            reason,
            dumps([str(v) for v in row]) if row is not None else None,
            now,
        ),
    )
    _insert_logs(
        conn,
        [
            LogRecord(
                execution_id,
                "ERROR",
                f"{kind}.corrupted",
                now,
                context={"error": {"message": reason}},
            )
        ],
    )


# the API -------------------------------------------------------------------------------


def _step_error_terms(
    match: StepErrorMatch,
    *,
    institution_id: str | None = None,
    flow_id: str | None = None,
    alias: str = "",
) -> tuple[str, list[Any]]:
    """The AND-ed SQL terms over step_errors (columns prefixed with ``alias``) that
    admit the failed steps ``match`` admits, of ``institution_id`` and ``flow_id`` when
    given, with their parameters; ``1 = 1`` when nothing narrows."""
    terms: list[str] = []
    params: list[Any] = []
    for column, value in match.equalities(institution_id=institution_id, flow_id=flow_id):
        terms.append(f"{alias}{column} = ?")
        params.append(value)
    if match.since is not None:
        terms.append(f"{alias}at >= ?")
        params.append(match.since)
    return " AND ".join(terms) or "1 = 1", params


def _execution_filter(where: ExecutionFilter | None) -> tuple[str, list[str], list[Any]]:
    """What a listing reads from, and the SQL terms (AND-ed) with their parameters
    (the parameters of what it reads from first: it comes first in the query).

    SQLite has no statistics to tell a conversation (a handful of rows) from a tenant
    (millions), so the listing names the filter that leads: the most selective one
    given, read newest first off its (column, created_at) index; the other filters are
    written with a unary ``+`` and checked row by row. Failed steps are few next to
    executions: when they filter, they lead (the executions they name are read by id
    and sorted), unless a conversation or a contact does; an outcome leads with the
    tenant, off their (institution_id, outcome, created_at) index."""
    terms: list[str] = []
    params: list[Any] = []
    if where is None:
        return "executions", terms, params
    source = "executions"
    filters = {
        "conversation_id": where.conversation_id,
        "contact_id": where.contact_id,
        "institution_id": where.institution_id,
        "flow_id": where.flow_id,
        "status": where.status,
        "outcome": where.outcome,
    }
    # few executions are active at once; an ended status is most of the table
    active = where.status is not None and stored_status(where.status) not in TERMINAL
    first = next(
        (
            c
            for c in ("conversation_id", "contact_id", "status" if active else "")
            if filters.get(c) is not None
        ),
        None,
    )
    leads: set[str | None]
    failed = where.failed_step
    if first is not None:
        leads = {first}
    elif failed is not None:
        leads = set()
        found, params = _step_error_terms(failed, institution_id=where.institution_id)
        # CROSS JOIN: SQLite reads the failed steps first, then each execution by id
        source = (
            f"(SELECT DISTINCT execution_id AS failed_id FROM step_errors WHERE {found})"
            " CROSS JOIN executions ON executions.id = failed_id"
        )
    elif where.outcome is not None:
        leads = {"outcome", "institution_id"}
    else:
        order = ["institution_id", "flow_id", "status"]
        leads = {next((c for c in order if filters.get(c) is not None), None)}
    for column, value in filters.items():
        if value is not None:
            terms.append(f"{column} = ?" if column in leads else f"+{column} = ?")
            params.append(value)
    if failed is not None and source == "executions":
        found, found_params = _step_error_terms(failed, alias="s.")
        terms.append(
            f"EXISTS (SELECT 1 FROM step_errors s WHERE s.execution_id = executions.id AND {found})"
        )
        params += found_params
    if where.with_errors:
        terms.append(
            "(error IS NOT NULL OR EXISTS (SELECT 1 FROM checkpoints c"
            " WHERE c.execution_id = executions.id AND c.error IS NOT NULL))"
        )
    if where.stuck_before is not None:
        # find_stuck's rule with one cutoff instead of (now, grace): active, not paused,
        # not leased since before the cutoff, and no wake time or one (or a due time)
        # before the cutoff
        terms += [
            ACTIVE_SQL,
            "status <> 'paused'",
            "(lease_expires_at IS NULL OR lease_expires_at < ?)",
            "(wake_at IS NULL OR wake_at < ? OR due_at < ?)",
        ]
        params += [where.stuck_before] * 3
        if source == "executions":
            # the active executions are few next to the ended ones: sort the stuck among
            # them rather than walk a whole index newest first
            source = "executions INDEXED BY executions_active"
    return source, terms, params


def _stored_response(conn: sqlite3.Connection, scope: str, key: str) -> StoredResponse | None:
    row = conn.execute(
        "SELECT request_hash, status, body, created_at FROM idempotency"
        " WHERE scope = ? AND key = ?",
        (scope, key),
    ).fetchone()
    if row is None:
        return None
    return StoredResponse(row[0], int(row[1]), lenient_json(row[2]), row[3])
