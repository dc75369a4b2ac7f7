"""Executions: start one, list them, and read one's state, history, steps, logs and
transcript.

An execution's JSON is the one ``trilha show --json`` prints
(:func:`trilha.views.execution_view`), so a script moves between the CLI and the
API without a translation. Another institution's executions do not exist for a key
(404 on every route, never 403); an admin key sees every institution's.

Starting answers 503 with Retry-After, and starts nothing, while more executions are
due than ``api.max_queue_due`` (the workers are behind: accepting more would only
make every conversation slower); replies to conversations already running are still
accepted (``POST /v1/conversations/{id}/messages``), since refusing those would
strand contacts mid-flow.

The wire models below document the answers in ``/openapi.json``; the routes build
the same JSON from :mod:`trilha.views` (the acceptance tests hold the two together).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from trilha.api.app import state_of
from trilha.api.auth import Principal, Viewer, Writer
from trilha.api.cursors import decode_cursor, encode_cursor
from trilha.api.idempotency import IdempotencyKey, idempotent, request_key
from trilha.api.listing import DEPENDENCY_PATTERN as DEPENDENCY_PATTERN
from trilha.api.listing import NODE_ID_PATTERN as NODE_ID_PATTERN
from trilha.api.listing import STORED_FLOW_ID_PATTERN as STORED_FLOW_ID_PATTERN
from trilha.api.listing import ErrorKindName as ErrorKindName
from trilha.api.listing import OutcomeName as OutcomeName
from trilha.api.listing import StatusName as StatusName
from trilha.api.problems import Problem, not_found, problems
from trilha.api.routes.flows import owner_for, resolve
from trilha.api.wire import PRINTABLE_ID_PATTERN, JsonObject
from trilha.channels.whatsapp.channel import start_problem
from trilha.config import Config
from trilha.core.execution import Execution, iso, verified_state
from trilha.core.flow import FLOW_ID_PATTERN
from trilha.core.frames import step_flows
from trilha.core.wire import WireModel
from trilha.errors import (
    ConversationBusy,
    CorruptedRecord,
    ExecutionNotFound,
    TrilhaError,
)
from trilha.inbound import Language, with_language
from trilha.observability import trail
from trilha.store.base import ExecutionFilter, StepErrorMatch, Store
from trilha.transcript import transcript_view
from trilha.views import (
    execution_summary,
    execution_view,
    failed_step_view,
    step_view,
    transition_view,
)

router = APIRouter(prefix="/v1/executions", tags=["executions"])

#: ids trilha makes (executions) and ids the platform makes (conversations, contacts):
#: any printable text, no control or invisible characters (trilha.api.wire)
EXECUTION_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
EXTERNAL_ID_PATTERN = PRINTABLE_ID_PATTERN
#: seconds a client is asked to wait when the queue is over ``api.max_queue_due``
BACKPRESSURE_RETRY_AFTER = 5
#: how long one reading of the queue's depth serves the back-pressure check
QUEUE_CHECK_SECONDS = 0.25
MAX_PAGE = 500

LevelName = Literal[
    "DEBUG",
    "INFO",
    "WARN",
    "WARNING",
    "ERROR",
    "CRITICAL",
    "debug",
    "info",
    "warn",
    "warning",
    "error",
    "critical",
]
#: how far ahead of the server's clock ``since`` may be (a client's clock runs ahead)
SINCE_AHEAD_SECONDS = 86_400

ExecutionIdPath = Annotated[
    str,
    Path(
        alias="executionId",
        pattern=EXECUTION_ID_PATTERN,
        max_length=100,
        description="The execution's id.",
    ),
]
ExternalId = Annotated[str, Field(min_length=1, max_length=200, pattern=EXTERNAL_ID_PATTERN)]


class DeliveryStateOut(WireModel):
    """The channel's furthest report on a bot message (``POST .../statuses``)."""

    status: Literal["sent", "delivered", "read", "failed"]
    at: str | None
    error: str | None = Field(default=None, description="Why it failed (masked).")


