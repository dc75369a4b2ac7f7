"""Rows in and out: what every backend's tables hold, in one shape, read one way.

The backends keep the same columns in the same order (their SQL differs, not
their rows), so turning an :class:`~trilha.core.execution.Execution` into
column values and a fetched row back into records lives here once. A row is
anything indexable by position (an ``sqlite3`` tuple, an ``asyncpg`` Record).
Reading is defensive: a stored execution whose JSON, status or checksum does
not hold raises :class:`~trilha.errors.CorruptedRecord`, and what can still
be read of it is salvaged for recovery.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

import orjson

from trilha.core.alerts import AlertState, AlertStatus
from trilha.core.execution import (
    Checkpoint,
    Execution,
    InboundMessage,
    LogRecord,
    OutboundMessage,
    TranscriptEntry,
    Transition,
    checksum,
    dumps,
)
from trilha.core.frames import frames, root_flow
from trilha.core.states import TERMINAL, ExecutionStatus, Outcome
from trilha.errors import CorruptedRecord
from trilha.store.base import ApiKey, ErrorGroup, FailedStep, OutboxItem, TrailEvent


def loads_or_none(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def lenient_json(text: str | None) -> Any:
    """JSON for display (a step's input/output): unreadable text is shown as is."""
    try:
        return loads_or_none(text)
    except orjson.JSONDecodeError:
        return text


TERMINAL_SQL = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL))


#: "active" in the very words of the WHERE of the partial indexes executions_one_active
#: and executions_active: a planner uses a partial index only for a query whose
#: condition implies the index's (SQLite: repeats it), so the conversation lookups read
#: one index entry and the stuck listing reads the active executions alone
ACTIVE_SQL = "status NOT IN ('completed', 'failed', 'cancelled', 'timeout')"
if {"completed", "failed", "cancelled", "timeout"} != {s.value for s in TERMINAL}:
    raise RuntimeError("the terminal statuses changed: update ACTIVE_SQL and the indexes")


EXEC_FIELDS = (
    "id",
    "institution_id",
    "conversation_id",
    "contact_id",
    "flow_id",
    "flow_version",
    "status",
    "outcome",
    "current_node_id",
    "variables",
    "node_state",
    "waiting_for",
    "due_at",
    "wake_at",
    "attempts",
    "step_seq",
    "channel",
    "start_variables",
    "paused_from",
    "error",
    "created_at",
    "updated_at",
    "ended_at",
    "turn_started_at",
    "meta",
    "stack",
    "fencing_token",
    "checksum",
)


EXEC_COLUMNS = ", ".join(EXEC_FIELDS) + ", lease_owner, lease_expires_at"


COLUMN_INDEX = {name: i for i, name in enumerate((*EXEC_FIELDS, "lease_owner", "lease_expires_at"))}


#: what a step commit writes: everything but the id and the fencing token (only claims move it)
COMMIT_FIELDS = tuple(f for f in EXEC_FIELDS[1:] if f != "fencing_token")


#: the rows are read by position (row_to_inbound, row_to_outbound): a new column goes last
INBOX_COLUMNS = (
    "id, institution_id, conversation_id, message_id, contact_id, text, received_at,"
    " execution_id, payload, applied_at, content, held_at"
)


OUTBOX_COLUMNS = (
    "idempotency_key, execution_id, institution_id, conversation_id, contact_id, channel, text,"
    " created_at, step_seq, payload, id, status, attempts, sent_at, content, agent_id, reply_to"
)


def json_or_none(value: Any) -> str | None:
    return None if value is None else dumps(value)


def execution_params(ex: Execution) -> tuple[Any, ...]:
    return (
        ex.id,
        ex.institution_id,
        ex.conversation_id,
        ex.contact_id,
        ex.flow_id,
        ex.flow_version,
        ex.status.value,
        ex.outcome.value if ex.outcome else None,
        ex.current_node_id,
        dumps(ex.variables),
        dumps(ex.node_state),
        ex.waiting_for,
        ex.due_at,
        ex.wake_at,
        ex.attempts,
        ex.step_seq,
        ex.channel,
        dumps(ex.start_variables),
        ex.paused_from.value if ex.paused_from else None,
        json_or_none(ex.error),
        ex.created_at,
        ex.updated_at,
        ex.ended_at,
        ex.turn_started_at,
        dumps(ex.meta),
        dumps(ex.stack),
        ex.fencing_token,
        checksum(ex.state_payload()),
    )


