"""Fixtures for the store contract suite: one parametrised store over every backend.

Every test in this folder (except the ``test_sqlite_*`` modules) speaks only the
:class:`~trilha.store.base.Store` protocol, so the same suite runs against each
backend: a small factory class registered in :data:`BACKENDS` by name.

- ``"sqlite"``: a real SQLite file in the test's ``tmp_path``.
- ``"postgresql"``: a fresh database per test on the session's throwaway server
  (``postgres_cluster``, :mod:`pgcluster`), ``CREATE DATABASE t_<n> TEMPLATE
  trilha_template``, dropped after the test; the template is created and
  migrated once per session, so a test pays for a copy (tens of ms), not for
  the migrations.

:class:`Make` builds the records the engine would build (executions, step
commits, checkpoints, transitions, outbound messages, logs, handoffs), so a
test states only what it is about.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pgcluster import PgCluster, quote_ident, run_sync  # tests/ is on sys.path (rootdir mode)
from trilha.core.execution import (
    Checkpoint,
    Execution,
    Handoff,
    LogRecord,
    OutboundMessage,
    Transition,
    checksum,
)
from trilha.core.states import ExecutionStatus, Outcome
from trilha.store.base import Claimed, InboundResult, StepCommit, Store
from trilha.store.postgres import PostgresStore
from trilha.store.sqlite import SQLiteStore

S = ExecutionStatus

#: the suite's "now": every test moves time by hand from here
T0 = 1_800_000_000.0
#: the lease length the suite claims with
LEASE = 30.0

# --------------------------------------------------------------------------- backends


class Backend:
    """One database for one test; ``open`` gives a new handle (connection) on it."""

    name: ClassVar[str]

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self._handles: list[Store] = []

    @classmethod
    def for_test(cls, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
        """Build the backend for one test; a server backend pulls its session fixtures here,
        so only the runs that use it start a server."""
        return cls(tmp_path)

    def _new(self) -> Store:
        raise NotImplementedError

    async def setup(self) -> None:
        """Create the empty database (nothing to do for a file)."""

    async def teardown(self) -> None:
        """Close every handle still open (and drop the database, for a server)."""
        while self._handles:
            await self._handles.pop().close()

    async def open(self) -> Store:
        """A new, opened store on this test's database."""
        store = self._new()
        await store.open()
        self._handles.append(store)
        return store

    async def close(self, store: Store) -> None:
        self._handles.remove(store)
        await store.close()

    async def reopen(self, store: Store) -> Store:
        """Close ``store`` and open the same database again (a process restart)."""
        await self.close(store)
        return await self.open()


class SQLiteBackend(Backend):
    """A real SQLite file under ``tmp_path``."""

    name = "sqlite"

    @property
    def path(self) -> Path:
        return self.tmp_path / "contract.db"

    def _new(self) -> Store:
        return SQLiteStore(self.path)


@dataclasses.dataclass
class PostgresTemplate:
    """The session's migrated template database, and the names of the tests' copies."""

    cluster: PgCluster
    name: str = "trilha_template"
    _numbers: Iterator[int] = dataclasses.field(default_factory=lambda: itertools.count(1))

    def next_database(self) -> str:
        """``t_1``, ``t_2``, ...: unique for the session (the server is the session's own)."""
        return f"t_{next(self._numbers)}"