class TranscriptEntryOut(WireModel):
    """A line of the conversation; bot messages also tell where their delivery stands."""

    sender: Literal["bot", "contact", "agent"] = Field(
        alias="from",
        description="`agent`: a person holding the conversation wrote it (`agentId`).",
    )
    text: str = Field(description="The message as plain text (a structured one's rendering).")
    at: str
    content: dict[str, Any] | None = Field(
        default=None,
        description="Present when the message was more than a text. A bot message's"
        " `type` is `text`, `buttons`, `list`, `media` or `location`, with those fields as"
        " the channel received them; a contact's is what it sent: `type` (`text`, `button`,"
        " `list`, `media`, `location`), `text`, `replyId`, `media` (`kind`, `url`,"
        " `mimeType`, `caption`, `filename`), `location` (`latitude`, `longitude`, `name`,"
        " `address`), `language`.",
    )
    agent_id: str | None = Field(default=None, description="Who wrote an `agent` line.")
    outbox: Literal["queued", "pending", "sent", "dead"] | None = Field(
        default=None,
        description="Bot messages: queued (not tried yet), pending (failed, to be tried"
        " again), sent (the channel accepted it) or dead (given up).",
    )
    attempts: int | None = None
    next_attempt_at: str | None = Field(default=None, description="Queued or pending: when.")
    last_error: str | None = Field(default=None, description="The last failed try (masked).")
    delivery: DeliveryStateOut | None = Field(
        default=None, description="The channel's receipt, null before any."
    )
    undelivered: bool | None = Field(
        default=None,
        description="Bot messages: dead, failed, or pending after a failed try or for"
        " longer than 30 s.",
    )


class TransitionOut(WireModel):
    source: StatusName | None = Field(alias="from", description="None: the execution's start.")
    to: StatusName
    reason: str
    actor: str = Field(description="Who: `engine`, `api`, `key:<id>`, `cli:<user>`...")
    node_id: str | None
    at: str


class HeldByOut(WireModel):
    """Who holds the conversation: a person of the handoff's queue (``waitingFor: human``)."""

    queue: str | None
    reason: str | None = Field(description="The handoff's reason, as rendered.")
    since: str | None = Field(description="When the person took it over.")
    node_id: str | None = Field(description="The handoff node that handed it over.")
    return_at: str | None = Field(
        description="When the bot takes it back by itself (`returnAfterSeconds`); null once"
        " a person answered, or with no such deadline."
    )


class ExecutionSummaryOut(WireModel):
    """The execution's own fields (what a listing shows)."""

    execution_id: str
    flow_id: str = Field(description="The stored flow id: `INSTITUTION/FLOW` for own flows.")
    flow_version: int
    institution_id: str
    conversation_id: str
    contact_id: str
    contact_masked: str = Field(description="The contact id masked as in the logs, to show.")
    status: StatusName
    status_since: str | None = Field(
        description="When it entered its current state (time in state)."
    )
    outcome: OutcomeName | None
    current_node_id: str | None
    waiting_for: str | None = Field(
        description="input, timer, retry, dependency, operator, human (a person holds the"
        " conversation)..."
    )
    due_at: str | None
    wake_at: str | None = Field(description="When a worker should take it next (null: not due).")
    lease_owner: str | None = Field(description="The worker holding it, if one does.")
    lease_expires_at: str | None = Field(description="Until when that worker holds it.")
    paused_from: StatusName | None = Field(
        description="The state an operator paused it from (`resume` returns there); null"
        " while a person holds the conversation."
    )
    held_by: HeldByOut | None = Field(
        description="A person holds the conversation (`waitingFor: human`); else null."
    )
    attempts: int
    steps: int
    variables: dict[str, Any]
    error: dict[str, Any] | None = Field(
        description="The latest error (masked): what the execution failed on last."
    )
    first_error: dict[str, Any] | None = Field(
        description="The error that started its trouble, the first since it was last"
        " healthy (masked): a `500` stays here behind a later `circuit open` in `error`."
    )
    waiting_for_dependency: str | None = Field(
        description="The dependency it waits for (recovering until its breaker lets a"
        " call through), else null."
    )
    undelivered: int = Field(
        description="How many of its messages are undelivered: dead, reported failed by"
        " the channel, or pending after a failed try or for longer than 30 s."
    )
    created_at: str | None
    updated_at: str | None
    ended_at: str | None