def row_to_execution(row: Any) -> Execution:
    c = Row(row)
    try:
        ex = Execution(
            id=c["id"],
            institution_id=c["institution_id"],
            conversation_id=c["conversation_id"],
            contact_id=c["contact_id"],
            flow_id=c["flow_id"],
            flow_version=c["flow_version"],
            status=ExecutionStatus(c["status"]),
            outcome=Outcome(c["outcome"]) if c["outcome"] else None,
            current_node_id=c["current_node_id"],
            variables=orjson.loads(c["variables"]),
            node_state=orjson.loads(c["node_state"]),
            waiting_for=c["waiting_for"],
            due_at=c["due_at"],
            wake_at=c["wake_at"],
            attempts=c["attempts"],
            step_seq=c["step_seq"],
            channel=c["channel"],
            start_variables=orjson.loads(c["start_variables"]),
            paused_from=ExecutionStatus(c["paused_from"]) if c["paused_from"] else None,
            error=loads_or_none(c["error"]),
            created_at=c["created_at"],
            updated_at=c["updated_at"],
            ended_at=c["ended_at"],
            turn_started_at=c["turn_started_at"],
            meta=orjson.loads(c["meta"]),
            stack=orjson.loads(c["stack"]),
            fencing_token=c["fencing_token"],
            lease_owner=c["lease_owner"],
            lease_expires_at=c["lease_expires_at"],
        )
    except (ValueError, TypeError, KeyError, orjson.JSONDecodeError) as exc:
        raise CorruptedRecord(f"execution {c['id']} cannot be read: {exc}") from exc
    for name in ("variables", "node_state", "meta", "start_variables"):
        if not isinstance(getattr(ex, name), dict):
            raise CorruptedRecord(f"execution {c['id']}: {name} is not an object")
    try:
        frames(ex.stack)
    except ValueError as exc:
        raise CorruptedRecord(f"execution {c['id']}: {exc}") from exc
    if checksum(ex.state_payload()) != c["checksum"]:
        raise CorruptedRecord(f"execution {c['id']}: checksum mismatch")
    return ex


class Row:
    """Column access by name for an execution row (``EXEC_COLUMNS`` order)."""

    __slots__ = ("row",)

    def __init__(self, row: Any) -> None:
        self.row = row

    def __getitem__(self, name: str) -> Any:
        return self.row[COLUMN_INDEX[name]]


def salvage(row: Any) -> Execution:
    """What can be read of a corrupted row: identity, lease and start variables; the
    engine restores the rest from the last valid checkpoint."""
    c = Row(row)

    def text(name: str, default: str = "?") -> str:
        value = c[name]
        return value if isinstance(value, str) else default

    def number(name: str, default: float | None) -> Any:
        value = c[name]
        return value if isinstance(value, int | float) else default

    try:
        start = orjson.loads(c["start_variables"])
    except (orjson.JSONDecodeError, TypeError):
        start = {}
    flow_version = number("flow_version", 1)
    flow_id = text("flow_id")
    try:  # inside a sub-flow: the flow it started in, to restart from without a checkpoint
        root = root_flow(orjson.loads(c["stack"]))
    except (orjson.JSONDecodeError, TypeError):
        root = None
    if root is not None:
        flow_id, flow_version = root
    return Execution(
        id=text("id"),
        institution_id=text("institution_id"),
        conversation_id=text("conversation_id"),
        contact_id=text("contact_id"),
        flow_id=flow_id,
        flow_version=int(flow_version),
        status=stored_status(c["status"]) or ExecutionStatus.RUNNING,
        current_node_id=None,
        variables={},
        created_at=number("created_at", 0.0),
        updated_at=number("updated_at", 0.0),
        step_seq=int(number("step_seq", 0)),
        channel=text("channel", "default"),
        start_variables=start if isinstance(start, dict) else {},
        fencing_token=int(number("fencing_token", 0)),
        lease_owner=c["lease_owner"],
        lease_expires_at=number("lease_expires_at", None),
    )


def readable(row: Any) -> Execution | None:
    try:
        return row_to_execution(row)
    except CorruptedRecord:
        return None


def row_to_inbound(row: Any) -> InboundMessage:
    return InboundMessage(
        id=row[0],
        institution_id=row[1],
        conversation_id=row[2],
        message_id=row[3],
        contact_id=row[4],
        text=row[5],
        received_at=row[6],
        execution_id=row[7],
        payload=loads_or_none(row[8]),
        applied_at=row[9],
        content=loads_or_none(row[10]),
        held_at=row[11],
    )


def row_to_outbound(row: Any) -> OutboundMessage:
    return OutboundMessage(
        idempotency_key=row[0],
        execution_id=row[1],
        institution_id=row[2],
        conversation_id=row[3],
        contact_id=row[4],
        channel=row[5],
        text=row[6],
        created_at=row[7],
        step_seq=row[8],
        payload=loads_or_none(row[9]),
        id=row[10],
        status=row[11],
        attempts=row[12],
        sent_at=row[13],
        content=loads_or_none(row[14]),
        agent_id=row[15],
        reply_to=row[16],
    )


