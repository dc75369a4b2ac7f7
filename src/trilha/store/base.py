"""The store protocol, in the engine's words rather than SQL.

Every backend (SQLite today, PostgreSQL next) implements :class:`Store` and
passes the same contract suite (``tests/contract``). The engine never sees a
cursor or a dialect: it claims executions, commits steps under a fencing
token, and reads what it needs back.

The guarantees each backend must keep:

* :meth:`Store.commit_step` is atomic: the execution row, its checkpoints,
  transitions, outbox messages, applied inbox rows, handoffs and logs land
  together or not at all, and only while the caller's fencing token is the
  current one (else :class:`~trilha.errors.StaleLease`).
* :meth:`Store.claim_due` never hands the same execution to two live leases. A
  lease is live until it expires, or until its owner stops its heartbeat
  (:meth:`Store.heartbeat`): a killed worker's executions are taken over within
  the heartbeat's grace, not the lease's length.
* Trail ids become visible in increasing order: a reader of
  :meth:`Store.trail_since` never sees id ``n + 1`` while ``n`` may still come
  (live streams resume after the last id they sent).
* The trail is a log sink: every stored log line's context and every transition
  reason are masked (:func:`trilha.observability.masking.masked_record`) on the
  way in, whoever wrote them.
* :meth:`Store.deliver_inbound` stores a message durably before returning, and
  a repeated ``message_id`` for the conversation is acknowledged, not stored twice.
* :meth:`Store.deliver_signal` likewise for a signal and its ``signal_id`` per
  execution; a step commit marks the signals it consumed (``applied_signals``), and
  one that leaves the execution waiting for an event with a signal of it pending
  makes it due now, as for a reply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from trilha.core.alerts import AlertState
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
)
from trilha.core.signals import Signal
from trilha.core.states import ExecutionStatus
from trilha.errors import LimitExceeded
from trilha.store.erasure import Erased, ErasureRecord


def replaced_lines(
    execution_id: str, source: ExecutionStatus | None, node_id: str | None, reason: str, at: float
) -> list[LogRecord]:
    """The trail lines of an execution cancelled because a new one replaced it in its
    conversation (``create_execution(replace=True)``): the same two lines the engine
    writes for any end, so every backend's replaced executions read alike."""
    source_value = source.value if source is not None else None
    return [
        LogRecord(
            execution_id,
            "INFO",
            "execution.state_changed",
            at,
            node_id,
            None,
            {"from": source_value, "to": "cancelled", "reason": reason},
        ),
        LogRecord(
            execution_id,
            "INFO",
            "execution.ended",
            at,
            node_id,
            None,
            {"status": "cancelled", "outcome": "cancelled", "reason": reason},
        ),
    ]


@dataclass(slots=True)
class StepCommit:
    """Everything one run of steps produced, committed in one transaction."""

    execution: Execution
    lease_owner: str
    fencing_token: int
    checkpoints: list[Checkpoint] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    outbox: list[OutboundMessage] = field(default_factory=list)
    #: (inbox id, the step seq that consumed it): orders the transcript
    applied_inbox: list[tuple[int, int]] = field(default_factory=list)
    #: (signal id, the step seq that consumed it): a signal is applied once
    applied_signals: list[tuple[int, int]] = field(default_factory=list)
    handoffs: list[Handoff] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    #: turns that ended in this run of steps (the execution now waits or ended)
    turns: list[TurnRecord] = field(default_factory=list)
    #: give the lease up after the commit (the execution waits or ended)
    release: bool = True
    #: a person takes the conversation over with this commit: the contact's replies
    #: not yet applied are marked said to the person (held) and queued for the desk
    hold_inbox: bool = False


@dataclass(frozen=True, slots=True)
class Claimed:
    """An execution leased to a worker, with the input that woke it, if any."""

    execution: Execution
    inbound: InboundMessage | None = None
    #: why the stored row could not be read; ``execution`` then holds what could be
    #: salvaged (identity, lease) and the engine restores it from a checkpoint
    corruption: str | None = None
    #: the owner of the lease this claim took over (expired, or its owner stopped
    #: beating): a worker died or lost track of the execution mid-turn
    taken_from: str | None = None


@dataclass(frozen=True, slots=True)
class InboundResult:
    status: Literal["accepted", "duplicate"]
    message: InboundMessage


@dataclass(frozen=True, slots=True)
class SignalResult:
    """What :meth:`Store.deliver_signal` did: ``accepted`` (stored now) or ``duplicate``
    (this ``signalId`` was received already: ``signal`` is the first one, unchanged)."""

    status: Literal["accepted", "duplicate"]
    signal: Signal


@dataclass(frozen=True, slots=True)
class AgentMessageResult:
    """What :meth:`Store.record_agent_message` did: ``accepted`` (queued now) or
    ``duplicate`` (this ``messageId`` was recorded before: the first one, unchanged)."""

    status: Literal["accepted", "duplicate"]
    message: OutboundMessage
    #: the platform's id of the person's message
    message_id: str