class FailedStepOut(WireModel):
    """The listed execution's latest failed step that the error filters match."""

    seq: int
    node_id: str | None
    at: str | None
    input: Any = Field(
        description="What it failed on (masked): the request of an http or ai step"
        " (`METHOD URL`), else the step's input."
    )
    error: dict[str, Any] | None = Field(description="The step's error (masked).")


class ListedExecutionOut(ExecutionSummaryOut):
    failed_step: FailedStepOut | None = Field(
        default=None, description="Only with an error filter (`errorNode`, `since`...)."
    )


class ControlOut(WireModel):
    allowed: bool
    reason: str | None = Field(description="Why not, when not allowed: `it is completed`...")


class FrameOut(WireModel):
    """One flow of the call stack (sub-flows that return)."""

    flow_id: str = Field(description="The stored flow id, pinned to `version`.")
    version: int
    node_id: str | None = Field(
        description="A caller: its `subflow` node, where it goes on when the sub-flow"
        " ends. The running frame: the current node."
    )
    running: bool = Field(description="The frame that runs now (the last one).")
    variables: dict[str, Any] | None = Field(
        default=None,
        description="A caller's variables, kept while its sub-flow runs; absent for the"
        " running frame (its variables are the execution's `variables`).",
    )


class ExecutionOut(ExecutionSummaryOut):
    """The whole execution: its fields, its call stack, its transcript, its state history
    and which operator controls it allows now (for this key)."""

    stack: list[FrameOut] = Field(
        description="The flows it runs, the first it started in first, the running one"
        " last: one frame outside a sub-flow."
    )
    transcript: list[TranscriptEntryOut]
    history: list[TransitionOut]
    controls: dict[
        Literal[
            "pause", "resume", "cancel", "advance", "retry", "variables", "message", "handback"
        ],
        ControlOut,
    ]