#: the transcript's lines in order: by step; within a step the contact's reply it read,
#: then the bot's messages, then what was said while a person held the conversation
#: (the contact's held messages and the person's, by time); ids break ties. Each
#: backend's query selects sender, text, time, these four columns, content, agent id.
TRANSCRIPT_ORDER = "ORDER BY 4, 5, 6, 7"


def row_to_transcript_entry(row: Any) -> TranscriptEntry:
    """A transcript line as the backends' transcript query selects it: sender, text,
    time, four ordering columns (step, side, time within a hold, id), the content and
    the agent id."""
    return TranscriptEntry(row[0], row[1], row[2], loads_or_none(row[7]), row[8])


def row_to_alert(row: Any) -> AlertState:
    return AlertState(
        rule=row[0],
        instance=row[1],
        status=AlertStatus(row[2]),
        severity=row[3] or "warning",
        value=row[4],
        threshold=row[5] if row[5] is not None else float("nan"),
        summary=row[6],
        active_at=row[7],
        fired_at=row[8],
        resolved_at=row[9],
        updated_at=row[10],
    )


def stored_status(raw: Any) -> ExecutionStatus | None:
    """A stored status, or ``None`` when the row holds something unknown (corruption)."""
    try:
        return ExecutionStatus(raw)
    except ValueError:
        return None


#: the execution id of the placeholder that keeps trail ids climbing after the newest
#: lines were purged (see purge_logs): no execution has it
TRAIL_MARK = ""


API_KEY_COLUMNS = "key_id, institution_id, role, secret_hash, created_at, name, revoked_at"


def row_to_api_key(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row[0],
        institution_id=row[1],
        role=cast(Literal["viewer", "operator", "admin"], row[2]),
        secret_hash=row[3],
        created_at=row[4],
        name=row[5],
        revoked_at=row[6],
    )


