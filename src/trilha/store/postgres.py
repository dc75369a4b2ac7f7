"""The PostgreSQL backend: any number of processes, on any number of machines.

PostgreSQL is the one coordination point; there is no clustering of our own.

* **Work distribution.** Workers claim due executions in batches with
  ``FOR UPDATE SKIP LOCKED``: concurrent claims pass each other instead of
  queueing on the same rows, and a claim bumps the execution's fencing token, so
  a commit under an older token is refused (:class:`~trilha.errors.StaleLease`).
  A lease holds until it expires or its owner stops its heartbeat (the
  ``workers`` table): a killed worker's executions are taken over within the
  heartbeat's grace.
* **Wake-ups.** A reply stored, an execution started or resumed sends
  ``NOTIFY trilha_wake`` in its transaction; every worker LISTENs on its own
  connection (reconnecting by itself) and claims at once instead of at its next
  poll. Polling stays underneath, so a lost notification only costs a poll.
* **The trail in order.** Trail ids come from a sequence, and concurrent
  transactions commit them out of order: id 11 may be visible while 10 is still
  being written. A reader never hands out a line while a smaller id may still
  appear (live streams resume after the last id they sent): it reads the newest
  id, then which transactions are running (``pg_stat_activity.backend_xid``),
  waits until those have ended, and only then reads up to that id. A
  transaction has its xid before it takes a trail id, since every log insert
  follows a write of its own transaction.
* **Outages.** Connection failures, a server shutting down or restarting, and
  resource exhaustion are :class:`~trilha.errors.StoreUnavailable`; the pool
  reconnects on the next call, and the worker loop backs off until it answers.
  A commit whose answer was lost is never applied twice: a step commits only
  under its fencing token and step number, so the retry after the outage runs
  from what is stored.
* **Schema.** ``open`` refuses an unmigrated or newer schema
  (:class:`~trilha.errors.SchemaMismatch`); ``trilha migrate`` applies the
  migrations under an advisory lock, so concurrent runs apply each once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
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
    ConfigError,
    ConversationBusy,
    CorruptedRecord,
    ExecutionEnded,
    ExecutionNotFound,
    StaleLease,
    StoreError,
    StoreUnavailable,
    TrilhaError,
)
from trilha.observability.logging import get_logger
from trilha.observability.masking import mask_text, masked_record
from trilha.store import (
    bulk_postgres,
    erasure_postgres,
    holds_postgres,
    migrations,
    webhooks_postgres,
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

log = get_logger("trilha.store.postgres")

T = TypeVar("T")
if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    #: a pooled connection, what every query here runs on
    Connection: TypeAlias = PoolConnectionProxy[asyncpg.Record]

#: the channel workers LISTEN on for work made due by another process
WAKE_CHANNEL = "trilha_wake"
#: advisory lock keys (one namespace, ours): migrations, outbox claims
_MIGRATION_LOCK = 0x7472_696C_6861_0001
_OUTBOX_LOCK = 0x7472_696C_6861_0002
#: a transaction aborted by a deadlock or a serialisation failure is run again
_ATTEMPTS = 4
#: how long a trail reader waits for the transactions in flight to end before it
#: reads anyway (a write transaction held open this long is a fault of its own)
_TRAIL_WAIT_SECONDS = 5.0
#: every pooled session's settings. trilha never leaves a transaction idle: one that is
#: (its process frozen or cut off mid-transaction) is ended by the server, so its row
#: locks stop blocking deliveries and its xid stops holding the trail's readers back
_SESSION_SETTINGS = {
    "application_name": "trilha",
    "idle_in_transaction_session_timeout": "10s",
}
#: URL query parameters that are ours, not libpq's
_OPTIONS = {"pool_min", "pool_max", "command_timeout"}

#: failures that mean "the store is not there now": retry later, nothing is wrong
#: with the request itself
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    # a connection the server dropped mid-operation can be left in a state the driver
    # refuses to continue from ("cannot switch to state ..."): it is ended, not reused
    asyncpg.exceptions.InternalClientError,
)


#: what leaves a pooled connection in a state not to be trusted again
_CUT: tuple[type[BaseException], ...] = (asyncio.CancelledError, *_UNAVAILABLE)


def _mapped(exc: BaseException) -> BaseException:
    """The trilha error for a driver error (others pass through unchanged)."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        if exc.constraint_name == "executions_one_active":
            return ConversationBusy("the conversation already has an active execution")
        return StoreError(f"integrity error: {exc}")
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return StoreError(f"integrity error: {exc}")
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailable(f"postgresql: {type(exc).__name__}: {exc}")
    if isinstance(exc, asyncpg.PostgresError):
        return StoreError(f"postgresql: {exc}")
    return exc


def _unavailable(exc: Exception, doing: str) -> BaseException:
    """A driver error met while connecting, as a trilha error saying what was tried."""
    mapped = _mapped(exc)
    if mapped is exc:
        return exc
    return type(mapped)(f"{doing}: {mapped}")


def _count(status: str) -> int:
    """Rows touched, from a command status (``UPDATE 3``, ``INSERT 0 1``)."""
    return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0


def _numbered(names: Sequence[str], start: int = 1) -> str:
    """``a = $1, b = $2``: the SET list of an UPDATE."""
    return ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start))