class ExecutionPage(WireModel):
    executions: list[ListedExecutionOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: done.")


class AuditEntryOut(WireModel):
    """One operator operation (who, when, what, why), including those that changed no
    state (an advance of a running execution, a change of variables)."""

    operation: str
    actor: str | None
    reason: str | None
    source: str | None = Field(alias="from")
    to: str | None
    at: str | None
    node_id: str | None
    details: dict[str, Any]


class HistoryOut(WireModel):
    execution_id: str
    history: list[TransitionOut]
    audit: list[AuditEntryOut]


class StepOut(WireModel):
    seq: int
    node_id: str | None
    node_type: str | None
    status: StatusName
    started_at: str | None
    duration: float
    attempt: int
    input: Any
    output: Any
    error: Any
    flow_id: str | None = Field(
        default=None,
        description="The flow the step's node belongs to (sub-flows, jumps); null when"
        " its checkpoint fails its checks.",
    )
    flow_version: int | None = None


class StepsOut(WireModel):
    execution_id: str
    steps: list[StepOut]


class LogLineOut(BaseModel):
    """One line of the execution's trail: what happened, when, at which node, and its
    context (institution, conversation, contact, duration, error, metadata)."""

    model_config = ConfigDict(extra="forbid")

    timestamp: str | None
    level: str
    executionId: str
    nodeId: str | None = None
    nodeType: str | None = None
    message: str
    context: dict[str, Any]


class LogsOut(WireModel):
    execution_id: str
    logs: list[LogLineOut]


class TranscriptOut(WireModel):
    execution_id: str
    transcript: list[TranscriptEntryOut]


# ------------------------------------------------------------------------------- requests


class StartExecution(WireModel):
    """Start a flow for a conversation."""

    flow_id: str = Field(
        pattern=FLOW_ID_PATTERN,
        max_length=200,
        description="The institution's own flow of that id, else the shared one.",
    )
    flow_version: int | None = Field(
        default=None, ge=1, le=2**31, description="Default: the latest version."
    )
    institution_id: str | None = Field(
        default=None,
        pattern=FLOW_ID_PATTERN,
        max_length=200,
        description="Default: the key's; another institution's is 404 unless the key is"
        " an admin's (admin keys must name one).",
    )
    conversation_id: ExternalId
    contact_id: ExternalId
    variables: JsonObject = Field(default_factory=dict)
    replace: bool = Field(
        default=False,
        description="Cancel the conversation's active execution instead of answering 409.",
    )
    language: Language | None = Field(
        default=None,
        description='The contact\'s language (BCP 47: "pt-BR", "en"), set as the start'
        " variable `contact.language` (merged into `variables.contact`, and winning over a"
        " language there): the flow's texts are chosen by it (`sys.language`).",
    )


# -------------------------------------------------------------------------------- helpers


def actor_of(principal: Principal) -> str:
    """How an API caller is named in the state history and the trail."""
    return f"key:{principal.key_id}"


def institution_for(principal: Principal, institution_id: str | None) -> str:
    """The institution a write acts for: the key's own (a foreign one is 404), or for an
    admin key the one it names (required: an admin key has no institution of its own)."""
    if principal.admin:
        if institution_id is None:
            raise Problem(
                422,
                "an admin key must name the institution: institutionId",
                kind="invalid",
                errors=[{"field": "body.institutionId", "message": "required for admin keys"}],
            )
        return institution_id
    owner = owner_for(principal, institution_id)
    assert owner is not None  # a non-admin key always has its institution
    return owner


#: ``?institutionId=`` of the listings: narrows an admin key to one institution
InstitutionQuery = Annotated[
    str | None,
    Query(
        alias="institutionId",
        pattern=FLOW_ID_PATTERN,
        max_length=200,
        description="Admin keys: only this institution's.",
    ),
]


def read_scope(principal: Principal, institution_id: str | None) -> str | None:
    """The institution a read covers: the key's own (``None``: every one, for an admin
    key), or the one ``?institutionId=`` names (another tenant's is 404)."""
    return principal.scope() if institution_id is None else owner_for(principal, institution_id)


#: why a viewer key's controls are all disabled
READ_ONLY = "viewer keys may only read"


async def execution_answer(
    request: Request, principal: Principal, ex: Execution, status_code: int = 200
) -> JSONResponse:
    """The execution as every route answers it, with the controls this key may use."""
    state = state_of(request.app)
    view = await execution_view(
        state.runtime.store,
        ex,
        now=state.runtime.engine.clock.now(),
        read_only=READ_ONLY if principal.role == "viewer" else None,
    )
    return JSONResponse(view, status_code=status_code)


async def load_execution(store: Store, principal: Principal, execution_id: str) -> Execution:
    """The execution, or 404 when it is absent or another institution's. A row that
    fails its checks is 409 (being restored) for its own tenant only: the trail tells
    whose it is."""
    what = f"execution '{execution_id}'"
    try:
        ex = await store.get_execution(execution_id)
    except ExecutionNotFound:
        raise not_found(what) from None
    except CorruptedRecord:
        identity = trail.Identity.from_records(await store.logs(execution_id))
        principal.check(identity.institution_id, what)
        raise
    principal.check(ex.institution_id, what)
    return ex


#: ``?since=`` of the listings: unix seconds or an ISO-8601 time with its zone
SinceQuery = Annotated[
    str | None,
    Query(
        max_length=40,
        description="Only failures at or after this time: unix seconds (`1767225600`) or"
        " ISO-8601 with a zone (`2026-01-01T00:00:00Z`).",
    ),
]


#: ``?flowId=`` of the listings: a flow's name, or its stored id
FlowIdQuery = Annotated[
    str | None,
    Query(
        alias="flowId",
        pattern=STORED_FLOW_ID_PATTERN,
        max_length=200,
        description="Only this flow: its name, or its stored id `INSTITUTION/NAME`.",
    ),
]


def parse_since(value: str, now: float) -> float:
    """``?since=`` as unix seconds; 422 naming ``query.since`` for anything else."""
    return parse_time(value, now, "query.since")


def parse_time(value: str | float, now: float, field: str) -> float:
    """A time the API is given (``?since=``, a receipt's ``at``) as unix seconds: a
    number, or a string of one or of an ISO-8601 time with its zone; after 1970 and at
    most a day ahead (a clock that far off is a bug). 422 naming ``field`` otherwise."""
    if isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                moment = None
            if moment is None or moment.tzinfo is None:
                raise _bad_time(
                    field, f"{value!r} is neither unix seconds nor an ISO-8601 time with a zone"
                ) from None
            seconds = moment.timestamp()
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise _bad_time(field, f"{value!r} is not a time after 1970")
    if seconds > now + SINCE_AHEAD_SECONDS:
        raise _bad_time(field, f"{value!r} is more than a day in the future")
    return seconds


def _bad_time(field: str, message: str) -> Problem:
    name = field.rsplit(".", 1)[-1]
    return Problem(
        422, f"{name}: {message}", kind="invalid", errors=[{"field": field, "message": message}]
    )


async def stored_flow_id(store: Store, institution: str | None, flow_id: str) -> str:
    """The stored id a listing's ``flowId`` means: ``INSTITUTION/NAME`` as given (the
    institution filter still applies, so another tenant's matches nothing), a bare
    name the institution's own flow of that name, else the shared one."""
    if "/" in flow_id or institution is None:
        return flow_id
    found = await resolve(store, institution, flow_id)
    return found.flow_id if found is not None else flow_id


async def execution_filter(
    store: Store,
    institution: str | None,
    *,
    now: float,
    stuck_grace: float,
    status: str | None = None,
    outcome: str | None = None,
    flow_id: str | None = None,
    conversation_id: str | None = None,
    contact_id: str | None = None,
    stuck: bool = False,
    with_errors: bool = False,
    error_node: str | None = None,
    error_kind: str | None = None,
    error_status: int | None = None,
    error_dependency: str | None = None,
    since: str | None = None,
) -> ExecutionFilter:
    """The store's filter the listing's filters mean for ``institution`` (``None``: every
    one, for an admin key): one construction for the listing's query parameters and for
    the routes that act on what a listing shows (:mod:`trilha.api.execution_filters`)."""
    failed: StepErrorMatch | None = None
    if (error_node, error_kind, error_status, error_dependency, since) != (None,) * 5:
        failed = StepErrorMatch(
            since=parse_since(since, now) if since is not None else None,
            node_id=error_node,
            kind=error_kind,
            status=error_status,
            dependency=error_dependency,
        )
    return ExecutionFilter(
        institution_id=institution,
        status=status,
        outcome=outcome,
        flow_id=await stored_flow_id(store, institution, flow_id) if flow_id else None,
        conversation_id=conversation_id,
        contact_id=contact_id,
        stuck_before=now - stuck_grace if stuck else None,
        with_errors=with_errors,
        failed_step=failed,
    )


def _execution_position(values: Any) -> tuple[float, str]:
    """The (created_at, id) a listing's cursor holds."""
    created_at, execution_id = values
    if (
        isinstance(created_at, bool)
        or not isinstance(created_at, int | float)
        or not math.isfinite(created_at)
        or not isinstance(execution_id, str)
    ):
        raise ValueError("unexpected content")
    return float(created_at), execution_id


@dataclass(slots=True)
class _QueueReading:
    at: float = -math.inf
    due: int = 0


async def refuse_when_overloaded(request: Request) -> None:
    """503 with Retry-After while more executions are due than ``api.max_queue_due``."""
    await refuse_when_overloaded_app(request.app)


async def refuse_when_overloaded_app(app: Any) -> None:
    """:func:`refuse_when_overloaded` for work the app does outside a request."""
    state = state_of(app)
    reading: _QueueReading | None = getattr(app.state, "queue_reading", None)
    if reading is None:
        reading = app.state.queue_reading = _QueueReading()
    if time.monotonic() - reading.at > QUEUE_CHECK_SECONDS:
        stats = await state.runtime.store.queue_stats(state.runtime.engine.clock.now())
        reading.at, reading.due = time.monotonic(), stats.due
    bound = state.config.api.max_queue_due
    if reading.due > bound:
        raise Problem(
            503,
            f"{reading.due} executions are due and waiting for a worker (bound:"
            f" {bound}); no new execution was started, retry later",
            kind="overloaded",
            headers={"Retry-After": str(BACKPRESSURE_RETRY_AFTER)},
        )


# --------------------------------------------------------------------------------- routes


@router.post(
    "",
    summary="Start a flow for a conversation",
    status_code=201,
    responses={
        201: {"model": ExecutionOut, "description": "Started: the execution."},
        **problems(
            403,
            404,
            409,
            422,
            **{
                "409": "The conversation has an active execution (`executionId`); send"
                " `replace: true` to cancel it and start anew.",
                "422": "Invalid body, or an Idempotency-Key reused with a different request.",
            },
        ),
    },
)
async def start_execution(
    request: Request,
    principal: Writer,
    body: StartExecution,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    state = state_of(request.app)
    store = state.runtime.store
    institution = institution_for(principal, body.institution_id)
    variables = _start_variables(body)
    _refuse_foreign_conversation(state.runtime.config, institution, body)
    start_key = request_key(request, principal, institution, idempotency_key, body)

    async def run() -> JSONResponse:
        await refuse_when_overloaded(request)
        started = await _started_by(store, institution, body.conversation_id, start_key)
        if started is not None:  # this very request started it; its answer was lost
            return await execution_answer(request, principal, started, 201)
        flow = await resolve(store, institution, body.flow_id, body.flow_version)
        if flow is None:
            version = f" version {body.flow_version}" if body.flow_version else ""
            raise not_found(f"flow '{body.flow_id}'{version}")
        try:
            ex = await state.runtime.engine.start(
                flow.flow_id,
                version=flow.version,
                institution_id=institution,
                conversation_id=body.conversation_id,
                contact_id=body.contact_id,
                variables=variables,
                replace=body.replace,
                actor=actor_of(principal),
                start_key=start_key,
            )
        except ConversationBusy as exc:
            raise await _busy(store, exc) from None
        state.wake()  # this process's workers run it now, not at their next poll
        return await execution_answer(request, principal, ex, 201)

    return await idempotent(request, principal, institution, idempotency_key, body, run)


def _refuse_foreign_conversation(config: Config, institution: str, body: StartExecution) -> None:
    """A conversation the channel cannot carry is refused at the door (422), not found
    dead in the outbox later: on WhatsApp, one of the institution's ``wa:`` ones."""
    whatsapp = config.channel.whatsapp
    if config.channel.kind != "whatsapp" or whatsapp is None:
        return
    why = start_problem(whatsapp, institution, body.conversation_id, body.contact_id)
    if why is not None:
        raise Problem(
            422, why, kind="invalid", errors=[{"field": "body.conversationId", "message": why}]
        )


def _start_variables(body: StartExecution) -> dict[str, Any]:
    """The start variables with the request's ``language`` as ``contact.language``."""
    try:
        return with_language(body.variables, body.language)
    except ValueError as exc:
        raise Problem(
            422,
            str(exc),
            kind="invalid",
            errors=[{"field": "body.variables.contact", "message": str(exc)}],
        ) from None


async def _started_by(
    store: Store, institution: str, conversation: str, start_key: str | None
) -> Execution | None:
    """The conversation's latest execution if the keyed request ``start_key`` started it.

    The answer to a keyed start is kept after the start commits; when the store
    fails in between, the client retries with the same key and finds no kept
    answer. Without this it would get 409 (its own execution keeps the
    conversation busy), or with ``replace`` cancel its own execution."""
    if start_key is None:
        return None
    try:
        latest = await store.latest_execution(institution, conversation)
    except (ExecutionNotFound, CorruptedRecord):
        return None
    return latest if latest.meta.get("startKey") == start_key else None


async def _busy(store: Store, exc: ConversationBusy) -> Problem:
    """409 naming the conversation's active execution and its state."""
    active = exc.details.get("execution_id")
    extra: dict[str, Any] = {"executionId": active}
    if isinstance(active, str):
        with contextlib.suppress(TrilhaError):
            extra["currentStatus"] = (await store.get_execution(active)).status.value
    return Problem(
        409,
        f"the conversation already has an active execution ({active}); send replace: true"
        " to cancel it and start anew",
        kind="conversation_busy",
        extra=extra,
    )


@router.get(
    "",
    summary="Executions, newest first, a page at a time",
    responses={200: {"model": ExecutionPage}, **problems(404, 422)},
)
async def list_executions(
    request: Request,
    principal: Viewer,
    status: Annotated[StatusName | None, Query(description="Only this state.")] = None,
    outcome: Annotated[
        OutcomeName | None,
        Query(
            description="Only ended executions that ended so: `escalated` (handed to a"
            " person), `timeout` (no reply to a question in time, or a turn ran out),"
            " `expired` (the contact was silent for the flow's `sessionTimeoutSeconds`)..."
        ),
    ] = None,
    flow_id: FlowIdQuery = None,
    conversation_id: Annotated[
        str | None, Query(alias="conversationId", pattern=EXTERNAL_ID_PATTERN, max_length=200)
    ] = None,
    contact_id: Annotated[
        str | None, Query(alias="contactId", pattern=EXTERNAL_ID_PATTERN, max_length=200)
    ] = None,
    stuck: Annotated[
        bool,
        Query(
            description="Only active executions nothing is moving on (what the sweeper would"
            " reschedule) and overdue work no worker has claimed."
        ),
    ] = False,
    with_errors: Annotated[
        bool,
        Query(
            alias="withErrors",
            description="Only executions with an error now or a step that failed on the way.",
        ),
    ] = False,
    error_node: Annotated[
        str | None,
        Query(
            alias="errorNode",
            pattern=NODE_ID_PATTERN,
            max_length=100,
            description="Only executions with a step of this node that failed.",
        ),
    ] = None,
    error_kind: Annotated[
        ErrorKindName | None,
        Query(alias="errorKind", description="... that failed with this kind of error."),
    ] = None,
    error_status: Annotated[
        int | None,
        Query(
            alias="errorStatus",
            ge=100,
            le=599,
            description="... on this HTTP status from the dependency.",
        ),
    ] = None,
    error_dependency: Annotated[
        str | None,
        Query(
            alias="errorDependency",
            pattern=DEPENDENCY_PATTERN,
            max_length=200,
            description="... calling this dependency.",
        ),
    ] = None,
    since: SinceQuery = None,
    institution_id: InstitutionQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=500, description="`nextCursor` of the previous page.")
    ] = None,
) -> JSONResponse:
    state = state_of(request.app)
    store = state.runtime.store
    institution = read_scope(principal, institution_id)
    now = state.runtime.engine.clock.now()
    where = await execution_filter(
        store,
        institution,
        now=now,
        stuck_grace=state.runtime.worker.sweeper.grace_seconds,
        status=status,
        outcome=outcome,
        flow_id=flow_id,
        conversation_id=conversation_id,
        contact_id=contact_id,
        stuck=stuck,
        with_errors=with_errors,
        error_node=error_node,
        error_kind=error_kind,
        error_status=error_status,
        error_dependency=error_dependency,
        since=since,
    )
    failed = where.failed_step
    before = decode_cursor(cursor, _execution_position) if cursor is not None else None
    found_page = await store.list_executions(limit=limit + 1, where=where, before=before)
    page = found_page[:limit]
    more = len(found_page) > limit
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more and page else None
    ids = [ex.id for ex in page]
    status_since = await store.status_since(ids)
    undelivered = await store.undelivered(ids, now=now)
    listed = [
        execution_summary(ex, status_since.get(ex.id), undelivered=undelivered.get(ex.id, 0))
        for ex in page
    ]
    if failed is not None:
        steps = await store.failed_steps(ids, failed)
        for ex, shown in zip(page, listed, strict=True):
            step = steps.get(ex.id)
            shown["failedStep"] = failed_step_view(step) if step is not None else None
    return JSONResponse({"executions": listed, "nextCursor": next_cursor})