def as_text(value: Any) -> str:
    """A column read as text whatever a corrupted row holds there ('' for NULL)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def row_to_trail_event(row: Any) -> TrailEvent:
    """One trail line for a live stream: whatever of it cannot be read is given as text
    (or empty) rather than stopping the stream at this line."""
    raw = row[7]
    try:
        context = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    except orjson.JSONDecodeError:
        context = None
    if not isinstance(context, dict):
        context = {"raw": as_text(raw)}
    return TrailEvent(
        id=int(row[0]),
        record=LogRecord(
            execution_id=as_text(row[1]),
            level=as_text(row[2]),
            message=as_text(row[3]),
            at=float(row[4]) if isinstance(row[4], int | float) else 0.0,
            node_id=None if row[5] is None else as_text(row[5]),
            node_type=None if row[6] is None else as_text(row[6]),
            context=context,
        ),
        institution_id=as_text(row[8]),
        flow_id=as_text(row[9]),
        status=as_text(row[10]),
    )


#: a transition row's columns, in the order :func:`row_to_transition` reads them
TRANSITION_COLUMNS = "execution_id, source, target, reason, at, actor, node_id"
#: a checkpoint row's columns, in the order :func:`row_to_checkpoint` reads them
CHECKPOINT_COLUMNS = (
    "execution_id, seq, node_id, node_type, status, state, checksum, started_at,"
    " duration, input, output, error, attempt, schema_version"
)


def row_to_transition(r: Any) -> Transition:
    return Transition(r[0], ExecutionStatus(r[1]) if r[1] else None, ExecutionStatus(r[2]), *r[3:7])


def row_to_checkpoint(r: Any) -> Checkpoint:
    """A step's checkpoint; its input, output and error are shown as stored when they
    are not JSON (display only: the state is what recovery verifies)."""
    return Checkpoint(
        r[0],
        r[1],
        r[2],
        r[3],
        ExecutionStatus(r[4]),
        r[5],
        r[6],
        r[7],
        r[8],
        lenient_json(r[9]),
        lenient_json(r[10]),
        lenient_json(r[11]),
        r[12],
        r[13],
    )


# failed steps ------------------------------------------------------------------------

#: a step_errors row's columns, in the order :func:`step_error_params` gives them
STEP_ERROR_COLUMNS = (
    "execution_id, seq, institution_id, flow_id, node_id, node_type, dependency, kind,"
    " status, type, message, input, at"
)
#: what failed steps are grouped by (``GET /v1/errors``)
STEP_ERROR_GROUP = "flow_id, node_id, dependency, kind, status"
#: the longest message and input (as JSON text) a step_errors row keeps: enough to
#: tell one failure from another, not a copy of a large reply
STEP_ERROR_TEXT_MAX = 2_000


def _text(value: Any) -> str | None:
    return value[:STEP_ERROR_TEXT_MAX] if isinstance(value, str) else None


def failing_input(checkpoint: Checkpoint) -> Any:
    """What a step failed on: the request of a dependency call (``METHOD URL``, in the
    error's details), else the step's own input (a reply)."""
    error = checkpoint.error if isinstance(checkpoint.error, dict) else {}
    details = error.get("details")
    request = details.get("request") if isinstance(details, dict) else None
    return request if isinstance(request, str) else checkpoint.input


def step_error_params(ex: Execution, checkpoint: Checkpoint) -> tuple[Any, ...] | None:
    """The step_errors row of a checkpoint (``STEP_ERROR_COLUMNS`` order), or ``None``
    when its step did not fail. The flow is the one the step ran in, from the
    checkpoint's state: a failure that sends the execution to a fallback flow commits
    with the execution already in that flow."""
    error = checkpoint.error
    if not isinstance(error, dict):
        return None
    details = error.get("details")
    details = details if isinstance(details, dict) else {}
    status = details.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        status = None
    flow_id = ex.flow_id
    try:
        flow = orjson.loads(checkpoint.state).get("flow")
        if isinstance(flow, list) and flow and isinstance(flow[0], str):
            flow_id = flow[0]
    except (orjson.JSONDecodeError, AttributeError):
        pass
    failed_on = json_or_none(failing_input(checkpoint))
    if failed_on is not None and len(failed_on) > STEP_ERROR_TEXT_MAX:
        failed_on = dumps(failed_on[:STEP_ERROR_TEXT_MAX] + "…")
    return (
        checkpoint.execution_id,
        checkpoint.seq,
        ex.institution_id,
        flow_id,
        checkpoint.node_id,
        checkpoint.node_type,
        _text(details.get("dependency")),
        _text(error.get("kind")),
        status,
        _text(error.get("type")),
        _text(error.get("message")),
        failed_on,
        checkpoint.started_at,
    )


def step_error_rows(commit_execution: Execution, checkpoints: list[Checkpoint]) -> list[Any]:
    """The step_errors rows of a commit's checkpoints (most commits have none)."""
    rows = []
    for checkpoint in checkpoints:
        if checkpoint.error is not None:
            row = step_error_params(commit_execution, checkpoint)
            if row is not None:
                rows.append(row)
    return rows


def error_groups_from_rows(groups: Sequence[Any], examples: Sequence[Any]) -> list[ErrorGroup]:
    """Error groups from the two queries every backend runs: the aggregate (``groups``:
    the group's columns, node type, count, executions, first and last seen) and the
    newest failure of each distinct input per group, newest first (``examples``: the
    group's columns, input, execution id, type, message)."""
    newest: dict[tuple[Any, ...], list[Any]] = {}
    for row in examples:
        newest.setdefault(tuple(row[:5]), []).append(row)
    found = []
    for row in groups:
        key = tuple(row[:5])
        inputs = newest.get(key, [])
        head = inputs[0] if inputs else None
        found.append(
            ErrorGroup(
                flow_id=row[0],
                node_id=row[1],
                node_type=row[5],
                dependency=row[2],
                kind=row[3],
                status=None if row[4] is None else int(row[4]),
                type=None if head is None else head[7],
                message=None if head is None else head[8],
                count=int(row[6]),
                executions=int(row[7]),
                first_seen=float(row[8]),
                last_seen=float(row[9]),
                example_execution_id="" if head is None else head[6],
                inputs=[lenient_json(r[5]) for r in inputs if r[5] is not None],
            )
        )
    return found


def row_to_failed_step(row: Any) -> FailedStep:
    """A failed step from (execution_id, seq, node_id, at, input, the checkpoint's error)."""
    return FailedStep(
        row[0], int(row[1]), row[2], float(row[3]), lenient_json(row[4]), lenient_json(row[5])
    )


def dependency_waited_for(error_text: Any) -> str | None:
    """The dependency a waiting execution's error names (``None`` when it names none or
    cannot be read: a corrupted row is counted by no dependency)."""
    try:
        error = orjson.loads(error_text) if isinstance(error_text, str | bytes) else None
    except orjson.JSONDecodeError:
        return None
    name = error.get("dependency") if isinstance(error, dict) else None
    return name if isinstance(name, str) else None


#: an outbox row as the outbox listing reads it (:func:`row_to_outbox_item`)
OUTBOX_ITEM_COLUMNS = (
    "id, idempotency_key, execution_id, institution_id, conversation_id, contact_id, text,"
    " status, attempts, last_error, next_attempt_at, created_at"
)


def row_to_outbox_item(row: Any) -> OutboxItem:
    return OutboxItem(
        id=int(row[0]),
        idempotency_key=row[1],
        execution_id=row[2],
        institution_id=row[3],
        conversation_id=row[4],
        contact_id=row[5],
        text=row[6],
        status=row[7],
        attempts=int(row[8]),
        last_error=row[9],
        next_attempt_at=None if row[10] is None else float(row[10]),
        created_at=float(row[11]),
    )