class PostgresBackend(Backend):
    """A fresh database per test, cloned from the migrated template and dropped after."""

    name = "postgresql"

    def __init__(self, tmp_path: Path, template: PostgresTemplate) -> None:
        super().__init__(tmp_path)
        self.template = template
        self.cluster = template.cluster
        self.database = template.next_database()

    @classmethod
    def for_test(cls, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
        return cls(tmp_path, request.getfixturevalue("postgres_template"))

    @property
    def url(self) -> str:
        return self.cluster.url(self.database)

    def _new(self) -> Store:
        return PostgresStore(self.url)

    async def setup(self) -> None:
        """Copy the template (it has no sessions: it refuses connections)."""
        await self.cluster.create_database_async(self.database, template=self.template.name)

    async def teardown(self) -> None:
        """Close the handles, then drop the database, ending any session left (``FORCE``)."""
        try:
            await super().teardown()
        finally:
            await self.cluster.drop_database_async(self.database)


@pytest.fixture(scope="session")
def postgres_template(postgres_cluster: PgCluster) -> PostgresTemplate:
    """Create and migrate ``trilha_template`` once per session.

    Synchronous (through :func:`pgcluster.run_sync`'s own thread and loop): it
    is set up from inside the first PostgreSQL test's ``backend`` fixture, whose
    loop is running. It then refuses connections, since ``CREATE DATABASE ...
    TEMPLATE`` fails while the template has a session.
    """
    template = PostgresTemplate(postgres_cluster)

    async def migrate() -> None:
        store = PostgresStore(postgres_cluster.url(template.name), auto_migrate=False)
        try:
            await store.migrate()
        finally:
            await store.close()

    postgres_cluster.create_database(template.name)
    run_sync(migrate())
    postgres_cluster.execute(
        f"ALTER DATABASE {quote_ident(template.name)} WITH ALLOW_CONNECTIONS false"
    )
    return template


#: backend name -> backend class; the ``store`` fixture is parametrised over these names
BACKENDS: dict[str, type[Backend]] = {
    "sqlite": SQLiteBackend,
    "postgresql": PostgresBackend,
}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The parametrisation point: one backend per name in :data:`BACKENDS`."""
    made = BACKENDS[request.param].for_test(request, tmp_path)
    await made.setup()
    try:
        yield made
    finally:
        await made.teardown()


@pytest.fixture
async def store(backend: Backend) -> Store:
    """An opened store on a fresh database of the backend under test."""
    return await backend.open()


@pytest.fixture
async def sqlite_backend(tmp_path: Path) -> AsyncIterator[SQLiteBackend]:
    """The SQLite backend alone, for the SQLite-specific modules."""
    made = SQLiteBackend(tmp_path)
    await made.setup()
    try:
        yield made
    finally:
        await made.teardown()


# --------------------------------------------------------------------------- builders


@dataclasses.dataclass(frozen=True)
class Trail:
    """Everything the protocol can read back about one execution."""

    execution: Execution
    checkpoints: list[Checkpoint]
    transitions: list[Transition]
    outbox: list[OutboundMessage]
    logs: list[LogRecord]
    handoffs: list[Handoff]
    transcript: list[Any]


class Make:
    """Builders for the records a store keeps, with unique ids per test."""

    now = T0
    lease = LEASE

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    # executions --------------------------------------------------------------------
    def execution(
        self,
        *,
        institution: str = "inst-1",
        conversation: str | None = None,
        status: ExecutionStatus = S.RUNNING,
        wake_at: float | None = T0,
        created_at: float = T0,
        node: str | None = "start",
        variables: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Execution:
        n = next(self._ids)
        if status is S.WAITING_INPUT:
            fields.setdefault("waiting_for", "input")  # as the engine writes a question's wait
        return Execution(
            id=fields.pop("id", f"ex-{n}"),
            institution_id=institution,
            conversation_id=conversation or f"conv-{n}",
            contact_id=fields.pop("contact_id", f"contact-{n}"),
            flow_id=fields.pop("flow_id", "onboarding"),
            flow_version=fields.pop("flow_version", 1),
            status=status,
            current_node_id=node,
            variables={"name": "Ana"} if variables is None else variables,
            created_at=created_at,
            updated_at=created_at,
            wake_at=wake_at,
            start_variables={"name": "Ana"},
            **fields,
        )

    def started(self, ex: Execution, reason: str = "started") -> Transition:
        return Transition(ex.id, None, S.RUNNING, reason, ex.created_at, "api", ex.current_node_id)

    def log(
        self, ex: Execution, message: str = "execution.started", *, level: str = "INFO", **ctx: Any
    ) -> LogRecord:
        return LogRecord(
            ex.id, level, message, ex.updated_at, ex.current_node_id, None, {"flowId": "x", **ctx}
        )

    async def create(self, store: Store, *, replace: bool = False, **fields: Any) -> Execution:
        """Build an execution and store it with its birth transition and log line."""
        ex = self.execution(**fields)
        return await store.create_execution(ex, self.started(ex), [self.log(ex)], replace=replace)

    async def claim(
        self, store: Store, ex: Execution, *, now: float = T0, worker: str = "w1"
    ) -> Claimed:
        """Claim exactly ``ex`` (fails the test if the store does not hand it out)."""
        claims = await store.claim_due(
            worker, now=now, lease_seconds=LEASE, limit=10, execution_id=ex.id
        )
        assert [c.execution.id for c in claims] == [ex.id]
        return claims[0]

    # the pieces of a step ------------------------------------------------------------
    def checkpoint(self, ex: Execution, seq: int, *, at: float = T0) -> Checkpoint:
        state = ex.state_payload()
        return Checkpoint(
            ex.id,
            seq,
            ex.current_node_id,
            "message",
            ex.status,
            state,
            checksum(state),
            at,
            0.002,
            input={"text": "oi"},
            output={"sent": [seq]},
            error=None,
            attempt=1,
        )

    def transition(
        self,
        ex: Execution,
        source: ExecutionStatus | None,
        target: ExecutionStatus,
        reason: str = "step",
        *,
        at: float = T0,
    ) -> Transition:
        return Transition(ex.id, source, target, reason, at, "engine", ex.current_node_id)

    def outbound(
        self, ex: Execution, seq: int, text: str, n: int = 0, *, at: float = T0
    ) -> OutboundMessage:
        return OutboundMessage(
            idempotency_key=f"{ex.id}:{seq}:{n}",
            execution_id=ex.id,
            institution_id=ex.institution_id,
            conversation_id=ex.conversation_id,
            contact_id=ex.contact_id,
            channel=ex.channel,
            text=text,
            created_at=at,
            step_seq=seq,
            payload={"n": n},
        )

    def handoff(self, ex: Execution, queue: str = "vip-desk", *, at: float = T0) -> Handoff:
        return Handoff(
            ex.id, ex.institution_id, ex.conversation_id, ex.contact_id, queue, "vip customer", at
        )

    def step(
        self,
        ex: Execution,
        *,
        status: ExecutionStatus = S.RUNNING,
        node: str = "next",
        texts: Iterable[str] = ("hello",),
        applied: Iterable[int] = (),
        wake_at: float | None = None,
        waiting_for: str | None = None,
        due_at: float | None = None,
        handoffs: int = 0,
        release: bool = True,
        token: int | None = None,
        owner: str | None = None,
        at: float = T0,
        variables: dict[str, Any] | None = None,
    ) -> StepCommit:
        """The commit of one step after ``ex`` (as claimed): the next seq, a checkpoint,
        a transition if the status changes, one outbox message per text, a log line."""
        nxt = dataclasses.replace(
            ex,
            variables=dict(ex.variables) if variables is None else variables,
            node_state=dict(ex.node_state),
            start_variables=dict(ex.start_variables),
        )
        nxt.step_seq = seq = ex.step_seq + 1
        nxt.status = status
        nxt.current_node_id = node
        nxt.wake_at = wake_at
        nxt.waiting_for = waiting_for
        if status is S.WAITING_INPUT and waiting_for is None:
            nxt.waiting_for = "input"  # as the engine writes a question's wait
        nxt.due_at = due_at
        if status.terminal:
            nxt.outcome = Outcome.COMPLETED if status is S.COMPLETED else Outcome(status.value)
            nxt.ended_at = at
        transitions = (
            [] if status == ex.status else [self.transition(nxt, ex.status, status, at=at)]
        )
        return StepCommit(
            execution=nxt,
            lease_owner=ex.lease_owner if owner is None else owner,
            fencing_token=ex.fencing_token if token is None else token,
            checkpoints=[self.checkpoint(nxt, seq, at=at)],
            transitions=transitions,
            outbox=[self.outbound(nxt, seq, text, i, at=at) for i, text in enumerate(texts)],
            applied_inbox=[(i, seq) for i in applied],
            handoffs=[self.handoff(nxt, f"desk-{i}", at=at) for i in range(handoffs)],
            logs=[self.log(nxt, "node.exit", level="DEBUG", seq=seq)],
            release=release,
        )

    async def inbound(
        self,
        store: Store,
        ex: Execution,
        text: str,
        *,
        message_id: str | None = None,
        now: float = T0,
    ) -> InboundResult:
        """Deliver a contact's message to ``ex``'s conversation."""
        return await store.deliver_inbound(
            institution_id=ex.institution_id,
            conversation_id=ex.conversation_id,
            message_id=message_id or f"msg-{next(self._ids)}",
            contact_id=ex.contact_id,
            text=text,
            payload={"text": text},
            now=now,
        )

    # reading back --------------------------------------------------------------------
    @staticmethod
    def released(ex: Execution, **changes: Any) -> Execution:
        """``ex`` as the store gives it back after a commit that released the lease."""
        return dataclasses.replace(
            ex, **({"lease_owner": None, "lease_expires_at": None} | changes)
        )

    async def trail(self, store: Store, execution_id: str) -> Trail:
        return Trail(
            await store.get_execution(execution_id),
            await store.checkpoints(execution_id),
            await store.transitions(execution_id),
            await store.outbox_for(execution_id),
            await store.logs(execution_id),
            await store.handoffs(execution_id),
            await store.transcript(execution_id),
        )


@pytest.fixture
def make() -> Make:
    """Builders for executions, step commits and their parts."""
    return Make()