@dataclass(frozen=True, slots=True)
class DeskMessage:
    """A contact's message said while a person held the conversation, to forward to the
    desk (:meth:`Store.claim_desk_messages`)."""

    id: int
    message: InboundMessage
    #: attempts made so far
    attempts: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """A bot message's delivery: the outbox's state (as stored: ``pending``, ``sent``,
    ``dead``) and the furthest receipt the channel reported (``None``: none yet).
    Errors as stored: not masked."""

    outbox_id: int
    execution_id: str
    idempotency_key: str
    text: str
    step_seq: int
    created_at: float
    status: str
    attempts: int
    next_attempt_at: float | None
    last_error: str | None
    receipt: str | None = None
    receipt_at: float | None = None
    receipt_error: str | None = None


@dataclass(frozen=True, slots=True)
class ReceiptResult:
    """What a delivery receipt did: ``duplicate`` (this status was reported for the
    message already: nothing written), ``advanced`` (it moved the delivery state; a late
    ``sent`` after ``read`` is recorded but does not), and the delivery after it."""

    duplicate: bool
    advanced: bool
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class TemplateResend:
    """What :meth:`Store.resend_as_template` did with a message the channel failed
    because the contact's window was closed: ``resent`` (queued again as its template,
    due now), ``switched`` (it was already: nothing written), ``no_template`` (it has
    none: nothing re-sent), ``in_flight`` (a dispatcher holds it right now: ask again
    later) or ``not_found`` (no such message in the institution's conversation)."""

    outcome: Literal["resent", "switched", "no_template", "in_flight", "not_found"]
    execution_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelWebhook:
    """A channel's webhook body as it arrived, verified and kept before it was answered
    (:meth:`Store.receive_channel_webhook`): no institution's until it is read, since
    one body may speak for several numbers."""

    id: int
    #: whose webhook (``whatsapp``)
    channel: str
    #: the raw body, byte for byte (what the signature covered)
    body: bytes
    received_at: float
    #: ``pending`` (to process, or retrying), ``done`` or ``failed`` (given up)
    status: str
    #: times it was claimed
    attempts: int
    next_attempt_at: float
    #: updates of the body already handled: a retry resumes there
    progress: int = 0
    #: ``done``: what was skipped in it; ``pending``: why the last attempt stopped;
    #: ``failed``: why it was given up
    last_error: str | None = None
    processed_at: float | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class StoredTriggers:
    """An institution's triggers as ``PUT /v1/triggers`` set them (wire form, in order)."""

    institution_id: str
    triggers: list[dict[str, Any]]
    updated_at: float
    #: who set them (``key:<id>``)
    updated_by: str | None = None