def _qualified(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


class _Params:
    """Numbered placeholders for a query assembled from optional terms."""

    def __init__(self, *values: Any) -> None:
        self.values: list[Any] = list(values)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def parse_url(url: str) -> tuple[str, dict[str, float]]:
    """The DSN for the driver and our own options (``pool_min``, ``pool_max``,
    ``command_timeout``) taken out of its query string."""
    parts = urlsplit(url)
    if not url.startswith(f"{parts.scheme}://"):
        raise ConfigError(
            f"--store: a {parts.scheme} URL must look like"
            " postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
        )
    ours: dict[str, float] = {}
    theirs = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _OPTIONS:
            theirs.append((key, value))
            continue
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if number <= 0 or (key != "command_timeout" and not number.is_integer()):
            kind = "a positive number" if key == "command_timeout" else "a positive integer"
            raise ConfigError(f"--store: {key} must be {kind}, not {value!r}")
        ours[key] = number
    if ours.get("pool_min", 1) > ours.get("pool_max", 10):
        raise ConfigError("--store: pool_min must not exceed pool_max")
    return urlunsplit(parts._replace(query=urlencode(theirs))), ours


class PostgresStore:
    """:class:`~trilha.store.base.Store` over a PostgreSQL database (asyncpg, pooled)."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_min: int = 1,
        pool_max: int = 10,
        command_timeout: float = 30.0,
        auto_migrate: bool = False,
    ) -> None:
        self.dsn = dsn
        self.pool_min = pool_min
        self.pool_max = pool_max
        self.command_timeout = command_timeout
        #: migrate at open (tests, one-off tools); servers and workers leave it to
        #: ``trilha migrate`` and refuse a schema that is not current
        self.auto_migrate = auto_migrate
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._wake_callbacks: list[Callable[[], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def where(self) -> str:
        """The DSN without its password, to name the store in messages."""
        parts = urlsplit(self.dsn)
        host = parts.hostname or ""
        netloc = (f"{parts.username}@" if parts.username else "") + host
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"

    # lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._closing = False
        try:
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.pool_min,
                max_size=self.pool_max,
                command_timeout=self.command_timeout,
                server_settings=_SESSION_SETTINGS,
            )
        except Exception as exc:
            raise _unavailable(exc, f"cannot open {self.where}") from exc
        try:
            async with pool.acquire() as conn:
                applied = await _applied(conn)
                pending = migrations.plan(
                    "postgresql", applied, may_migrate=self.auto_migrate, where=self.where
                )
            self._pool = pool
            if pending:
                await self.migrate()
        except BaseException:
            self._pool = None
            await pool.close()
            raise
        if self._wake_callbacks:
            self._start_listener()

    async def close(self) -> None:
        self._closing = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except _UNAVAILABLE:  # TimeoutError among them
                pool.terminate()

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def migrate(self) -> list[str]:
        """Apply the pending migrations; works on a store that is not open too (``trilha
        migrate`` needs no pool), over a connection of its own."""
        if self._pool is not None:
            return await self._run(self._migrate, transaction=False)
        try:
            conn = await asyncpg.connect(self.dsn)
        except Exception as exc:
            raise _unavailable(exc, f"cannot open {self.where}") from exc
        try:
            return await self._migrate(conn)
        except TrilhaError:
            raise
        except Exception as exc:
            raise _unavailable(exc, f"migrating {self.where}") from exc
        finally:
            await conn.close()

    async def _migrate(self, conn: Connection | asyncpg.Connection[asyncpg.Record]) -> list[str]:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
            )
            applied = await _applied(conn)
            pending = migrations.plan("postgresql", applied, may_migrate=True, where=self.where)
            for migration in pending:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations VALUES ($1, $2, extract(epoch FROM now()))",
                        migration.version,
                        migration.name,
                    )
                log.info("store.migrated", store=self.where, migration=migration.name)
            return [f"{m.version:04d}_{m.name}" for m in pending]
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)

    # the plumbing ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("store is not open")
        async with pool.acquire(timeout=self.command_timeout) as conn:
            yield conn

    async def _run(
        self, fn: Callable[[Connection], Awaitable[T]], *, transaction: bool = True
    ) -> T:
        """Run ``fn`` on a pooled connection (in a transaction unless told otherwise),
        again when PostgreSQL aborted it for a deadlock or a serialisation failure;
        driver errors come out as trilha errors."""
        for attempt in range(_ATTEMPTS):
            try:
                async with self._connection() as conn:
                    try:
                        if not transaction:
                            return await fn(conn)
                        async with conn.transaction():
                            return await fn(conn)
                    except _CUT:
                        # cut mid-operation: the driver's view of this connection can no
                        # longer be trusted, so it is ended rather than pooled again
                        conn.terminate()
                        raise
            except asyncpg.TransactionRollbackError as exc:
                if attempt == _ATTEMPTS - 1:
                    raise StoreUnavailable(f"postgresql: {exc} ({_ATTEMPTS} attempts)") from exc
                await asyncio.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
            except TrilhaError:
                raise
            except Exception as exc:
                mapped = _mapped(exc)
                if mapped is exc:
                    raise
                raise mapped from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _write(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        return await self._run(fn)

    async def _read(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        return await self._run(fn, transaction=False)

    # liveness and wake-ups ---------------------------------------------------------------

    async def heartbeat(self, owners: Sequence[str], *, now: float, alive_until: float) -> None:
        async def run(conn: Connection) -> None:
            await conn.execute(
                "INSERT INTO workers (worker_id, alive_until, started_at, beat_at)"
                " SELECT owner, $2::float8, $3::float8, $3::float8 FROM unnest($1::text[]) AS owner"
                " ON CONFLICT (worker_id) DO UPDATE"
                " SET alive_until = excluded.alive_until, beat_at = excluded.beat_at",
                list(owners),
                alive_until,
                now,
            )

        await self._run(run, transaction=False)

    async def tamper(self, execution_id: str, target: str, garbage: str) -> bool:
        async def run(conn: Connection) -> bool:
            if target == "current_node":
                sql = "UPDATE executions SET current_node_id = $1 WHERE id = $2"
            elif target in ("variables", "checkpoint"):
                sql = "UPDATE executions SET variables = $1 WHERE id = $2"
            else:
                raise ValueError(f"tamper: unknown target {target!r}")
            touched = _count(await conn.execute(sql, garbage, execution_id))
            if target == "checkpoint":
                touched = _count(
                    await conn.execute(
                        "UPDATE checkpoints SET state = $1 WHERE execution_id = $2 AND seq ="
                        " (SELECT MAX(seq) FROM checkpoints WHERE execution_id = $2)",
                        garbage,
                        execution_id,
                    )
                )
            return touched == 1

        return await self._write(run)

    def subscribe_wake(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._wake_callbacks.append(callback)
        if self._pool is not None:
            self._start_listener()

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._wake_callbacks.remove(callback)

        return unsubscribe

    def _start_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    def _wake(self, *_: object) -> None:
        for callback in list(self._wake_callbacks):
            callback()

    async def _listen(self) -> None:
        """Hold a LISTEN connection for as long as the store is open, reconnecting with
        backoff; each (re)connection wakes the subscribers once, since notifications
        sent while it was down are gone."""
        backoff = 0.1
        while not self._closing:
            conn: asyncpg.Connection[asyncpg.Record] | None = None
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(
                    self.dsn, server_settings={"application_name": "trilha-listen"}
                )
                conn.add_termination_listener(lambda _, lost=lost: lost.set())
                await conn.add_listener(WAKE_CHANNEL, self._wake)
                backoff = 0.1
                self._wake()
                while not lost.is_set() and not conn.is_closed():
                    # a silent network loss is found by a query, not by waiting
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), timeout=5.0)
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=5.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: workers poll meanwhile
                log.debug("store.listen_lost", store=self.where, error=str(exc))
            finally:
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), timeout=2)
            if self._closing:
                return
            await asyncio.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, 5.0)

    # flows -------------------------------------------------------------------------------

    async def publish_flow(self, flow_id: str, definition: dict[str, Any], at: float) -> int:
        body = {k: v for k, v in definition.items() if k != "version"}
        digest = checksum(dumps(body))

        async def run(conn: Connection) -> int:
            # every process publishes its --flows at start: one at a time per flow
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('flow:' || $1))", flow_id)
            row = await conn.fetchrow(
                "SELECT version, digest FROM flows WHERE flow_id = $1"
                " ORDER BY version DESC LIMIT 1",
                flow_id,
            )
            if row is not None and row[1] == digest:
                return int(row[0])
            wanted = int(definition.get("version") or 1)
            version = max(wanted, int(row[0]) + 1) if row is not None else wanted
            await conn.execute(
                "INSERT INTO flows VALUES ($1, $2, $3, $4, $5)",
                flow_id,
                version,
                dumps(body | {"version": version}),
                digest,
                at,
            )
            return version

        return await self._write(run)

    async def get_flow(self, flow_id: str, version: int | None = None) -> StoredFlow | None:
        async def run(conn: Connection) -> StoredFlow | None:
            if version is None:
                row = await conn.fetchrow(
                    "SELECT flow_id, version, definition, created_at FROM flows"
                    " WHERE flow_id = $1 ORDER BY version DESC LIMIT 1",
                    flow_id,
                )
            else:
                row = await conn.fetchrow(
                    "SELECT flow_id, version, definition, created_at FROM flows"
                    " WHERE flow_id = $1 AND version = $2",
                    flow_id,
                    version,
                )
            return None if row is None else _stored_flow(row)

        return await self._read(run)

    async def list_flows(self) -> list[StoredFlow]:
        async def run(conn: Connection) -> list[StoredFlow]:
            rows = await conn.fetch(
                "SELECT DISTINCT ON (flow_id) flow_id, version, definition, created_at"
                " FROM flows ORDER BY flow_id, version DESC"
            )
            return [_stored_flow(r) for r in rows]

        return await self._read(run)

    async def flow_versions(self, flow_id: str) -> list[StoredFlow]:
        async def run(conn: Connection) -> list[StoredFlow]:
            rows = await conn.fetch(
                "SELECT flow_id, version, definition, created_at FROM flows"
                " WHERE flow_id = $1 ORDER BY version",
                flow_id,
            )
            return [_stored_flow(r) for r in rows]

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
        async def run(conn: Connection) -> tuple[StoredCalendar, bool]:
            # one writer at a time per institution: two new calendars cannot both be
            # counted under the limit
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('calendars:' || $1))", institution_id
            )
            created = await conn.fetchval(
                "SELECT created_at FROM calendars WHERE institution_id = $1 AND name = $2",
                institution_id,
                name,
            )
            if created is None:
                count = await conn.fetchval(
                    "SELECT COUNT(*) FROM calendars WHERE institution_id = $1", institution_id
                )
                if count >= limit:
                    raise too_many_calendars(institution_id, limit)
            await conn.execute(
                "INSERT INTO calendars (institution_id, name, definition, created_at, updated_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (institution_id, name) DO UPDATE"
                " SET definition = excluded.definition, updated_at = excluded.updated_at",
                institution_id,
                name,
                orjson.dumps(definition).decode(),
                now if created is None else created,
                now,
            )
            first = now if created is None else float(created)
            return StoredCalendar(institution_id, name, definition, first, now), created is None

        return await self._write(run)

    async def get_calendar(self, institution_id: str, name: str) -> StoredCalendar | None:
        found = await self.list_calendars(institution_id, [name])
        return found[0] if found else None

    async def list_calendars(
        self, institution_id: str, names: Sequence[str] | None = None
    ) -> list[StoredCalendar]:
        async def run(conn: Connection) -> list[StoredCalendar]:
            columns = "institution_id, name, definition, created_at, updated_at"
            if names is None:
                rows = await conn.fetch(
                    f"SELECT {columns} FROM calendars WHERE institution_id = $1 ORDER BY name",
                    institution_id,
                )
            else:
                rows = await conn.fetch(
                    f"SELECT {columns} FROM calendars WHERE institution_id = $1"
                    " AND name = ANY($2::text[]) ORDER BY name",
                    institution_id,
                    list(names),
                )
            return [StoredCalendar(r[0], r[1], orjson.loads(r[2]), r[3], r[4]) for r in rows]

        return await self._read(run)

    async def delete_calendar(self, institution_id: str, name: str) -> bool:
        async def run(conn: Connection) -> bool:
            status = await conn.execute(
                "DELETE FROM calendars WHERE institution_id = $1 AND name = $2",
                institution_id,
                name,
            )
            return _count(status) == 1

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
        async def run(conn: Connection) -> Execution:
            active = await conn.fetchrow(
                "SELECT id, status FROM executions"
                f" WHERE institution_id = $1 AND conversation_id = $2 AND {ACTIVE_SQL}"
                " FOR UPDATE",
                execution.institution_id,
                execution.conversation_id,
            )
            if active is not None and replace:
                await _cancel_row(
                    conn,
                    active[0],
                    stored_status(active[1]),
                    execution.created_at,
                    f"replaced by execution {execution.id}",
                )
            elif active is not None:
                raise ConversationBusy(
                    f"conversation '{execution.conversation_id}' already has an active"
                    f" execution ({active[0]}); replace it with --replace (API: replace: true)",
                    execution_id=active[0],
                )
            await conn.execute(_INSERT_EXECUTION, *execution_params(execution))
            await _insert_transitions(conn, [transition])
            await _insert_logs(conn, logs)
            if execution.wake_at is not None:
                await _notify(conn)
            return execution

        return await self._write(run)

    async def create_triggered(
        self,
        execution: Execution,
        transition: Transition,
        logs: list[LogRecord],
        message: InboundMessage,
        *,
        replace_reason: str | None = None,
    ) -> InboundResult:
        async def run(conn: Connection) -> InboundResult:
            # the message first: the same message delivered twice at once waits here for
            # the other delivery's transaction, then finds its row and starts nothing
            inserted = await conn.fetchrow(
                "INSERT INTO inbox (institution_id, conversation_id, message_id, contact_id,"
                " text, payload, received_at, execution_id, content, applied_at, applied_step)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $7, 0)"
                " ON CONFLICT (institution_id, conversation_id, message_id) DO NOTHING"
                f" RETURNING {INBOX_COLUMNS}",
                message.institution_id,
                message.conversation_id,
                message.message_id,
                message.contact_id,
                message.text,
                json_or_none(message.payload),
                message.received_at,
                execution.id,
                json_or_none(message.content),
            )
            if inserted is None:
                existing = await _inbox_row(
                    conn, message.institution_id, message.conversation_id, message.message_id
                )
                if existing is None:  # pragma: no cover - the conflict names a row
                    raise StoreError(f"inbound message {message.message_id} vanished")
                return InboundResult("duplicate", row_to_inbound(existing))
            active = await conn.fetchrow(
                "SELECT id, status FROM executions"
                f" WHERE institution_id = $1 AND conversation_id = $2 AND {ACTIVE_SQL}"
                " FOR UPDATE",
                execution.institution_id,
                execution.conversation_id,
            )
            if active is not None and replace_reason is None:
                raise ConversationBusy(
                    f"conversation '{execution.conversation_id}' already has an active"
                    f" execution ({active[0]})",
                    execution_id=active[0],
                )
            if active is not None and replace_reason is not None:
                await _cancel_row(
                    conn, active[0], stored_status(active[1]), execution.created_at, replace_reason
                )
            # a concurrent start in the conversation meets the one-active index here
            # (ConversationBusy), and this transaction, its message included, rolls back
            await conn.execute(_INSERT_EXECUTION, *execution_params(execution))
            await _insert_transitions(conn, [transition])
            await _insert_logs(conn, logs)
            if execution.wake_at is not None:
                await _notify(conn)
            return InboundResult("accepted", row_to_inbound(inserted))

        return await self._write(run)

    async def get_execution(self, execution_id: str) -> Execution:
        async def run(conn: Connection) -> Execution:
            row = await conn.fetchrow(
                f"SELECT {EXEC_COLUMNS} FROM executions WHERE id = $1", execution_id
            )
            if row is None:
                raise ExecutionNotFound(f"no execution '{execution_id}'")
            return row_to_execution(row)

        return await self._read(run)

    async def latest_execution(self, institution_id: str | None, conversation_id: str) -> Execution:
        async def run(conn: Connection) -> Execution:
            params = _Params(conversation_id)
            sql = f"SELECT {EXEC_COLUMNS} FROM executions WHERE conversation_id = $1"
            if institution_id is not None:
                sql += f" AND institution_id = {params.add(institution_id)}"
            row = await conn.fetchrow(
                sql + " ORDER BY created_at DESC, row_seq DESC LIMIT 1", *params.values
            )
            if row is None:
                raise ExecutionNotFound(f"no execution for conversation '{conversation_id}'")
            return row_to_execution(row)

        return await self._read(run)

    async def count_by_status(self, institution_id: str | None = None) -> dict[str, int]:
        async def run(conn: Connection) -> dict[str, int]:
            if institution_id is None:
                rows = await conn.fetch("SELECT status, COUNT(*) FROM executions GROUP BY status")
            else:
                rows = await conn.fetch(
                    "SELECT status, COUNT(*) FROM executions WHERE institution_id = $1"
                    " GROUP BY status",
                    institution_id,
                )
            return {str(r[0]): int(r[1]) for r in rows}

        return await self._read(run)

    async def count_by_outcome(self, institution_id: str | None = None) -> dict[str, int]:
        async def run(conn: Connection) -> dict[str, int]:
            if institution_id is None:
                rows = await conn.fetch(
                    "SELECT outcome, COUNT(*) FROM executions WHERE outcome IS NOT NULL"
                    " GROUP BY outcome"
                )
            else:
                rows = await conn.fetch(
                    "SELECT outcome, COUNT(*) FROM executions WHERE institution_id = $1"
                    " AND outcome IS NOT NULL GROUP BY outcome",
                    institution_id,
                )
            return {str(r[0]): int(r[1]) for r in rows}

        return await self._read(run)

    async def waiting_for_dependencies(self, institution_id: str | None = None) -> dict[str, int]:
        async def run(conn: Connection) -> dict[str, int]:
            params = _Params()
            sql = (
                "SELECT error FROM executions WHERE status = 'recovering'"
                " AND waiting_for = 'dependency'"
            )
            if institution_id is not None:
                sql += f" AND institution_id = {params.add(institution_id)}"
            counts: dict[str, int] = {}
            for row in await conn.fetch(sql, *params.values):
                name = dependency_waited_for(row[0])
                if name is not None:
                    counts[name] = counts.get(name, 0) + 1
            return counts

        return await self._read(run)

    async def status_since(self, execution_ids: Sequence[str]) -> dict[str, float]:
        ids = list(dict.fromkeys(execution_ids))

        async def run(conn: Connection) -> dict[str, float]:
            rows = await conn.fetch(
                "SELECT DISTINCT ON (execution_id) execution_id, at FROM transitions"
                " WHERE execution_id = ANY($1::text[]) ORDER BY execution_id, id DESC",
                ids,
            )
            return {r[0]: float(r[1]) for r in rows}

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
        async def run(conn: Connection) -> list[Claimed]:
            params = _Params(now, worker_id, now + lease_seconds, limit)
            only = "" if execution_id is None else f" AND id = {params.add(execution_id)}"
            rows = await conn.fetch(
                "WITH due AS (SELECT id, lease_owner AS previous FROM executions"
                f" WHERE wake_at <= $1 AND {_LEASE_FREE}{only}"
                " ORDER BY wake_at LIMIT $4 FOR UPDATE SKIP LOCKED)"
                " UPDATE executions e SET lease_owner = $2, lease_expires_at = $3,"
                " fencing_token = e.fencing_token + 1 FROM due WHERE e.id = due.id"
                f" RETURNING {_qualified(EXEC_COLUMNS, 'e')}, due.previous",
                *params.values,
            )
            rows = sorted(rows, key=lambda r: _number(Row(r)["wake_at"]))
            claimed: list[Claimed] = []
            wanting: list[str] = []
            for row in rows:
                previous = row["previous"]
                try:
                    execution = row_to_execution(row)
                except CorruptedRecord as exc:
                    eid = row["id"]
                    await _quarantine(conn, eid, "execution", str(exc), row, now)
                    claimed.append(Claimed(salvage(row), corruption=str(exc), taken_from=previous))
                    wanting.append(eid)
                    continue
                claimed.append(Claimed(execution, taken_from=previous))
                if execution.status is ExecutionStatus.WAITING_INPUT:
                    wanting.append(execution.id)
            if not wanting:
                return claimed
            # the oldest reply not yet applied, for each: replies go one at a time, in order
            pending = {
                r[7]: row_to_inbound(r)
                for r in await conn.fetch(
                    f"SELECT DISTINCT ON (execution_id) {INBOX_COLUMNS} FROM inbox"
                    " WHERE execution_id = ANY($1::text[]) AND applied_at IS NULL"
                    " ORDER BY execution_id, id",
                    wanting,
                )
            }
            return [
                Claimed(c.execution, pending.get(c.execution.id), c.corruption, c.taken_from)
                if c.execution.id in pending
                else c
                for c in claimed
            ]

        return await self._write(run)

    async def renew_lease(
        self, execution_id: str, worker_id: str, fencing_token: int, until: float
    ) -> None:
        async def run(conn: Connection) -> None:
            status = await conn.execute(
                "UPDATE executions SET lease_expires_at = $1"
                " WHERE id = $2 AND lease_owner = $3 AND fencing_token = $4",
                until,
                execution_id,
                worker_id,
                fencing_token,
            )
            if _count(status) != 1:
                raise StaleLease(f"lease on {execution_id} lost (token {fencing_token})")

        await self._write(run)

    async def commit_step(self, commit: StepCommit, *, now: float) -> None:
        async def run(conn: Connection) -> None:
            ex = commit.execution
            ex.updated_at = now
            if commit.applied_inbox:
                await conn.executemany(
                    "UPDATE inbox SET applied_at = $1, applied_step = $2 WHERE id = $3",
                    [(now, seq, i) for i, seq in commit.applied_inbox],
                )
            if commit.applied_signals:
                await conn.executemany(
                    "UPDATE signals SET consumed_at = $1, consumed_step = $2 WHERE id = $3",
                    [(now, seq, i) for i, seq in commit.applied_signals],
                )
            values = [
                v
                for f, v in zip(EXEC_FIELDS, execution_params(ex), strict=True)
                if f not in ("id", "fencing_token")
            ]
            lease_owner = None if commit.release else commit.lease_owner
            lease_expires = None if commit.release else ex.lease_expires_at
            status = await conn.execute(
                _UPDATE_EXECUTION,
                *values,
                lease_owner,
                lease_expires,
                ex.id,
                commit.fencing_token,
                commit.lease_owner,
            )
            if _count(status) != 1:
                raise StaleLease(
                    f"commit on {ex.id} refused: fencing token {commit.fencing_token} is stale"
                )
            # the row is locked now: a reply stored before is visible, one stored after
            # waits for this commit and then finds the execution waiting
            if ex.status is ExecutionStatus.WAITING_INPUT and await _has_pending_input(conn, ex):
                ex.wake_at = now  # a reply (or the signal waited for) arrived while we ran
                await conn.execute("UPDATE executions SET wake_at = $1 WHERE id = $2", now, ex.id)
            if commit.checkpoints:
                await conn.executemany(
                    "INSERT INTO checkpoints VALUES"
                    " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
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
                    await conn.executemany(_INSERT_STEP_ERROR, failed)
            await _insert_transitions(conn, commit.transitions)
            if commit.outbox:
                await conn.executemany(
                    "INSERT INTO outbox (idempotency_key, execution_id, institution_id,"
                    " conversation_id, contact_id, channel, text, payload, step_seq, created_at,"
                    " next_attempt_at, content, reply_to)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
                await conn.executemany(
                    "INSERT INTO handoffs (execution_id, institution_id, conversation_id,"
                    " contact_id, queue, reason, at, next_notify_at, mode)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
            await _insert_turns(conn, commit.turns)
            await _insert_logs(conn, commit.logs)
            if commit.hold_inbox:  # a person holds it now: unread replies are theirs
                await _insert_logs(
                    conn,
                    await holds_postgres.hold_pending(
                        conn, ex.id, ex.step_seq, ex.current_node_id, now
                    ),
                )

        await self._write(run)

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
        async def run(conn: Connection) -> InboundResult:
            conversation, contact = conversation_id, contact_id
            # the execution's row is locked first: a step commit in flight either ended
            # before (we see it waiting, and wake it) or waits for us (and sees the reply)
            if execution_id is not None:
                row = await conn.fetchrow(
                    "SELECT id, institution_id, status, conversation_id, contact_id"
                    " FROM executions WHERE id = $1 FOR UPDATE",
                    execution_id,
                )
                if row is None:
                    raise ExecutionNotFound(f"no execution '{execution_id}'")
                # the row's identity columns serve even when its state cannot be read
                conversation, contact = conversation or row[3], contact or row[4]
            else:
                row = await conn.fetchrow(
                    "SELECT id, institution_id, status FROM executions"
                    f" WHERE conversation_id = $1 AND institution_id = $2 AND {ACTIVE_SQL}"
                    " FOR UPDATE",
                    conversation_id,
                    institution_id,
                )
            institution = row[1] if row is not None else institution_id
            if institution is None:
                raise ExecutionNotFound(f"no active execution for conversation '{conversation_id}'")
            existing = await _inbox_row(conn, institution, conversation, message_id)
            if existing is not None:
                return InboundResult("duplicate", row_to_inbound(existing))
            status = stored_status(row[2]) if row is not None else None
            if execution_id is not None and status in TERMINAL:
                raise ExecutionEnded(
                    f"execution '{execution_id}' is {row[2] if row else '?'};"
                    " it takes no more replies"
                )
            target = row[0] if row is not None and status not in TERMINAL else None
            inserted = await conn.fetchrow(
                "INSERT INTO inbox (institution_id, conversation_id, message_id, contact_id,"
                " text, payload, received_at, execution_id, content)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                " ON CONFLICT (institution_id, conversation_id, message_id) DO NOTHING"
                f" RETURNING {INBOX_COLUMNS}",
                institution,
                conversation,
                message_id,
                contact,
                text,
                json_or_none(payload),
                now,
                target,
                json_or_none(content),
            )
            if inserted is None:  # the same message, stored by a concurrent delivery
                again = await _inbox_row(conn, institution, conversation, message_id)
                if again is None:  # pragma: no cover - the conflict names a row
                    raise StoreError(f"inbound message {message_id} vanished")
                return InboundResult("duplicate", row_to_inbound(again))
            if target is not None:
                woken = await conn.execute(
                    "UPDATE executions SET wake_at = $1 WHERE id = $2"
                    " AND status = 'waiting_input' AND waiting_for = 'input'"
                    " AND (wake_at IS NULL OR wake_at > $1)",
                    now,
                    target,
                )
                if _count(woken):
                    await _notify(conn)
                hold = await holds_postgres.holding(conn, target)
                if hold is not None:  # said to the person holding the conversation
                    await _insert_logs(
                        conn, await holds_postgres.hold_pending(conn, target, *hold, now)
                    )
                    inserted = await conn.fetchrow(
                        f"SELECT {INBOX_COLUMNS} FROM inbox WHERE id = $1", inserted[0]
                    )
                    assert inserted is not None  # written in this transaction
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
        async def run(conn: Connection) -> SignalResult:
            # the execution's row is locked first: a step commit in flight either ended
            # before (we see it waiting, and wake it) or waits for us (and sees the signal);
            # concurrent signals of one execution take their turn (the pending bound holds)
            row = await conn.fetchrow(
                "SELECT institution_id, status, current_node_id FROM executions"
                " WHERE id = $1 FOR UPDATE",
                execution_id,
            )
            if row is None or (institution_id is not None and row[0] != institution_id):
                raise not_found(execution_id)
            existing = await _signal_row(conn, execution_id, signal_id)
            if existing is not None:
                return SignalResult("duplicate", row_to_signal(existing))
            status = stored_status(row[1])
            if status in TERMINAL:
                raise ended(execution_id, status, row[1])
            pending = await conn.fetchval(
                "SELECT COUNT(*) FROM signals WHERE execution_id = $1 AND consumed_at IS NULL",
                execution_id,
            )
            if pending >= max_pending:
                raise too_many(execution_id, pending, max_pending)
            text = dumps(payload)
            inserted = await conn.fetchrow(
                "INSERT INTO signals (execution_id, institution_id, event, signal_id, payload,"
                " received_at) VALUES ($1, $2, $3, $4, $5, $6)"
                f" ON CONFLICT (execution_id, signal_id) DO NOTHING RETURNING {SIGNAL_COLUMNS}",
                execution_id,
                row[0],
                event,
                signal_id,
                text,
                now,
            )
            if inserted is None:  # pragma: no cover - the row lock orders repeats
                again = await _signal_row(conn, execution_id, signal_id)
                if again is None:
                    raise StoreError(f"signal {signal_id} vanished")
                return SignalResult("duplicate", row_to_signal(again))
            signal = row_to_signal(inserted)
            await _insert_logs(conn, [received_line(signal, row[2], len(text.encode()))])
            woken = await conn.execute(
                "UPDATE executions SET wake_at = $1 WHERE id = $2 AND status = 'waiting_input'"
                " AND waiting_for = $3 AND (wake_at IS NULL OR wake_at > $1)",
                now,
                execution_id,
                event_wait(event),
            )
            if _count(woken):
                await _notify(conn)
            return SignalResult("accepted", signal)

        return await self._write(run)

    async def pending_signal(
        self, execution_id: str, event: str, *, skip: Sequence[int] = ()
    ) -> Signal | None:
        async def run(conn: Connection) -> Signal | None:
            return await _pending_signal(conn, execution_id, event, skip)

        return await self._read(run)

    async def signals_for(self, execution_id: str) -> list[Signal]:
        async def run(conn: Connection) -> list[Signal]:
            rows = await conn.fetch(
                f"SELECT {SIGNAL_COLUMNS} FROM signals WHERE execution_id = $1 ORDER BY id",
                execution_id,
            )
            return [row_to_signal(r) for r in rows]

        return await self._read(run)

    async def pending_inbound(self, execution_id: str, *, limit: int) -> list[InboundMessage]:
        async def run(conn: Connection) -> list[InboundMessage]:
            rows = await conn.fetch(
                f"SELECT {INBOX_COLUMNS} FROM inbox WHERE execution_id = $1"
                " AND applied_at IS NULL ORDER BY id LIMIT $2",
                execution_id,
                limit,
            )
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
        async def run(conn: Connection) -> None:
            status = await conn.execute(
                "UPDATE executions SET wake_at = $1, lease_owner = NULL, lease_expires_at = NULL"
                " WHERE id = $2 AND fencing_token = $3 AND lease_owner = $4",
                wake_at,
                execution_id,
                fencing_token,
                worker_id,
            )
            if _count(status) != 1:
                raise StaleLease(f"lease on {execution_id} lost (token {fencing_token})")
            await _insert_logs(conn, list(logs))

        await self._write(run)

    async def queue_stats(self, now: float, execution_id: str | None = None) -> QueueStats:
        async def run(conn: Connection) -> QueueStats:
            only = "" if execution_id is None else " AND id = $2"
            params = (now,) if execution_id is None else (now, execution_id)
            # one statement, each count off its own index
            row = await conn.fetchrow(
                "SELECT"
                f" (SELECT COUNT(*) FROM executions WHERE wake_at <= $1 AND {_LEASE_FREE}{only}),"
                " (SELECT COUNT(*) FROM executions WHERE lease_owner IS NOT NULL"
                f" AND lease_expires_at >= $1{only}),"
                " (SELECT COUNT(*) FROM executions"
                f" WHERE status IN ('waiting_input', 'waiting_delay'){only}),"
                f" (SELECT MIN(wake_at) FROM executions WHERE wake_at IS NOT NULL{only}),"
                " (SELECT COUNT(*) FROM outbox WHERE status = 'pending'"
                f"{only.replace('id', 'execution_id')})",
                *params,
            )
            assert row is not None
            return QueueStats(int(row[0]), int(row[1]), int(row[2]), int(row[4]), row[3])

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
        async def run(conn: Connection) -> Execution:
            # a step commit does not move the token, so the step count and the update
            # time read by the operator must still hold too: a commit landing between
            # the operator's read and this write is never rolled back
            read_seq, read_updated = execution.step_seq, execution.updated_at
            execution.updated_at = now
            execution.fencing_token = expected_token + 1
            execution.lease_owner = execution.lease_expires_at = None
            status = await conn.execute(
                _UPDATE_EXECUTION_BY_ID + " AND fencing_token = $31 AND step_seq = $32"
                " AND updated_at = $33",
                *execution_params(execution)[1:],
                None,
                None,
                execution.id,
                expected_token,
                read_seq,
                read_updated,
            )
            if _count(status) != 1:
                raise StaleLease(f"execution {execution.id} changed meanwhile; try again")
            if execution.status is ExecutionStatus.WAITING_INPUT and await _has_pending_input(
                conn, execution
            ):
                execution.wake_at = now
                await conn.execute(
                    "UPDATE executions SET wake_at = $1 WHERE id = $2", now, execution.id
                )
            await _insert_transitions(conn, transitions)
            await _insert_logs(conn, logs)
            if execution.wake_at is not None and execution.wake_at <= now:
                await _notify(conn)
            return execution

        return await self._write(run)

    async def quarantine(
        self, execution_id: str, *, kind: str, reason: str, payload: Any, now: float
    ) -> None:
        async def run(conn: Connection) -> None:
            await conn.execute(
                "INSERT INTO quarantine (execution_id, kind, reason, payload, at)"
                " VALUES ($1, $2, $3, $4, $5)",
                execution_id,
                kind,
                reason,
                json_or_none(payload),
                now,
            )

        await self._write(run)

    async def quarantined(self, execution_id: str) -> list[dict[str, Any]]:
        async def run(conn: Connection) -> list[dict[str, Any]]:
            rows = await conn.fetch(
                "SELECT kind, reason, payload, at FROM quarantine WHERE execution_id = $1"
                " ORDER BY id",
                execution_id,
            )
            return [{"kind": r[0], "reason": r[1], "payload": r[2], "at": r[3]} for r in rows]

        return await self._read(run)

    async def find_stuck(self, now: float, *, grace_seconds: float) -> list[Stuck]:
        async def run(conn: Connection) -> list[Stuck]:
            rows = await conn.fetch(
                "SELECT id, status, wake_at, due_at FROM executions"
                f" WHERE {ACTIVE_SQL} AND status <> 'paused'"
                " AND (lease_expires_at IS NULL OR lease_expires_at < $1)"
                " AND (wake_at IS NULL"
                " OR (due_at IS NOT NULL AND due_at < $2 AND wake_at > due_at))",
                now,
                now - grace_seconds,
            )
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
        async def run(conn: Connection) -> None:
            status = await conn.execute(
                "UPDATE executions SET wake_at = $1 WHERE id = $2", wake_at, execution_id
            )
            if not _count(status):
                return
            await _insert_logs(
                conn,
                [
                    LogRecord(
                        execution_id, "WARN", "sweeper.rescheduled", now, context={"reason": reason}
                    )
                ],
            )
            if wake_at <= now:
                await _notify(conn)

        await self._write(run)

    # handoff notices -----------------------------------------------------------------------

    async def claim_handoff_notices(
        self, *, now: float, lease_seconds: float, limit: int
    ) -> list[tuple[int, Handoff]]:
        async def run(conn: Connection) -> list[tuple[int, Handoff]]:
            rows = await conn.fetch(
                "UPDATE handoffs SET lease_expires_at = $1 WHERE id IN ("
                " SELECT id FROM handoffs WHERE notified_at IS NULL AND next_notify_at <= $2"
                " AND (lease_expires_at IS NULL OR lease_expires_at < $2) ORDER BY id LIMIT $3"
                " FOR UPDATE SKIP LOCKED)"
                " RETURNING id, execution_id, institution_id, conversation_id, contact_id,"
                " queue, reason, at, mode",
                now + lease_seconds,
                now,
                limit,
            )
            return sorted((int(r[0]), Handoff(*r[1:])) for r in rows)

        return await self._write(run)

    async def mark_handoff_notice(
        self, handoff_id: int, *, now: float, error: str | None, retry_at: float | None
    ) -> None:
        async def run(conn: Connection) -> None:
            if error is None:
                await conn.execute(
                    "UPDATE handoffs SET notified_at = $1, notify_attempts = notify_attempts + 1,"
                    " lease_expires_at = NULL WHERE id = $2",
                    now,
                    handoff_id,
                )
            else:
                await conn.execute(
                    "UPDATE handoffs SET notify_attempts = notify_attempts + 1, last_error = $1,"
                    " next_notify_at = $2, lease_expires_at = NULL WHERE id = $3",
                    error[:2000],
                    retry_at,
                    handoff_id,
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
        async def run(conn: Connection) -> AgentMessageResult:
            result, lines = await holds_postgres.record_agent_message(
                conn,
                institution_id=institution_id,
                conversation_id=conversation_id,
                message_id=message_id,
                agent_id=agent_id,
                text=text,
                content=content,
                now=now,
            )
            await _insert_logs(conn, lines)
            if result.status == "accepted":
                await _notify(conn)  # a dispatcher of any process delivers it now
            return result

        return await self._write(run)

    async def claim_desk_messages(
        self, *, now: float, lease_seconds: float, limit: int
    ) -> list[DeskMessage]:
        async def run(conn: Connection) -> list[DeskMessage]:
            return await holds_postgres.claim_desk_messages(
                conn, now=now, lease_seconds=lease_seconds, limit=limit
            )

        return await self._write(run)

    async def mark_desk_message(
        self, forward_id: int, *, now: float, error: str | None, retry_at: float | None
    ) -> None:
        async def run(conn: Connection) -> None:
            await holds_postgres.mark_desk_message(
                conn, forward_id, now=now, error=error, retry_at=retry_at
            )

        await self._write(run)

    # outbox -------------------------------------------------------------------------------

    async def claim_outbox(
        self, dispatcher_id: str, *, now: float, lease_seconds: float, limit: int
    ) -> list[OutboundMessage]:
        async def run(conn: Connection) -> list[OutboundMessage]:
            # one claim at a time: the rule that nothing overtakes an earlier message of
            # its conversation reads the other claims' leases, which a concurrent claim
            # would not see yet. A claim under way elsewhere makes this one a no-op (the
            # dispatcher comes back next round) rather than a wait: a dispatcher frozen
            # inside its claim must not stall every other one
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _OUTBOX_LOCK):
                return []
            rows = await conn.fetch(
                "UPDATE outbox SET lease_owner = $1, lease_expires_at = $2 WHERE id IN ("
                " SELECT o.id FROM outbox o WHERE o.status = 'pending' AND o.next_attempt_at <= $3"
                " AND (o.lease_expires_at IS NULL OR o.lease_expires_at < $3"
                " OR o.lease_owner IN (SELECT worker_id FROM workers WHERE alive_until < $3))"
                " AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.status = 'pending'"
                " AND e.institution_id = o.institution_id"
                " AND e.conversation_id = o.conversation_id AND e.id < o.id"
                " AND (e.next_attempt_at > $3 OR e.lease_expires_at >= $3))"
                " ORDER BY o.id LIMIT $4)"
                f" RETURNING {OUTBOX_COLUMNS}",
                dispatcher_id,
                now + lease_seconds,
                now,
                limit,
            )
            return sorted((row_to_outbound(r) for r in rows), key=lambda m: m.id or 0)

        return await self._write(run)

    async def release_outbox(self, dispatcher_id: str, message_ids: list[int]) -> None:
        async def run(conn: Connection) -> None:
            await conn.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_expires_at = NULL"
                " WHERE id = ANY($1::bigint[]) AND lease_owner = $2 AND status = 'pending'",
                list(message_ids),
                dispatcher_id,
            )

        if message_ids:
            await self._write(run)

    async def mark_sent(
        self, message_ids: list[int], *, now: float, logs: Sequence[LogRecord] = ()
    ) -> None:
        async def run(conn: Connection) -> None:
            await conn.execute(
                "UPDATE outbox SET status = 'sent', sent_at = $1, attempts = attempts + 1,"
                " lease_owner = NULL, lease_expires_at = NULL WHERE id = ANY($2::bigint[])",
                now,
                list(message_ids),
            )
            await _insert_logs(conn, list(logs))

        if message_ids:
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
        async def run(conn: Connection) -> None:
            await conn.execute(
                "UPDATE outbox SET attempts = attempts + $5, last_error = $1,"
                " next_attempt_at = $2, status = $3, lease_owner = NULL, lease_expires_at = NULL"
                " WHERE id = $4",
                error[:2000],
                retry_at,
                "pending" if retry_at is not None else "dead",
                message_id,
                int(attempted),
            )
            await _insert_logs(conn, list(logs))

        await self._write(run)

    async def list_outbox(
        self,
        status: OutboxStatus,
        *,
        institution_id: str | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> list[OutboxItem]:
        async def run(conn: Connection) -> list[OutboxItem]:
            params = _Params()
            sql = (
                f"SELECT {OUTBOX_ITEM_COLUMNS} FROM outbox WHERE status = {params.add(status)}"
                f" AND id > {params.add(after or 0)}"
            )
            if institution_id is not None:
                sql += f" AND institution_id = {params.add(institution_id)}"
            sql += f" ORDER BY id LIMIT {params.add(limit)}"
            return [row_to_outbox_item(r) for r in await conn.fetch(sql, *params.values)]

        return await self._read(run)

    async def count_dead_outbox(self, institution_id: str | None = None) -> int:
        async def run(conn: Connection) -> int:
            if institution_id is None:
                found = await conn.fetchval("SELECT COUNT(*) FROM outbox WHERE status = 'dead'")
            else:
                found = await conn.fetchval(
                    "SELECT COUNT(*) FROM outbox WHERE status = 'dead' AND institution_id = $1",
                    institution_id,
                )
            return int(found)

        return await self._read(run)

    async def redrive_outbox(
        self, message_id: int, *, institution_id: str | None, now: float, actor: str
    ) -> Redrive:
        async def run(conn: Connection) -> Redrive:
            row = await conn.fetchrow(
                f"SELECT {OUTBOX_ITEM_COLUMNS} FROM outbox WHERE id = $1 FOR UPDATE", message_id
            )
            if row is None:
                return Redrive("not_found")
            item = row_to_outbox_item(row)
            if institution_id is not None and item.institution_id != institution_id:
                return Redrive("not_found")
            if item.status == "sent":
                return Redrive("sent", item)
            # the lease is left as it is: a pending message out with a dispatcher now is
            # not handed to a second one
            await conn.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $1"
                " WHERE id = $2",
                now,
                message_id,
            )
            await _insert_logs(conn, [redriven_line(item, actor=actor, now=now)])
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
        async def run(conn: Connection) -> ReceiptResult | None:
            # the row is locked: two receipts of one message decide the state in turn
            row = await conn.fetchrow(
                f"SELECT {DELIVERY_COLUMNS} FROM outbox WHERE idempotency_key = $1"
                " AND institution_id = $2 AND conversation_id = $3 FOR UPDATE",
                idempotency_key,
                institution_id,
                conversation_id,
            )
            if row is None:
                return None
            before = row_to_delivery(row)
            inserted = await conn.fetchval(
                "INSERT INTO delivery_receipts"
                " (outbox_id, status, at, error, received_at, message_id)"
                " VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (outbox_id, status, message_id) DO NOTHING RETURNING id",
                before.outbox_id,
                status,
                at,
                error,
                now,
                message_id or "",
            )
            if inserted is None:
                return ReceiptResult(duplicate=True, advanced=False, delivery=before)
            advanced = advances(before.receipt, status)
            after = before
            if advanced:
                await conn.execute(
                    "UPDATE outbox SET delivery_status = $1, delivery_at = $2,"
                    " delivery_error = $3 WHERE id = $4",
                    status,
                    at,
                    error,
                    before.outbox_id,
                )
                after = replace(before, receipt=status, receipt_at=at, receipt_error=error)
            line = receipt_line(
                after, status=status, at=at, error=error, advanced=advanced, now=now
            )
            await _insert_logs(conn, [line])
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
        async def run(conn: Connection) -> TemplateResend:
            # the row is locked (which gives the transaction its xid before any trail
            # line): two processes decide in turn, and the second finds the content
            # switched already
            row = await conn.fetchrow(
                f"SELECT {RESEND_COLUMNS} FROM outbox WHERE idempotency_key = $1"
                " AND institution_id = $2 AND conversation_id = $3 FOR UPDATE",
                idempotency_key,
                institution_id,
                conversation_id,
            )
            result, content, lines = resend_decision(
                row, idempotency_key=idempotency_key, code=code, error=error, now=now, first=first
            )
            if content is not None:
                assert row is not None
                await conn.execute(
                    "UPDATE outbox SET content = $1, status = 'pending', next_attempt_at = $2,"
                    " last_error = $3, sent_at = NULL WHERE id = $4",
                    content,
                    now,
                    resent_error(code, error),
                    row[0],
                )
            await _insert_logs(conn, lines)
            return result

        return await self._write(run)

    async def deliveries(self, execution_id: str) -> list[Delivery]:
        async def run(conn: Connection) -> list[Delivery]:
            rows = await conn.fetch(
                f"SELECT {DELIVERY_COLUMNS} FROM outbox WHERE execution_id = $1"
                " ORDER BY step_seq, id",
                execution_id,
            )
            return [row_to_delivery(r) for r in rows]

        return await self._read(run)

    async def undelivered(self, execution_ids: Sequence[str], *, now: float) -> dict[str, int]:
        ids = list(dict.fromkeys(execution_ids))

        async def run(conn: Connection) -> dict[str, int]:
            rows = await conn.fetch(
                "SELECT execution_id, COUNT(*) FROM outbox WHERE execution_id = ANY($1::text[])"
                f" AND {undelivered_sql('$2')} GROUP BY execution_id",
                ids,
                late_before(now),
            )
            return {str(r[0]): int(r[1]) for r in rows}

        return await self._read(run) if ids else {}

    # trail --------------------------------------------------------------------------------

    async def transitions(self, execution_id: str) -> list[Transition]:
        async def run(conn: Connection) -> list[Transition]:
            rows = await conn.fetch(
                f"SELECT {TRANSITION_COLUMNS} FROM transitions WHERE execution_id = $1 ORDER BY id",
                execution_id,
            )
            return [row_to_transition(r) for r in rows]

        return await self._read(run)

    async def checkpoints(self, execution_id: str) -> list[Checkpoint]:
        async def run(conn: Connection) -> list[Checkpoint]:
            rows = await conn.fetch(
                f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE execution_id = $1"
                " ORDER BY seq",
                execution_id,
            )
            return [row_to_checkpoint(r) for r in rows]

        return await self._read(run)

    async def transcript(self, execution_id: str) -> list[TranscriptEntry]:
        async def run(conn: Connection) -> list[TranscriptEntry]:
            rows = await conn.fetch(
                # a reply comes before the messages of the step that consumed it;
                # replies not yet applied come last
                # (what a person holding the conversation and the contact said to
                # each other: by time, after the step's bot messages)
                "SELECT CASE WHEN agent_id IS NULL THEN 'bot' ELSE 'agent' END AS who, text,"
                " created_at AS at, step_seq::bigint AS seq,"
                " CASE WHEN agent_id IS NULL THEN 1 ELSE 2 END AS side,"
                " CASE WHEN agent_id IS NULL THEN 0 ELSE created_at END AS held,"
                " id, content, agent_id FROM outbox WHERE execution_id = $1"
                " UNION ALL SELECT 'contact', text, received_at,"
                " COALESCE(applied_step::bigint, 9223372036854775807),"
                " CASE WHEN held_at IS NULL THEN 0 ELSE 2 END,"
                " CASE WHEN held_at IS NULL THEN 0 ELSE received_at END, id, content, NULL"
                f" FROM inbox WHERE execution_id = $1 {TRANSCRIPT_ORDER}",
                execution_id,
            )
            return [row_to_transcript_entry(r) for r in rows]

        return await self._read(run)

    async def inbox_for(self, execution_id: str) -> list[InboundMessage]:
        async def run(conn: Connection) -> list[InboundMessage]:
            rows = await conn.fetch(
                f"SELECT {INBOX_COLUMNS} FROM inbox WHERE execution_id = $1 ORDER BY id",
                execution_id,
            )
            return [row_to_inbound(r) for r in rows]

        return await self._read(run)

    async def last_heard_at(self, execution_id: str) -> float | None:
        async def run(conn: Connection) -> float | None:
            value = await conn.fetchval(
                "SELECT GREATEST((SELECT MAX(received_at) FROM inbox WHERE execution_id = $1),"
                " (SELECT MAX(at) FROM transitions WHERE execution_id = $1"
                " AND source = 'paused'))",
                execution_id,
            )
            return None if value is None else float(value)

        return await self._read(run)

    async def last_inbound_at(self, institution_id: str, conversation_id: str) -> float | None:
        async def run(conn: Connection) -> float | None:
            value = await conn.fetchval(
                "SELECT MAX(received_at) FROM inbox WHERE institution_id = $1"
                " AND conversation_id = $2",
                institution_id,
                conversation_id,
            )
            return None if value is None else float(value)

        return await self._read(run)

    async def execution_ids(
        self, *, after: str | None = None, limit: int = 500, institution_id: str | None = None
    ) -> list[str]:
        async def run(conn: Connection) -> list[str]:
            params = _Params(after or "", limit)
            sql = "SELECT id FROM executions WHERE id > $1"
            if institution_id is not None:
                sql += f" AND institution_id = {params.add(institution_id)}"
            rows = await conn.fetch(sql + " ORDER BY id LIMIT $2", *params.values)
            return [str(r[0]) for r in rows]

        return await self._read(run)

    async def outbox_for(self, execution_id: str) -> list[OutboundMessage]:
        async def run(conn: Connection) -> list[OutboundMessage]:
            rows = await conn.fetch(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE execution_id = $1 ORDER BY id",
                execution_id,
            )
            return [row_to_outbound(r) for r in rows]

        return await self._read(run)

    async def logs(self, execution_id: str) -> list[LogRecord]:
        async def run(conn: Connection) -> list[LogRecord]:
            rows = await conn.fetch(
                "SELECT execution_id, level, message, at, node_id, node_type, context"
                " FROM execution_logs WHERE execution_id = $1 ORDER BY id",
                execution_id,
            )
            return [LogRecord(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6])) for r in rows]

        return await self._read(run)

    async def handoffs(self, execution_id: str) -> list[Handoff]:
        async def run(conn: Connection) -> list[Handoff]:
            rows = await conn.fetch(
                "SELECT execution_id, institution_id, conversation_id, contact_id, queue,"
                " reason, at, mode FROM handoffs WHERE execution_id = $1 ORDER BY id",
                execution_id,
            )
            return [Handoff(*r) for r in rows]

        return await self._read(run)

    # observability ---------------------------------------------------------------------

    async def step_outcomes(self, since: float) -> tuple[int, int]:
        async def run(conn: Connection) -> tuple[int, int]:
            row = await conn.fetchrow(
                "SELECT COUNT(*), COUNT(error) FROM checkpoints WHERE started_at >= $1"
                " AND node_type IS NOT NULL",
                since,
            )
            assert row is not None
            return int(row[0]), int(row[1])

        return await self._read(run)

    async def longest_turn(self, since: float, now: float) -> LongestTurn | None:
        async def run(conn: Connection) -> LongestTurn | None:
            found: list[LongestTurn] = []
            row = await conn.fetchrow(
                "SELECT duration, execution_id FROM turns WHERE ended_at >= $1"
                " ORDER BY duration DESC LIMIT 1",
                since,
            )
            if row is not None:
                found.append(LongestTurn(float(row[0]), row[1], running=False))
            row = await conn.fetchrow(
                "SELECT turn_started_at, id FROM executions WHERE turn_started_at IS NOT NULL"
                f" AND status NOT IN ({TERMINAL_SQL}, 'paused') ORDER BY turn_started_at LIMIT 1"
            )
            if row is not None:
                found.append(LongestTurn(max(0.0, now - float(row[0])), row[1], running=True))
            return max(found, key=lambda t: t.seconds, default=None)

        return await self._read(run)

    async def stats(
        self, since: float, *, institution_id: str | None = None, limit: int = 10
    ) -> StoreStats:
        async def run(conn: Connection) -> StoreStats:
            tenant = "" if institution_id is None else " AND x.institution_id = $2"
            params: list[Any] = [since] if institution_id is None else [since, institution_id]
            node_types = [
                NodeTypeStats(r[0], int(r[1]), int(r[2]), float(r[3]))
                for r in await conn.fetch(
                    "SELECT c.node_type, COUNT(*), COUNT(c.error), AVG(c.duration)"
                    " FROM checkpoints c JOIN executions x ON x.id = c.execution_id"
                    f" WHERE c.started_at >= $1 AND c.node_type IS NOT NULL{tenant}"
                    " GROUP BY c.node_type ORDER BY COUNT(*) DESC",
                    *params,
                )
            ]
            slowest = [
                SlowNode(r[0], r[1], r[2], int(r[3]), float(r[4]), float(r[5]))
                for r in await conn.fetch(
                    "SELECT x.flow_id, c.node_id, MIN(c.node_type), COUNT(*), AVG(c.duration),"
                    " MAX(c.duration) FROM checkpoints c JOIN executions x"
                    " ON x.id = c.execution_id WHERE c.started_at >= $1"
                    f" AND c.node_id IS NOT NULL{tenant}"
                    f" GROUP BY x.flow_id, c.node_id ORDER BY AVG(c.duration) DESC"
                    f" LIMIT {int(limit)}",
                    *params,
                )
            ]
            twhere = "" if institution_id is None else " AND institution_id = $2"
            durations: dict[str, list[float]] = {}
            for r in await conn.fetch(
                "SELECT flow_id, duration FROM turns WHERE ended_at >= $1" + twhere, *params
            ):
                durations.setdefault(r[0], []).append(float(r[1]))
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
            for r in await conn.fetch(
                "SELECT x.institution_id, COUNT(*) FROM checkpoints c JOIN executions x"
                " ON x.id = c.execution_id WHERE c.started_at >= $1 AND c.error IS NOT NULL"
                f"{tenant} GROUP BY x.institution_id",
                *params,
            ):
                errors.setdefault(r[0], [0, 0])[0] = int(r[1])
            for r in await conn.fetch(
                "SELECT institution_id, COUNT(*) FROM executions WHERE ended_at >= $1"
                f" AND status = 'failed'{twhere} GROUP BY institution_id",
                *params,
            ):
                errors.setdefault(r[0], [0, 0])[1] = int(r[1])
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
        async def run(conn: Connection) -> list[ErrorGroup]:
            params = _Params()
            where = _step_error_terms(
                StepErrorMatch(since=since),
                params,
                institution_id=institution_id,
                flow_id=flow_id,
            )
            groups = await conn.fetch(
                f"SELECT {STEP_ERROR_GROUP}, MAX(node_type), COUNT(*),"
                " COUNT(DISTINCT execution_id), MIN(at), MAX(at) FROM step_errors"
                f" WHERE {where} GROUP BY {STEP_ERROR_GROUP}"
                f" ORDER BY COUNT(*) DESC, MAX(at) DESC, {STEP_ERROR_GROUP}"
                f" LIMIT {int(limit)}",
                *params.values,
            )
            examples = await conn.fetch(
                _ERROR_EXAMPLES.format(where=where, inputs=int(inputs)), *params.values
            )
            return error_groups_from_rows(groups, examples)

        return await self._read(run)

    async def failed_steps(
        self, execution_ids: Sequence[str], match: StepErrorMatch
    ) -> dict[str, FailedStep]:
        ids = list(dict.fromkeys(execution_ids))

        async def run(conn: Connection) -> dict[str, FailedStep]:
            params = _Params(ids)
            where = _step_error_terms(match, params, alias="s.")
            rows = await conn.fetch(
                "SELECT DISTINCT ON (s.execution_id) s.execution_id, s.seq, s.node_id, s.at,"
                " s.input, c.error FROM step_errors s JOIN checkpoints c"
                " ON c.execution_id = s.execution_id AND c.seq = s.seq"
                f" WHERE s.execution_id = ANY($1::text[]) AND {where}"
                " ORDER BY s.execution_id, s.seq DESC",
                *params.values,
            )
            return {row[0]: row_to_failed_step(row) for row in rows}

        return await self._read(run) if ids else {}

    async def purge_logs(self, ended_before: float, *, limit: int = 10_000) -> int:
        async def run(conn: Connection) -> int:
            # ids come from a sequence and are never handed out twice: the newest line
            # may go like any other (SQLite needs a placeholder there, PostgreSQL not)
            status = await conn.execute(
                "DELETE FROM execution_logs WHERE id IN (SELECT l.id FROM executions e"
                " JOIN execution_logs l ON l.execution_id = e.id"
                " WHERE e.ended_at < $1 LIMIT $2)",
                ended_before,
                limit,
            )
            return _count(status)

        return await self._write(run)

    # erasure and retention (trilha.store.erasure) ----------------------------------------

    async def forget_contact(
        self, institution_id: str, contact_id: str, *, record: ErasureRecord
    ) -> Erased:
        async def run(conn: Connection) -> Erased:
            return await erasure_postgres.forget(
                conn, institution_id, contact_id=contact_id, record=record
            )

        return await self._write(run)

    async def forget_executions(
        self, institution_id: str, execution_ids: Sequence[str], *, record: ErasureRecord
    ) -> Erased:
        async def run(conn: Connection) -> Erased:
            return await erasure_postgres.forget(
                conn, institution_id, contact_id=None, execution_ids=execution_ids, record=record
            )

        return await self._write(run)

    async def expired_executions(
        self,
        ended_before: float,
        *,
        institution_id: str | None = None,
        exclude: Sequence[str] = (),
        limit: int = 500,
    ) -> list[tuple[str, str]]:
        async def run(conn: Connection) -> list[tuple[str, str]]:
            return await erasure_postgres.expired(
                conn, ended_before, institution_id=institution_id, exclude=exclude, limit=limit
            )

        return await self._read(run)

    async def erasures(self, institution_id: str, *, limit: int = 100) -> list[ErasureRecord]:
        async def run(conn: Connection) -> list[ErasureRecord]:
            return await erasure_postgres.listed(conn, institution_id, limit)

        return await self._read(run)

    async def save_alert(self, state: AlertState, *, expected: AlertState | None) -> bool:
        async def run(conn: Connection) -> bool:
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
                state.rule,
                state.instance,
            )
            if expected is None:
                status = await conn.execute(
                    "INSERT INTO alerts (state, severity, value, threshold, summary,"
                    " active_at, fired_at, resolved_at, updated_at, rule, instance)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                    " ON CONFLICT (rule, instance) DO NOTHING",
                    *values,
                )
            else:
                status = await conn.execute(
                    "UPDATE alerts SET state = $1, severity = $2, value = $3, threshold = $4,"
                    " summary = $5, active_at = $6, fired_at = $7, resolved_at = $8,"
                    " updated_at = $9 WHERE rule = $10 AND instance = $11 AND state = $12"
                    " AND updated_at = $13",
                    *values,
                    expected.status.value,
                    expected.updated_at,
                )
            if _count(status) != 1:
                return False
            if expected is None or expected.status is not state.status:
                await conn.execute(
                    "INSERT INTO alert_history (rule, instance, state, value, summary, at)"
                    " VALUES ($1, $2, $3, $4, $5, $6)",
                    state.rule,
                    state.instance,
                    state.status.value,
                    state.value,
                    state.summary,
                    state.updated_at,
                )
            return True

        return await self._write(run)

    async def alerts(self) -> list[AlertState]:
        async def run(conn: Connection) -> list[AlertState]:
            rows = await conn.fetch(
                "SELECT rule, instance, state, severity, value, threshold, summary, active_at,"
                " fired_at, resolved_at, updated_at FROM alerts ORDER BY rule, instance"
            )
            return [row_to_alert(r) for r in rows]

        return await self._read(run)

    async def alert_history(self, *, limit: int = 50) -> list[AlertState]:
        async def run(conn: Connection) -> list[AlertState]:
            rows = await conn.fetch(
                "SELECT h.rule, h.instance, h.state, a.severity, h.value, a.threshold,"
                " h.summary, NULL::float8, NULL::float8, NULL::float8, h.at"
                " FROM alert_history h"
                " LEFT JOIN alerts a ON a.rule = h.rule AND a.instance = h.instance"
                " ORDER BY h.id DESC LIMIT $1",
                limit,
            )
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
        async def run(conn: Connection) -> list[Execution]:
            found: list[Execution] = []
            cursor: tuple[Any, Any] | None = before
            # a corrupted row is left out, not allowed to hide the others or to cut a
            # page short (a short page reads as the last one): fetch on past it
            while len(found) < limit:
                want = limit - len(found)
                params = _Params()
                terms = _execution_terms(where, params)
                if cursor is not None:
                    terms.append(
                        f"(created_at, id) < ({params.add(cursor[0])}, {params.add(cursor[1])})"
                    )
                sql = f"SELECT {EXEC_COLUMNS} FROM executions"
                if terms:
                    sql += " WHERE " + " AND ".join(terms)
                sql += f" ORDER BY created_at DESC, id DESC LIMIT {params.add(want)}"
                rows = await conn.fetch(sql, *params.values)
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
        async def run(conn: Connection) -> int:
            params = _Params()
            terms = _execution_terms(where, params)
            if before is not None:
                terms.append(
                    f"(created_at, id) < ({params.add(before[0])}, {params.add(before[1])})"
                )
            sql = "SELECT 1 FROM executions"
            if terms:
                sql += " WHERE " + " AND ".join(terms)
            sql = f"SELECT count(*) FROM ({sql} LIMIT {params.add(limit)}) AS matched"
            return int(await conn.fetchval(sql, *params.values))

        return await self._read(run)

    # bulk actions --------------------------------------------------------------------------

    async def create_bulk_job(self, job: BulkJob, *, max_running: int) -> BulkJob:
        async def run(conn: Connection) -> BulkJob:
            return await bulk_postgres.create(conn, job, max_running)

        return await self._write(run)

    async def get_bulk_job(self, job_id: str) -> BulkJob | None:
        async def run(conn: Connection) -> BulkJob | None:
            return await bulk_postgres.get(conn, job_id)

        return await self._read(run)

    async def claim_bulk_job(
        self, owner: str, *, now: float, lease_seconds: float, job_id: str | None = None
    ) -> BulkJob | None:
        async def run(conn: Connection) -> BulkJob | None:
            return await bulk_postgres.claim(
                conn, owner, now=now, lease_seconds=lease_seconds, job_id=job_id
            )

        return await self._write(run)

    async def save_bulk_progress(
        self, job: BulkJob, *, owner: str, now: float, lease_until: float
    ) -> bool:
        async def run(conn: Connection) -> bool:
            return await bulk_postgres.save(
                conn, job, owner=owner, now=now, lease_until=lease_until
            )

        return await self._write(run)

    async def bulk_jobs(
        self, *, institution_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[BulkJob]:
        async def run(conn: Connection) -> list[BulkJob]:
            return await bulk_postgres.listed(conn, institution_id, status, limit)

        return await self._read(run)

    # channel webhooks ----------------------------------------------------------------------

    async def receive_channel_webhook(
        self, channel: str, body: bytes, *, now: float, keys: Sequence[str] = ()
    ) -> int:
        async def run(conn: Connection) -> int:
            return await webhooks_postgres.receive(conn, channel, body, now, keys)

        return await self._write(run)

    async def claim_channel_webhooks(
        self, channel: str, owner: str, *, now: float, lease_seconds: float, limit: int
    ) -> list[ChannelWebhook]:
        async def run(conn: Connection) -> list[ChannelWebhook]:
            return await webhooks_postgres.claim(
                conn, channel, owner, now=now, lease_seconds=lease_seconds, limit=limit
            )

        return await self._write(run)

    async def release_channel_webhooks(self, webhook_ids: Sequence[int], *, owner: str) -> int:
        if not webhook_ids:
            return 0

        async def run(conn: Connection) -> int:
            return await webhooks_postgres.release(conn, webhook_ids, owner)

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
        async def run(conn: Connection) -> bool:
            return await webhooks_postgres.settle(
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
        async def run(conn: Connection) -> list[ChannelWebhook]:
            return await webhooks_postgres.listed(conn, channel, limit=limit, status=status)

        return await self._read(run)

    async def purge_channel_webhooks(self, before: float, *, limit: int = 10_000) -> int:
        async def run(conn: Connection) -> int:
            return await webhooks_postgres.purge(conn, before, limit)

        return await self._write(run)

    # triggers ----------------------------------------------------------------------------

    async def put_triggers(
        self, institution_id: str, triggers: list[dict[str, Any]], *, now: float, actor: str
    ) -> StoredTriggers:
        async def run(conn: Connection) -> StoredTriggers:
            await conn.execute(
                "INSERT INTO triggers (institution_id, triggers, updated_at, updated_by)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (institution_id) DO UPDATE SET"
                " triggers = excluded.triggers, updated_at = excluded.updated_at,"
                " updated_by = excluded.updated_by",
                institution_id,
                dumps(triggers),
                now,
                actor,
            )
            return StoredTriggers(institution_id, triggers, now, actor)

        return await self._write(run)

    async def get_triggers(self, institution_id: str) -> StoredTriggers | None:
        async def run(conn: Connection) -> StoredTriggers | None:
            row = await conn.fetchrow(
                "SELECT triggers, updated_at, updated_by FROM triggers WHERE institution_id = $1",
                institution_id,
            )
            if row is None:
                return None
            return StoredTriggers(institution_id, orjson.loads(row[0]), row[1], row[2])

        return await self._read(run)

    async def delete_triggers(self, institution_id: str) -> bool:
        async def run(conn: Connection) -> bool:
            status = await conn.execute(
                "DELETE FROM triggers WHERE institution_id = $1", institution_id
            )
            return _count(status) > 0

        return await self._write(run)

    async def create_api_key(self, key: ApiKey) -> None:
        async def run(conn: Connection) -> None:
            await conn.execute(
                "INSERT INTO api_keys (key_id, institution_id, role, secret_hash, name,"
                " created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                key.key_id,
                key.institution_id,
                key.role,
                key.secret_hash,
                key.name,
                key.created_at,
                key.revoked_at,
            )

        await self._write(run)

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        async def run(conn: Connection) -> ApiKey | None:
            row = await conn.fetchrow(
                f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_id = $1", key_id
            )
            return None if row is None else row_to_api_key(row)

        return await self._read(run)

    async def list_api_keys(self) -> list[ApiKey]:
        async def run(conn: Connection) -> list[ApiKey]:
            rows = await conn.fetch(
                f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id"
            )
            return [row_to_api_key(r) for r in rows]

        return await self._read(run)

    async def revoke_api_key(self, key_id: str, *, now: float) -> bool:
        async def run(conn: Connection) -> bool:
            status = await conn.execute(
                "UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL",
                now,
                key_id,
            )
            return _count(status) == 1

        return await self._write(run)

    async def remembered_response(self, scope: str, key: str) -> StoredResponse | None:
        async def run(conn: Connection) -> StoredResponse | None:
            return await _stored_response(conn, scope, key)

        return await self._read(run)

    async def remember_response(
        self, scope: str, key: str, response: StoredResponse
    ) -> StoredResponse:
        async def run(conn: Connection) -> StoredResponse:
            # the first writer wins: a concurrent retry reads back the response kept
            await conn.execute(
                "INSERT INTO idempotency (scope, key, request_hash, status, body, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, key) DO NOTHING",
                scope,
                key,
                response.request_hash,
                response.status,
                json_or_none(response.body),
                response.created_at,
            )
            kept = await _stored_response(conn, scope, key)
            if kept is None:  # pragma: no cover - the row was written or was there
                raise StoreError(f"idempotency record {scope}/{key} vanished")
            return kept

        return await self._write(run)

    async def purge_responses(self, before: float) -> int:
        async def run(conn: Connection) -> int:
            return _count(
                await conn.execute("DELETE FROM idempotency WHERE created_at < $1", before)
            )

        return await self._write(run)

    async def trail_since(
        self,
        after_id: int,
        *,
        limit: int = 500,
        execution_id: str | None = None,
        institution_id: str | None = None,
    ) -> list[TrailEvent]:
        async def run(conn: Connection) -> list[TrailEvent]:
            horizon = await self._trail_horizon(conn)
            if horizon <= after_id:
                return []
            # the log table leads: its id range, or the (execution_id, id) index for one
            # execution; a line whose execution is gone still goes out (LEFT JOIN), so
            # that a stream never stalls on it
            params = _Params(after_id, horizon)
            sql = (
                "SELECT l.id, l.execution_id, l.level, l.message, l.at, l.node_id,"
                " l.node_type, l.context, e.institution_id, e.flow_id, e.status"
                " FROM execution_logs l LEFT JOIN executions e ON e.id = l.execution_id"
                " WHERE l.id > $1 AND l.id <= $2"
            )
            if execution_id is not None:
                sql += f" AND l.execution_id = {params.add(execution_id)}"
            if institution_id is not None:
                sql += f" AND e.institution_id = {params.add(institution_id)}"
            sql += f" ORDER BY l.id LIMIT {params.add(limit)}"
            return [row_to_trail_event(r) for r in await conn.fetch(sql, *params.values)]

        return await self._read(run)

    async def last_trail_id(self) -> int:
        return await self._read(self._trail_horizon)

    async def _trail_horizon(self, conn: Connection) -> int:
        """The newest trail id such that no smaller id can still appear.

        One statement reads the newest visible id, then the transactions running in
        this database (their xids, from ``pg_stat_activity``). Whoever holds a smaller
        id that is not visible took it before that newest line was committed, so it
        is either committed by now or among those running; once they all ended, every
        id up to the newest one is committed or never will be (rolled back)."""
        row = await conn.fetchrow(
            "SELECT COALESCE((SELECT max(id) FROM execution_logs), 0),"
            " ARRAY(SELECT backend_xid::text FROM pg_stat_activity"
            " WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
            " AND datname = current_database())"
        )
        assert row is not None
        top, running = int(row[0]), list(row[1])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _TRAIL_WAIT_SECONDS
        pause = 0.0005
        while running:
            if loop.time() > deadline:
                log.warning(
                    "store.trail_wait_timeout",
                    store=self.where,
                    seconds=_TRAIL_WAIT_SECONDS,
                    hint="a write transaction has been open this long (see pg_stat_activity)",
                )
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)
            running = list(
                await conn.fetchval(
                    "SELECT ARRAY(SELECT backend_xid::text FROM pg_stat_activity"
                    " WHERE backend_xid::text = ANY($1::text[]))",
                    running,
                )
            )
        return top


# helpers over a connection ---------------------------------------------------------------

#: when an execution's lease can be claimed ($1 is now): none, expired, or held by an
#: owner that stopped its heartbeat
_LEASE_FREE = (
    "(lease_expires_at IS NULL OR lease_expires_at < $1"
    " OR lease_owner IN (SELECT worker_id FROM workers WHERE alive_until < $1))"
)
_INSERT_EXECUTION = (
    f"INSERT INTO executions ({', '.join(EXEC_FIELDS)})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(EXEC_FIELDS) + 1))})"
)
#: a step commit: everything but the id and the fencing token, under the fencing token
_UPDATE_EXECUTION = (
    "UPDATE executions SET "
    + _numbered((*COMMIT_FIELDS, "lease_owner", "lease_expires_at"))
    + f" WHERE id = ${len(COMMIT_FIELDS) + 3} AND fencing_token = ${len(COMMIT_FIELDS) + 4}"
    + f" AND lease_owner = ${len(COMMIT_FIELDS) + 5}"
)
_INSERT_STEP_ERROR = (
    f"INSERT INTO step_errors ({STEP_ERROR_COLUMNS})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(STEP_ERROR_COLUMNS.split(',')) + 1))})"
)
#: the newest failure of each distinct input per error group, newest first, ``inputs``
#: of each group (the group's newest failure is its first row: its example)
_ERROR_EXAMPLES = (
    f"SELECT {STEP_ERROR_GROUP}, input, execution_id, type, message FROM ("
    f" SELECT *, ROW_NUMBER() OVER (PARTITION BY {STEP_ERROR_GROUP}"
    "  ORDER BY at DESC, execution_id DESC, seq DESC) AS n FROM ("
    f"  SELECT {STEP_ERROR_GROUP}, input, execution_id, type, message, at, seq,"
    f"  ROW_NUMBER() OVER (PARTITION BY {STEP_ERROR_GROUP}, input"
    "   ORDER BY at DESC, execution_id DESC, seq DESC) AS per_input"
    "  FROM step_errors WHERE {where}) AS distinct_inputs WHERE per_input = 1) AS ranked"
    " WHERE n <= {inputs} ORDER BY n"
)
#: every column but the id ($1..$29), by id ($30); operator_write adds its guards as $31..
_UPDATE_EXECUTION_BY_ID = (
    "UPDATE executions SET "
    + _numbered((*EXEC_FIELDS[1:], "lease_owner", "lease_expires_at"))
    + f" WHERE id = ${len(EXEC_FIELDS) + 2}"
)
if len(EXEC_FIELDS) + 2 != 30:
    raise RuntimeError("the execution columns changed: renumber operator_write's guards")


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("inf")


def _stored_flow(row: asyncpg.Record) -> StoredFlow:
    return StoredFlow(row[0], row[1], orjson.loads(row[2]), row[3])


async def _applied(conn: Connection | asyncpg.Connection[asyncpg.Record]) -> set[int]:
    """The migrations a database has applied (none when it has no trilha schema)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return set()
    return {int(r[0]) for r in await conn.fetch("SELECT version FROM schema_migrations")}


async def _notify(conn: Connection) -> None:
    """Wake the listening workers when this transaction commits (several in one
    transaction are folded into one by PostgreSQL)."""
    await conn.execute(f"NOTIFY {WAKE_CHANNEL}")


async def _has_pending_reply(conn: Connection, execution_id: str) -> bool:
    """Whether a reply waits to be applied (a waiting execution must then wake now)."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM inbox WHERE execution_id = $1 AND applied_at IS NULL)",
            execution_id,
        )
    )


async def _has_pending_input(conn: Connection, ex: Execution) -> bool:
    """Whether what a waiting execution waits for has arrived: a reply, or for a
    ``wait_event`` node a signal of its event (the replies then wait for a question)."""
    event = waited_event(ex.waiting_for)
    if event is None:
        return await _has_pending_reply(conn, ex.id)
    return await _pending_signal(conn, ex.id, event, ()) is not None


async def _pending_signal(
    conn: Connection, execution_id: str, event: str, skip: Sequence[int]
) -> Signal | None:
    """The oldest signal of ``event`` not consumed (nor in ``skip``)."""
    row = await conn.fetchrow(
        f"SELECT {SIGNAL_COLUMNS} FROM signals WHERE execution_id = $1 AND event = $2"
        " AND consumed_at IS NULL AND NOT (id = ANY($3::bigint[])) ORDER BY id LIMIT 1",
        execution_id,
        event,
        list(skip),
    )
    return None if row is None else row_to_signal(row)


async def _signal_row(conn: Connection, execution_id: str, signal_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {SIGNAL_COLUMNS} FROM signals WHERE execution_id = $1 AND signal_id = $2",
        execution_id,
        signal_id,
    )


async def _inbox_row(
    conn: Connection, institution_id: str, conversation_id: str, message_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {INBOX_COLUMNS} FROM inbox WHERE institution_id = $1"
        " AND conversation_id = $2 AND message_id = $3",
        institution_id,
        conversation_id,
        message_id,
    )


async def _insert_transitions(conn: Connection, transitions: list[Transition]) -> None:
    """Reasons are log text (an error quoting a URL with a CPF): masked on the way in."""
    if transitions:
        await conn.executemany(
            "INSERT INTO transitions (execution_id, source, target, reason, actor, node_id, at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
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


async def _insert_turns(conn: Connection, turns: list[TurnRecord]) -> None:
    if turns:
        await conn.executemany(
            "INSERT INTO turns (execution_id, institution_id, flow_id, flow_version, started_at,"
            " ended_at, duration, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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


async def _insert_logs(conn: Connection, logs: list[LogRecord]) -> None:
    """Every trail line goes through here, whoever wrote it, so personal data and
    secrets are masked in one place. Called only after the transaction wrote a row of
    its own (it has its xid before it takes trail ids: see ``_trail_horizon``)."""
    if logs:
        logs = [masked_record(r) for r in logs]
        await conn.executemany(
            "INSERT INTO execution_logs"
            " (execution_id, at, level, message, node_id, node_type, context)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                (r.execution_id, r.at, r.level, r.message, r.node_id, r.node_type, dumps(r.context))
                for r in logs
            ],
        )


async def _cancel_row(
    conn: Connection,
    execution_id: str,
    source: ExecutionStatus | None,
    now: float,
    reason: str,
) -> None:
    """Cancel an execution, bumping the fencing token so a worker that holds it cannot
    commit afterwards. A row that cannot be read is cancelled by SQL alone."""
    row = await conn.fetchrow(f"SELECT {EXEC_COLUMNS} FROM executions WHERE id = $1", execution_id)
    ex = readable(row) if row is not None else None
    if ex is not None:
        ex.status, ex.outcome = ExecutionStatus.CANCELLED, Outcome.CANCELLED
        ex.wake_at = ex.due_at = ex.waiting_for = None
        ex.ended_at = ex.updated_at = now
        ex.fencing_token += 1
        await conn.execute(
            _UPDATE_EXECUTION_BY_ID, *execution_params(ex)[1:], None, None, execution_id
        )
    else:
        await conn.execute(
            "UPDATE executions SET status = 'cancelled', outcome = 'cancelled', wake_at = NULL,"
            " waiting_for = NULL, due_at = NULL, ended_at = $1, updated_at = $1,"
            " fencing_token = fencing_token + 1, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id = $2",
            now,
            execution_id,
        )
    await _insert_transitions(
        conn, [Transition(execution_id, source, ExecutionStatus.CANCELLED, reason, now, "engine")]
    )
    # the trail says it too, as for any other end (a replaced execution's story ends)
    node = ex.current_node_id if ex is not None else None
    await _insert_logs(conn, replaced_lines(execution_id, source, node, reason, now))


async def _quarantine(
    conn: Connection, execution_id: str, kind: str, reason: str, row: Any, now: float
) -> None:
    """Keep a copy of a record that cannot be read, for diagnosis; never deleted."""
    await conn.execute(
        "INSERT INTO quarantine (execution_id, kind, reason, payload, at)"
        " VALUES ($1, $2, $3, $4, $5)",
        execution_id,
        kind,
        reason,
        dumps([str(v) for v in row]) if row is not None else None,
        now,
    )
    await _insert_logs(
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


async def _stored_response(conn: Connection, scope: str, key: str) -> StoredResponse | None:
    row = await conn.fetchrow(
        "SELECT request_hash, status, body, created_at FROM idempotency"
        " WHERE scope = $1 AND key = $2",
        scope,
        key,
    )
    if row is None:
        return None
    return StoredResponse(row[0], int(row[1]), lenient_json(row[2]), row[3])


def _step_error_terms(
    match: StepErrorMatch,
    params: _Params,
    *,
    institution_id: str | None = None,
    flow_id: str | None = None,
    alias: str = "",
) -> str:
    """The AND-ed SQL terms over step_errors (columns prefixed with ``alias``) that
    admit the failed steps ``match`` admits, of ``institution_id`` and ``flow_id`` when
    given; ``TRUE`` when nothing narrows."""
    terms: list[str] = []
    for column, value in match.equalities(institution_id=institution_id, flow_id=flow_id):
        terms.append(f"{alias}{column} = {params.add(value)}")
    if match.since is not None:
        terms.append(f"{alias}at >= {params.add(match.since)}")
    return " AND ".join(terms) or "TRUE"


def _execution_terms(where: ExecutionFilter | None, params: _Params) -> list[str]:
    """The AND-ed terms of a listing's filter (PostgreSQL's planner picks the index)."""
    terms: list[str] = []
    if where is None:
        return terms
    for column, value in (
        ("conversation_id", where.conversation_id),
        ("contact_id", where.contact_id),
        ("institution_id", where.institution_id),
        ("flow_id", where.flow_id),
        ("status", where.status),
        ("outcome", where.outcome),
    ):
        if value is not None:
            terms.append(f"{column} = {params.add(value)}")
    if where.failed_step is not None:
        found = _step_error_terms(where.failed_step, params, institution_id=where.institution_id)
        terms.append(f"id IN (SELECT execution_id FROM step_errors WHERE {found})")
    if where.with_errors:
        terms.append(
            "(error IS NOT NULL OR EXISTS (SELECT 1 FROM checkpoints c"
            " WHERE c.execution_id = executions.id AND c.error IS NOT NULL))"
        )
    if where.stuck_before is not None:
        # find_stuck's rule with one cutoff instead of (now, grace): active, not paused,
        # not leased since before the cutoff, and no wake time or one (or a due time)
        # before the cutoff
        cutoff = params.add(where.stuck_before)
        terms += [
            ACTIVE_SQL,
            "status <> 'paused'",
            f"(lease_expires_at IS NULL OR lease_expires_at < {cutoff})",
            f"(wake_at IS NULL OR wake_at < {cutoff} OR due_at < {cutoff})",
        ]
    return terms