@router.get(
    "/{executionId}",
    summary="An execution: state, current node, wait, variables, transcript, history",
    responses={200: {"model": ExecutionOut}, **problems(404)},
)
async def get_execution(
    request: Request, execution_id: ExecutionIdPath, principal: Viewer
) -> JSONResponse:
    store = state_of(request.app).runtime.store
    ex = await load_execution(store, principal, execution_id)
    return await execution_answer(request, principal, ex)


@router.get(
    "/{executionId}/history",
    summary="State changes (who, when, why) and every operator operation",
    responses={200: {"model": HistoryOut}, **problems(404)},
)
async def get_history(
    request: Request, execution_id: ExecutionIdPath, principal: Viewer
) -> JSONResponse:
    store = state_of(request.app).runtime.store
    ex = await load_execution(store, principal, execution_id)
    transitions = await store.transitions(ex.id)
    audit = [
        _audit(line) for line in await store.logs(ex.id) if line.message.startswith("operator.")
    ]
    return JSONResponse(
        {
            "executionId": ex.id,
            "history": [transition_view(t) for t in transitions],
            "audit": audit,
        }
    )


_AUDIT_KEYS = ("operation", "actor", "reason", "from", "to", "fromNode", "toNode")


def _audit(line: Any) -> dict[str, Any]:
    """An ``operator.*`` trail line as an audit entry."""
    context = line.context
    details = {k: v for k, v in context.items() if k not in _AUDIT_KEYS}
    for key in ("fromNode", "toNode"):
        if key in context:
            details[key] = context[key]
    return {
        "operation": str(context.get("operation") or line.message.removeprefix("operator.")),
        "actor": context.get("actor"),
        "reason": context.get("reason"),
        "from": context.get("from"),
        "to": context.get("to"),
        "at": iso(line.at),
        "nodeId": line.node_id,
        "details": details,
    }