@dataclass(frozen=True, slots=True)
class StoredFlow:
    flow_id: str
    version: int
    definition: dict[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class StoredCalendar:
    """An institution's calendar as stored (``PUT /v1/calendars/{name}``): its canonical
    wire form (:meth:`trilha.core.calendars.CalendarDefinition.wire`)."""

    institution_id: str
    name: str
    definition: dict[str, Any]
    created_at: float
    updated_at: float


def too_many_calendars(institution_id: str, limit: int) -> LimitExceeded:
    """The refusal of a calendar past ``[api] max_calendars``, the same from every backend."""
    return LimitExceeded(
        f"institution '{institution_id}' has {limit} calendars, the most it may keep"
        " ([api] max_calendars); delete one or change an existing one",
        limit=limit,
    )


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored: only a hash of its secret is kept (shown once, at creation)."""

    key_id: str
    #: the tenant the key acts for; an admin key spans institutions whatever this says
    institution_id: str
    role: Literal["viewer", "operator", "admin"]
    #: SHA-256 of the secret, hex; API keys are long random strings, so a fast hash
    #: suffices (no password stretching needed)
    secret_hash: str
    created_at: float
    name: str | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The answer given to a request made with an ``Idempotency-Key``, kept to replay."""

    request_hash: str
    status: int
    body: Any
    created_at: float


@dataclass(frozen=True, slots=True)
class StepErrorMatch:
    """Which failed steps count (``GET /v1/executions?errorNode=..&since=..``); ``None``
    fields do not narrow. A failed step is a checkpoint with an error."""

    #: only steps that started at or after this
    since: float | None = None
    node_id: str | None = None
    #: the error's kind (:class:`~trilha.core.policies.ErrorKind` values)
    kind: str | None = None
    #: the HTTP status the dependency answered
    status: int | None = None
    dependency: str | None = None

    def equalities(
        self, *, institution_id: str | None = None, flow_id: str | None = None
    ) -> list[tuple[str, str | int]]:
        """The ``step_errors`` columns this match (of ``institution_id`` and ``flow_id``
        when given) pins to a value, for the backends to write their own SQL with;
        ``since`` is a range, left to them."""
        pinned: tuple[tuple[str, str | int | None], ...] = (
            ("institution_id", institution_id),
            ("flow_id", flow_id),
            ("node_id", self.node_id),
            ("kind", self.kind),
            ("status", self.status),
            ("dependency", self.dependency),
        )
        return [(column, value) for column, value in pinned if value is not None]


@dataclass(frozen=True, slots=True)
class FailedStep:
    """An execution's failed step, with the input it failed on: the request of an http
    or ai step (``METHOD URL``), else the step's own input. As stored: not masked."""

    execution_id: str
    seq: int
    node_id: str | None
    at: float
    input: Any
    error: Any


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """Failed steps alike: the same flow, node, dependency, error kind and HTTP status.
    ``type`` and ``message`` are the newest one's, as are ``inputs`` (distinct, newest
    first; as stored: not masked)."""

    flow_id: str
    node_id: str | None
    node_type: str | None
    dependency: str | None
    kind: str | None
    status: int | None
    type: str | None
    message: str | None
    #: failed steps
    count: int
    #: distinct executions they belong to
    executions: int
    first_seen: float
    last_seen: float
    example_execution_id: str
    inputs: list[Any]


@dataclass(frozen=True, slots=True)
class ExecutionFilter:
    """What ``GET /v1/executions`` narrows by; ``None`` fields do not filter."""

    institution_id: str | None = None
    status: str | None = None
    flow_id: str | None = None
    conversation_id: str | None = None
    contact_id: str | None = None
    #: only active executions (not ended, not paused) that hold no lease, or one that
    #: ran out before this, and that have no wake time or a wake time or due time before
    #: this: with ``now - grace`` here, what the sweeper would call stuck
    #: (:meth:`Store.find_stuck`) plus work overdue that no worker has claimed
    stuck_before: float | None = None
    #: only executions with an error now or a step that failed on the way
    with_errors: bool = False
    #: only ended executions with this outcome
    outcome: str | None = None
    #: only executions with a failed step that matches
    failed_step: StepErrorMatch | None = None


#: what a bulk job does to each execution it selects (the operator control of that name)
BulkAction = Literal["cancel", "pause", "resume", "retry"]


@dataclass(frozen=True, slots=True)
class BulkJob:
    """A bulk action (:mod:`trilha.engine.bulk`): an operator control applied to every
    execution ``selection`` matches, newest first, one at a time; ``cursor`` is the
    (created_at, id) of the last one handled, where a resumed job goes on. Counts are
    absolute: ``done = succeeded + skipped + failed``."""

    id: str
    institution_id: str
    actor: str
    action: BulkAction
    #: the filter as the caller gave it (wire JSON), shown back
    filter: dict[str, Any]
    #: the store's filter it meant at the start; its ``institution_id`` is the job's
    selection: ExecutionFilter
    reason: str | None
    total: int
    created_at: float
    updated_at: float
    #: ``running``, ``completed`` or ``failed`` (the job itself broke: ``errors`` says why)
    status: str = "running"
    done: int = 0
    succeeded: int = 0
    skipped: int = 0
    failed: int = 0
    #: the first few executions that failed: ``{"executionId", "reason"}``
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: the first few executions skipped (the action does not apply to them), likewise
    skips: list[dict[str, Any]] = field(default_factory=list)
    cursor: tuple[float, str] | None = None
    finished_at: float | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class TrailEvent:
    """One stored trail line with its global id (the SSE event id) and its execution's
    tenant and flow, so a stream can be filtered without another read."""

    id: int
    record: LogRecord
    institution_id: str
    flow_id: str
    status: str


@dataclass(frozen=True, slots=True)
class Stuck:
    """An active execution that nothing will move on by itself."""

    execution_id: str
    status: str
    reason: str


#: the outbox states a listing can ask for: waiting for (another) attempt, or given up
OutboxStatus = Literal["pending", "dead"]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """An outbound message as operators see it: where it stands in its delivery."""

    id: int
    idempotency_key: str
    execution_id: str
    institution_id: str
    conversation_id: str
    contact_id: str
    text: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: float | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Redrive:
    """What :meth:`Store.redrive_outbox` did: ``redriven`` (``item`` as it is now),
    ``not_found`` (absent, or another institution's) or ``sent`` (delivered already:
    nothing to send again)."""

    outcome: Literal["redriven", "not_found", "sent"]
    item: OutboxItem | None = None


def redriven_line(item: OutboxItem, *, actor: str, now: float) -> LogRecord:
    """The trail line of a redrive (``item`` as it was before it): the same in every
    backend, so the trail tells who sent a given-up message again, and after what."""
    return LogRecord(
        item.execution_id,
        "INFO",
        "message.redriven",
        now,
        None,
        None,
        {
            "idempotencyKey": item.idempotency_key,
            "actor": actor,
            "from": item.status,
            "attempts": item.attempts,
            "lastError": item.last_error,
        },
    )


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What is due now and what waits, for ``--until-idle`` and the metrics."""

    due: int
    leased: int
    waiting: int
    pending_outbox: int
    next_wake_at: float | None


@dataclass(frozen=True, slots=True)
class NodeTypeStats:
    node_type: str
    runs: int
    errors: int
    mean_seconds: float


@dataclass(frozen=True, slots=True)
class FlowTurnStats:
    flow_id: str
    turns: int
    mean_seconds: float
    p95_seconds: float
    max_seconds: float


@dataclass(frozen=True, slots=True)
class InstitutionErrors:
    institution_id: str
    errors: int
    failed_executions: int


@dataclass(frozen=True, slots=True)
class SlowNode:
    flow_id: str
    node_id: str
    node_type: str | None
    runs: int
    mean_seconds: float
    max_seconds: float


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Aggregates over the steps and turns since a time, for ``trilha stats``."""

    since: float
    node_types: list[NodeTypeStats]
    flows: list[FlowTurnStats]
    institutions: list[InstitutionErrors]
    slowest_nodes: list[SlowNode]


@dataclass(frozen=True, slots=True)
class LongestTurn:
    """The longest turn finished since a time or still running, for the slow-turn alert."""

    seconds: float
    execution_id: str
    running: bool


class Store(Protocol):
    """Durable state of flows, executions and their trail."""

    async def open(self) -> None:
        """Connect, and check the schema: apply pending migrations when the backend
        may (SQLite by default), else :class:`~trilha.errors.SchemaMismatch`."""

    async def close(self) -> None: ...

    async def migrate(self) -> list[str]:
        """Apply the pending migrations (``trilha migrate``); the names applied, oldest
        first (empty when the schema is current). Safe to run from many processes."""

    async def tamper(self, execution_id: str, target: str, garbage: str) -> bool:
        """Fault injection only (``trilha chaos``): write ``garbage`` over a stored
        execution's ``variables`` or ``current_node``, or over its latest checkpoint's
        state (``checkpoint``: the row's variables too, so recovery must walk back past
        it), bypassing every check, as a disk or a bad hand edit would. False when
        there was nothing to write over."""

    # liveness -------------------------------------------------------------------
    async def heartbeat(self, owners: Sequence[str], *, now: float, alive_until: float) -> None:
        """Record that the lease owners ``owners`` (a worker, its dispatcher) live until
        ``alive_until``. Past it, their leases are free to claim though not expired;
        ``alive_until <= now`` says they stopped."""

    def subscribe_wake(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (in the event loop) when another process makes work due
        now: a reply stored, an execution started. Returns the unsubscribe. A backend
        without notifications never calls it; workers poll in any case."""

    # flows ------------------------------------------------------------------
    async def publish_flow(self, flow_id: str, definition: dict[str, Any], at: float) -> int:
        """Store a flow version; an unchanged definition returns the latest version."""

    async def get_flow(self, flow_id: str, version: int | None = None) -> StoredFlow | None:
        """A version of a flow, the latest when ``version`` is ``None``."""

    async def list_flows(self) -> list[StoredFlow]:
        """The latest version of every flow."""

    # calendars ------------------------------------------------------------------
    async def put_calendar(
        self,
        institution_id: str,
        name: str,
        definition: dict[str, Any],
        *,
        now: float,
        limit: int,
    ) -> tuple[StoredCalendar, bool]:
        """Store the institution's calendar ``name`` (replacing one of that name), and
        whether it is new. A new one beyond ``limit`` calendars for the institution is
        refused with :class:`~trilha.errors.LimitExceeded`, atomically with the count
        (concurrent writers cannot both pass it)."""

    async def get_calendar(self, institution_id: str, name: str) -> StoredCalendar | None: ...

    async def list_calendars(
        self, institution_id: str, names: Sequence[str] | None = None
    ) -> list[StoredCalendar]:
        """The institution's calendars by name (only ``names``, when given), in one read."""

    async def delete_calendar(self, institution_id: str, name: str) -> bool:
        """Forget the institution's calendar ``name``; False when there was none."""

    # executions ---------------------------------------------------------------
    async def create_execution(
        self,
        execution: Execution,
        transition: Transition,
        logs: list[LogRecord],
        *,
        replace: bool = False,
    ) -> Execution:
        """Insert a new execution; :class:`ConversationBusy` if the conversation has
        an active one, unless ``replace`` (which cancels it in the same transaction)."""

    async def create_triggered(
        self,
        execution: Execution,
        transition: Transition,
        logs: list[LogRecord],
        message: InboundMessage,
        *,
        replace_reason: str | None = None,
    ) -> InboundResult:
        """Store the contact's ``message`` that starts ``execution`` (a trigger's, see
        :mod:`trilha.core.triggers`) and create the execution, in one transaction.

        The message is stored for the execution as applied at step 0: it is the
        execution's ``sys.trigger``, never a reply to its first question, and it opens
        the transcript. A ``message_id`` the conversation has stored already is a
        duplicate: nothing is created, and the stored message comes back
        (``"duplicate"``), so a platform's retry, or the same message delivered twice at
        once, starts one execution. An active execution in the conversation raises
        :class:`ConversationBusy`, unless ``replace_reason``: it is then cancelled with
        that reason (its trail says so) in the same transaction."""

    async def get_execution(self, execution_id: str) -> Execution:
        """The stored execution (:class:`ExecutionNotFound` if absent)."""

    async def latest_execution(self, institution_id: str | None, conversation_id: str) -> Execution:
        """The conversation's newest execution."""

    async def claim_due(
        self,
        worker_id: str,
        *,
        now: float,
        lease_seconds: float,
        limit: int,
        execution_id: str | None = None,
    ) -> list[Claimed]:
        """Lease up to ``limit`` executions whose wake time has come, bumping their
        fencing tokens; ``execution_id`` restricts the claim to one execution."""

    async def renew_lease(
        self, execution_id: str, worker_id: str, fencing_token: int, until: float
    ) -> None:
        """Extend a held lease (:class:`StaleLease` if it is no longer held)."""

    async def commit_step(self, commit: StepCommit, *, now: float) -> None:
        """Apply a step atomically under the fencing token (see module docstring)."""

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
        """Durably store a contact's message and wake the execution waiting for it.

        ``content`` is the message structured (a button reply, a photo, a location:
        :attr:`~trilha.core.execution.InboundMessage.content`), ``None`` for a plain
        text; ``text`` is always its plain rendering, for every reader of text alone.
        A duplicate keeps the first delivery's text and content."""

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
        """Durably store a signal for an execution, with its ``signal.received`` trail
        line, and wake the execution if it waits for ``event``.

        A repeated ``signal_id`` for the execution is a duplicate (the first signal is
        answered, whatever this one carries), also after the execution ended. Else an
        absent execution, or one of another institution than ``institution_id``
        (``None``: any), is :class:`ExecutionNotFound`; an ended one
        :class:`ExecutionEnded`; one with ``max_pending`` signals not consumed yet
        :class:`~trilha.errors.LimitExceeded`."""

    async def pending_signal(
        self, execution_id: str, event: str, *, skip: Sequence[int] = ()
    ) -> Signal | None:
        """The oldest signal of ``event`` the execution has not consumed (leaving out the
        ids in ``skip``: consumed by a step not committed yet)."""

    async def signals_for(self, execution_id: str) -> list[Signal]:
        """The execution's signals, pending and consumed, in the order they arrived."""

    async def pending_inbound(self, execution_id: str, *, limit: int) -> list[InboundMessage]:
        """The execution's messages not applied yet, oldest first, at most ``limit``."""

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
        """Give up a held lease with the execution due again at ``wake_at``, changing
        nothing else, with ``logs`` (the turn's lines so far) in the same transaction: a
        burst's window (``settings.debounceMs``), while the contact may still be typing.
        Unlike :meth:`commit_step`, replies waiting do not make it due now (they are what
        it waits past); a reply stored afterwards still does. :class:`StaleLease` when the
        lease is no longer held."""

    async def queue_stats(self, now: float, execution_id: str | None = None) -> QueueStats: ...

    async def operator_write(
        self,
        execution: Execution,
        *,
        expected_token: int,
        transitions: list[Transition],
        logs: list[LogRecord],
        now: float,
    ) -> Execution:
        """Overwrite an execution on an operator's behalf: only if its fencing token is
        still ``expected_token`` and its ``step_seq`` and ``updated_at`` are still those
        the caller read (a step commit moves those, not the token), else
        :class:`StaleLease`; bumping the token so a worker holding it cannot commit
        afterwards. Callers must not change those two fields."""

    async def quarantine(
        self, execution_id: str, *, kind: str, reason: str, payload: Any, now: float
    ) -> None:
        """Keep a record that failed its checks aside, for diagnosis; never deleted."""

    async def quarantined(self, execution_id: str) -> list[dict[str, Any]]: ...

    async def find_stuck(self, now: float, *, grace_seconds: float) -> list[Stuck]:
        """Active executions that nothing will move on: no wake time, or a wake time
        long past with no live lease, or a wait whose due time has passed."""

    async def reschedule(
        self, execution_id: str, *, wake_at: float, reason: str, now: float
    ) -> None:
        """Set an execution's wake time (the sweeper), logging why."""

    # outbox -------------------------------------------------------------------
    async def claim_outbox(
        self, dispatcher_id: str, *, now: float, lease_seconds: float, limit: int
    ) -> list[OutboundMessage]:
        """Lease pending outbound messages, oldest first."""

    async def release_outbox(self, dispatcher_id: str, message_ids: list[int]) -> None:
        """Give back ``dispatcher_id``'s leases of messages it claimed and did not try
        (an earlier message of their conversation failed first): they are due again at
        once, and the claim's rule that nothing overtakes an earlier message still
        holds them behind it, rather than their lease holding them for its full term."""

    async def mark_sent(
        self, message_ids: list[int], *, now: float, logs: Sequence[LogRecord] = ()
    ) -> None:
        """Record deliveries the channel accepted, with their trail lines
        (``message.delivered``) in the same transaction."""

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
        """Record a failed delivery; ``retry_at=None`` gives the message up (dead). The
        trail lines (``message.delivery_failed``, ``message.dead``) land with it.
        ``attempted=False``: the channel deferred it before trying (its own rate limit),
        so its attempts stay as they are."""

    async def list_outbox(
        self,
        status: OutboxStatus,
        *,
        institution_id: str | None = None,
        after: int | None = None,
        limit: int = 50,
    ) -> list[OutboxItem]:
        """Messages in ``status`` (of ``institution_id`` only, when given), oldest first
        (by id), after the id ``after`` (keyset pagination)."""

    async def count_dead_outbox(self, institution_id: str | None = None) -> int:
        """How many messages were given up (the dead-messages alert and gauge)."""

    async def redrive_outbox(
        self, message_id: int, *, institution_id: str | None, now: float, actor: str
    ) -> Redrive:
        """Make a dead or pending message due now with its attempts reset, writing a
        ``message.redriven`` trail line naming ``actor``, in one transaction. A message
        of another institution than ``institution_id`` (``None``: any) is not found; a
        sent one is left alone."""

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
        """Record the channel's receipt for the outbound message of ``idempotency_key``
        in the institution's conversation (``None``: no such message there), with a
        ``message.status`` trail line, in one transaction. A status already recorded
        for the message (for the platform's ``message_id`` of it, when given: a message
        sent again as its template is another) is a duplicate (nothing written); the
        delivery state moves only forward (:func:`trilha.core.delivery.advances`)."""

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
        """The channel failed the message of ``idempotency_key`` after accepting it, the
        contact's window being closed (``code``, Meta's ``131047``): in one transaction,
        switch its content to its template alternative
        (:func:`trilha.core.reengage.template_instead`) and make it pending, due now,
        its attempts kept, with a ``message.resent_as_template`` WARN line; only once:
        a message switched already is left alone. One with no template is left as it
        is, with a ``message.outside_window`` WARN line when ``first`` (the failure's
        first report). A message out with a dispatcher now is ``in_flight``; another
        institution's, or another conversation's, is not found."""

    async def deliveries(self, execution_id: str) -> list[Delivery]:
        """The execution's bot messages with their delivery, in transcript order (the
        step that sent them, then id)."""

    async def undelivered(self, execution_ids: Sequence[str], *, now: float) -> dict[str, int]:
        """How many messages of each execution are undelivered at ``now``
        (:func:`trilha.core.delivery.undelivered`), in one grouped query for a page
        of ids; executions with none are left out."""

    # channel webhooks -----------------------------------------------------------
    async def receive_channel_webhook(
        self, channel: str, body: bytes, *, now: float, keys: Sequence[str] = ()
    ) -> int:
        """Keep a verified webhook body durably (its id), due for processing now, with
        the conversations it names (``keys``, written in the same transaction; at most
        1,000 of up to 300 characters, :class:`ValueError` beyond): they order it
        among the channel's other bodies (:meth:`claim_channel_webhooks`)."""

    async def claim_channel_webhooks(
        self, channel: str, owner: str, *, now: float, lease_seconds: float, limit: int
    ) -> list[ChannelWebhook]:
        """Lease up to ``limit`` due ``pending`` bodies of ``channel``, oldest first,
        counting an attempt for each. A lease is live until it expires or its owner stops
        its heartbeat (:meth:`heartbeat`). A body is not handed out while an older
        ``pending`` body (under a live lease, or waiting for its retry) that is not
        handed out with it shares one of its conversation keys, so a conversation's
        bodies are processed in the order they were stored, whichever process claims
        them; bodies sharing none are not held back, and a ``done`` or ``failed`` body
        holds nothing back. Bodies handed out together are the claimer's to process in
        order (:meth:`release_channel_webhooks` for those it does not reach)."""

    async def release_channel_webhooks(self, webhook_ids: Sequence[int], *, owner: str) -> int:
        """Give back ``owner``'s leases of these ``pending`` bodies untouched, as though
        they had not been claimed (the attempt is not counted): the claimer stopped
        before them (an older body of their conversation is retried later). How many
        were given back."""

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
        """End ``owner``'s lease of a body: ``done``, ``failed`` (given up), or
        ``pending`` again, due at ``retry_at`` and resuming at update ``progress``;
        ``error`` says what was skipped or why it stopped. False (nothing written) when
        ``owner`` no longer holds the lease: another process took the body over."""

    async def channel_webhooks(
        self, channel: str, *, limit: int = 100, status: str | None = None
    ) -> list[ChannelWebhook]:
        """The channel's stored bodies (of ``status`` only, when given), oldest first."""

    async def purge_channel_webhooks(self, before: float, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` bodies ``done`` or ``failed`` before ``before``."""

    # trail --------------------------------------------------------------------
    async def transitions(self, execution_id: str) -> list[Transition]: ...

    async def checkpoints(self, execution_id: str) -> list[Checkpoint]: ...

    async def transcript(self, execution_id: str) -> list[TranscriptEntry]: ...

    async def outbox_for(self, execution_id: str) -> list[OutboundMessage]: ...

    async def logs(self, execution_id: str) -> list[LogRecord]: ...

    async def handoffs(self, execution_id: str) -> list[Handoff]: ...

    async def claim_handoff_notices(
        self, *, now: float, lease_seconds: float, limit: int
    ) -> list[tuple[int, Handoff]]:
        """Lease handoffs whose desk has not been told yet (oldest first)."""

    async def mark_handoff_notice(
        self, handoff_id: int, *, now: float, error: str | None, retry_at: float | None
    ) -> None:
        """Record a notice: sent (``error`` None), to retry at ``retry_at``, or given up."""

    # a person holds the conversation ---------------------------------------------------
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
        """Queue a person's message to the contact in the outbox, once per ``message_id``
        in the conversation (a repeat is ``duplicate`` with the first one, whatever the
        execution's state now), with its ``message.queued`` trail line, in one
        transaction. Only while a person holds the conversation's latest execution
        (:class:`~trilha.errors.NotHeld` otherwise; none at all:
        :class:`~trilha.errors.ExecutionNotFound`); it cancels the hold's return
        deadline (a person answered) and bumps the fencing token, so a worker that
        claimed the execution for that deadline cannot commit the return."""

    async def claim_desk_messages(
        self, *, now: float, lease_seconds: float, limit: int
    ) -> list[DeskMessage]:
        """Lease held contact messages the desk has not been given yet, oldest first:
        for each execution only its oldest one, and only once its handoff notice went
        out, so the desk reads them in the order the contact wrote them."""

    async def mark_desk_message(
        self, forward_id: int, *, now: float, error: str | None, retry_at: float | None
    ) -> None:
        """Record a forward: sent (``error`` None), or failed, to retry at ``retry_at``."""

    async def list_executions(
        self,
        *,
        limit: int = 100,
        where: ExecutionFilter | None = None,
        before: tuple[float, str] | None = None,
    ) -> list[Execution]:
        """Newest first (by ``created_at``, then id); ``before`` is the (created_at, id)
        of the last execution of the previous page (keyset pagination: stable while
        new executions arrive)."""

    async def count_executions(
        self,
        *,
        where: ExecutionFilter | None = None,
        before: tuple[float, str] | None = None,
        limit: int,
    ) -> int:
        """How many executions :meth:`list_executions` would list (from ``before`` on),
        counting at most ``limit`` (a bound on the read: ``limit`` means "that many or
        more")."""

    # bulk actions -------------------------------------------------------------------
    async def create_bulk_job(self, job: BulkJob, *, max_running: int) -> BulkJob:
        """Store a new ``running`` job, unleased; :class:`~trilha.errors.LimitExceeded`
        when its institution has ``max_running`` running already (checked atomically
        with the insert: concurrent starts cannot both pass it)."""

    async def get_bulk_job(self, job_id: str) -> BulkJob | None: ...

    async def claim_bulk_job(
        self, owner: str, *, now: float, lease_seconds: float, job_id: str | None = None
    ) -> BulkJob | None:
        """Lease the oldest ``running`` job (``job_id`` only, when given) under no live
        lease (expired, or its owner stopped its heartbeat): one process runs a job at a
        time, and one left by a process that died is taken over. ``None``: none free."""

    async def save_bulk_progress(
        self, job: BulkJob, *, owner: str, now: float, lease_until: float
    ) -> bool:
        """Write ``job``'s counts, notes, cursor and status (``completed`` or ``failed``
        end it and give the lease up; ``running`` extends it to ``lease_until``), only
        while ``owner`` holds the lease of a ``running`` job; False (nothing written)
        otherwise: another process took it over."""

    async def bulk_jobs(
        self, *, institution_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[BulkJob]:
        """Jobs, newest first (of ``institution_id``, in ``status``, when given)."""

    async def flow_versions(self, flow_id: str) -> list[StoredFlow]:
        """Every stored version of a flow, oldest first (empty when there is none)."""

    async def execution_ids(
        self, *, after: str | None = None, limit: int = 500, institution_id: str | None = None
    ) -> list[str]:
        """Execution ids in id order, after ``after`` (of ``institution_id`` only, when
        given): every row, readable or not (what an invariant check walks; listings
        leave corrupted rows out)."""

    async def inbox_for(self, execution_id: str) -> list[InboundMessage]:
        """The contact's messages routed to this execution, in arrival order."""

    async def last_heard_at(self, execution_id: str) -> float | None:
        """When the execution last heard from its side of the conversation: the latest
        of its contact's messages routed to it (applied or not) and of its returns from
        ``paused`` (a person gave it back); ``None`` when neither happened. A session's
        silence (``settings.sessionTimeoutSeconds``) counts from here."""

    async def last_inbound_at(self, institution_id: str, conversation_id: str) -> float | None:
        """When the contact last wrote in the institution's conversation: the newest of
        its messages in the inbox, whatever execution they went to (a trigger's message
        included); ``None``: never. A channel's service window counts from here."""

    async def count_by_status(self, institution_id: str | None = None) -> dict[str, int]:
        """How many executions are in each status (statuses with none are left out);
        with ``institution_id``, that institution's only."""

    async def count_by_outcome(self, institution_id: str | None = None) -> dict[str, int]:
        """How many ended executions have each outcome (outcomes with none are left
        out); with ``institution_id``, that institution's only."""

    async def waiting_for_dependencies(self, institution_id: str | None = None) -> dict[str, int]:
        """How many executions wait for each dependency (``recovering``, waiting for
        ``dependency``; the one named in their error); with ``institution_id``, that
        institution's only."""

    async def status_since(self, execution_ids: Sequence[str]) -> dict[str, float]:
        """When each execution entered its current state (its latest transition);
        ids with no transition are left out."""

    # observability --------------------------------------------------------------
    async def step_outcomes(self, since: float) -> tuple[int, int]:
        """(node executions, failed ones) among steps started at or after ``since``."""

    async def longest_turn(self, since: float, now: float) -> LongestTurn | None:
        """The longest turn that ended at or after ``since``, or is still running at
        ``now`` (its length so far), whichever is longer; ``None`` when there are none."""

    async def stats(
        self, since: float, *, institution_id: str | None = None, limit: int = 10
    ) -> StoreStats:
        """Success by node type, turn times by flow (mean, p95, max), errors by
        institution and the ``limit`` slowest nodes, over steps and turns since ``since``."""

    async def error_groups(
        self,
        since: float,
        *,
        institution_id: str | None = None,
        flow_id: str | None = None,
        limit: int = 50,
        inputs: int = 10,
    ) -> list[ErrorGroup]:
        """The failed steps since ``since``, grouped by flow, node, dependency, error
        kind and HTTP status: the ``limit`` biggest groups, biggest first, each with up
        to ``inputs`` distinct failing inputs (newest first)."""

    async def failed_steps(
        self, execution_ids: Sequence[str], match: StepErrorMatch
    ) -> dict[str, FailedStep]:
        """Each execution's latest failed step that ``match`` admits (executions with
        none are left out)."""

    async def purge_logs(self, ended_before: float, *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` trail lines of executions that ended before
        ``ended_before`` (log retention); a live execution keeps its whole trail.
        Returns how many lines went."""

    # erasure (LGPD) and retention: trilha.store.erasure --------------------------------
    async def forget_contact(
        self, institution_id: str, contact_id: str, *, record: ErasureRecord
    ) -> Erased:
        """Delete (or redact, where a count must stay) everything stored of the contact
        in the institution, in one transaction, auditing it as ``record`` (which names
        no one). An execution still active is deleted too: its row going fences any
        worker holding it. An unknown contact erases nothing (zeros)."""

    async def forget_executions(
        self, institution_id: str, execution_ids: Sequence[str], *, record: ErasureRecord
    ) -> Erased:
        """The same erasure for the named executions of the institution (retention), at
        most :data:`~trilha.store.erasure.MAX_EXECUTIONS` at once."""

    async def expired_executions(
        self,
        ended_before: float,
        *,
        institution_id: str | None = None,
        exclude: Sequence[str] = (),
        limit: int = 500,
    ) -> list[tuple[str, str]]:
        """``(institution, execution id)`` of executions that ended before
        ``ended_before``, oldest first: of ``institution_id``, else of every institution
        not in ``exclude``."""

    async def erasures(self, institution_id: str, *, limit: int = 100) -> list[ErasureRecord]:
        """The institution's erasure records, newest first."""

    async def save_alert(self, state: AlertState, *, expected: AlertState | None) -> bool:
        """Store an alert's new state only if the stored one is still ``expected``
        (``None``: no row yet); False when another process moved it first, so that
        one notification goes out per change however many processes evaluate."""

    async def alerts(self) -> list[AlertState]:
        """Every alert's current state, by rule and instance."""

    async def alert_history(self, *, limit: int = 50) -> list[AlertState]:
        """The latest alert state changes, newest first."""

    # triggers -----------------------------------------------------------------------
    async def put_triggers(
        self, institution_id: str, triggers: list[dict[str, Any]], *, now: float, actor: str
    ) -> StoredTriggers:
        """Replace the institution's triggers as a whole (an empty list is a set of none,
        which still replaces those of the configuration)."""

    async def get_triggers(self, institution_id: str) -> StoredTriggers | None:
        """The institution's triggers as set through the API; ``None`` when it never set
        any (or deleted them): the configuration's apply."""

    async def delete_triggers(self, institution_id: str) -> bool:
        """Forget the institution's API-set triggers; False when it had none."""

    # the API ------------------------------------------------------------------------
    async def create_api_key(self, key: ApiKey) -> None: ...

    async def get_api_key(self, key_id: str) -> ApiKey | None: ...

    async def list_api_keys(self) -> list[ApiKey]: ...

    async def revoke_api_key(self, key_id: str, *, now: float) -> bool:
        """Revoke a key; False when there is no such key (or it was revoked already)."""

    async def remembered_response(self, scope: str, key: str) -> StoredResponse | None:
        """The response stored for an ``Idempotency-Key`` in ``scope`` (tenant + route)."""

    async def remember_response(
        self, scope: str, key: str, response: StoredResponse
    ) -> StoredResponse:
        """Keep ``response`` for the key unless one is stored already; returns the one
        that is kept (the first writer wins, so concurrent retries agree)."""

    async def purge_responses(self, before: float) -> int:
        """Forget idempotency records older than ``before``."""

    async def trail_since(
        self,
        after_id: int,
        *,
        limit: int = 500,
        execution_id: str | None = None,
        institution_id: str | None = None,
    ) -> list[TrailEvent]:
        """Trail lines with an id above ``after_id``, oldest first: what live event
        streams send, resumable from the last id a client saw."""

    async def last_trail_id(self) -> int:
        """The newest trail line's id (0 when there is none): where a new stream starts."""