@router.get(
    "/{executionId}/steps",
    summary="The timeline: each step's node, input, output, duration, attempt and error",
    responses={200: {"model": StepsOut}, **problems(404)},
)
async def get_steps(
    request: Request, execution_id: ExecutionIdPath, principal: Viewer
) -> JSONResponse:
    store = state_of(request.app).runtime.store
    ex = await load_execution(store, principal, execution_id)
    checkpoints = await store.checkpoints(ex.id)
    flows = step_flows([(c.seq, verified_state(c)) for c in checkpoints])
    steps = [
        step_view(c)
        | dict(zip(("flowId", "flowVersion"), flows.get(c.seq, (None, None)), strict=True))
        for c in checkpoints
    ]
    return JSONResponse({"executionId": ex.id, "steps": steps})


@router.get(
    "/{executionId}/logs",
    summary="The execution's trail: one log object per line, oldest first",
    responses={200: {"model": LogsOut}, **problems(404, 422)},
)
async def get_logs(
    request: Request,
    execution_id: ExecutionIdPath,
    principal: Viewer,
    level: Annotated[
        LevelName,
        Query(description="The least severe level shown."),
    ] = "DEBUG",
) -> JSONResponse:
    minimum = trail.parse_level(level)  # the Literal admits only known levels
    store = state_of(request.app).runtime.store
    ex = await load_execution(store, principal, execution_id)
    records = await store.logs(ex.id)
    lines = trail.lines(records, trail.Identity.of(ex), minimum=minimum)
    return JSONResponse({"executionId": ex.id, "logs": lines})


@router.get(
    "/{executionId}/transcript",
    summary="What the bot and the contact said, in order",
    responses={200: {"model": TranscriptOut}, **problems(404)},
)
async def get_transcript(
    request: Request, execution_id: ExecutionIdPath, principal: Viewer
) -> JSONResponse:
    state = state_of(request.app)
    store = state.runtime.store
    ex = await load_execution(store, principal, execution_id)
    entries = await store.transcript(ex.id)
    deliveries = await store.deliveries(ex.id)
    now = state.runtime.engine.clock.now()
    transcript = transcript_view(entries, deliveries, now=now)
    return JSONResponse({"executionId": ex.id, "transcript": transcript})
