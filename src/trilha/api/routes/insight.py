"""What a screen needs to explain an execution: counts per state, the flow drawn as a
graph, each variable's history; and who the key is, and the alerts.

These are reads built from what the store already keeps (executions, checkpoints,
the trail); the layout and the history are computed by pure functions of the core
(:mod:`trilha.core.graph`, :mod:`trilha.core.variable_history`), so the debugger
in the browser only draws.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from trilha.api.app import state_of
from trilha.api.auth import Viewer
from trilha.api.drawings import Drawings
from trilha.api.problems import problems
from trilha.api.routes.executions import (
    ExecutionIdPath,
    InstitutionQuery,
    load_execution,
    read_scope,
)
from trilha.core.execution import iso, verified_state
from trilha.core.frames import running_frame_steps
from trilha.core.states import ExecutionStatus, Outcome
from trilha.core.variable_history import Edit, Snapshot, variable_history
from trilha.core.wire import WireModel
from trilha.errors import FlowNotFound
from trilha.observability.alerts import alert_evidence, alert_json

router = APIRouter(tags=["insight"])


class Me(WireModel):
    key_id: str
    institution_id: str = Field(description="The key's institution.")
    role: Literal["viewer", "operator", "admin"]


@router.get(
    "/v1/me",
    summary="The key: its id, institution and role",
    response_model=Me,
    responses=problems(),
)
async def me(principal: Viewer) -> dict[str, Any]:
    return {
        "keyId": principal.key_id,
        "institutionId": principal.institution_id,
        "role": principal.role,
    }


class Counts(WireModel):
    counts: dict[str, int] = Field(description="Every one of the 11 states, 0 included.")
    outcomes: dict[str, int] = Field(
        description="Ended executions by how they ended, every outcome, 0 included:"
        " `completed`, `escalated` (handed to a person; its state is `completed`),"
        " `failed`, `cancelled`, `timeout` (no reply to a question in time, or a turn ran"
        " out), `invalid_input`, `expired` (the contact was silent for the flow's"
        " `sessionTimeoutSeconds`)."
    )
    total: int


@router.get(
    "/v1/executions/counts",
    summary="How many executions are in each state, and how the ended ones ended",
    responses={200: {"model": Counts}, **problems(404, 422)},
)
async def counts(
    request: Request,
    principal: Viewer,
    institution_id: InstitutionQuery = None,
) -> JSONResponse:
    institution = read_scope(principal, institution_id)
    store = state_of(request.app).runtime.store
    found = await store.count_by_status(institution)
    ended = await store.count_by_outcome(institution)
    return JSONResponse(
        {
            "counts": {s.value: found.get(s.value, 0) for s in ExecutionStatus},
            "outcomes": {o.value: ended.get(o.value, 0) for o in Outcome},
            "total": sum(found.values()),
        }
    )


class EvidenceOut(WireModel):
    """Where to look for what is behind an alert: API paths, answered for the caller's
    institution only."""

    executions: str | None = Field(
        description="The executions that show it: failed steps since its window began"
        " (error rate), a timed-out step (slow turn), stuck (backlog); null for memory."
    )
    errors: str | None = Field(description="The error groups since its window began.")
    outbox: str | None = Field(
        description="The messages given up (dead messages); null for the other rules."
    )


class AlertOut(WireModel):
    rule: str
    instance: str
    status: Literal["inactive", "pending", "firing", "resolved"] = Field(
        description="`pending`: over its threshold, not yet for its delay."
    )
    severity: str
    value: float | None
    threshold: float | None
    summary: str
    active_at: str | None
    fired_at: str | None
    resolved_at: str | None
    updated_at: str | None
    evidence: EvidenceOut


class AlertsOut(WireModel):
    alerts: list[AlertOut]


@router.get(
    "/v1/alerts",
    summary="The alerts' states as last evaluated (the platform's, shared by every tenant),"
    " each with links to its evidence",
    responses={200: {"model": AlertsOut}, **problems()},
)
async def alerts(request: Request, principal: Viewer) -> JSONResponse:
    state = state_of(request.app)
    found = await state.runtime.store.alerts()
    rules = state.config.alerts.active_rules()
    return JSONResponse(
        {"alerts": [alert_json(a) | {"evidence": alert_evidence(a, rules)} for a in found]}
    )


class GraphNodeOut(WireModel):
    id: str
    type: str
    label: str
    x: float
    y: float
    width: float
    height: float


class GraphEdgeOut(WireModel):
    source: str = Field(alias="from")
    to: str
    field: str = Field(description="Where the flow names the edge: `next`, `branches[0].next`…")
    kind: str = Field(description="next, default, branch, intent, invalid, timeout, fallback")
    label: str
    points: list[list[float]] = Field(description="[x, y] pixels, source to target.")
    back: bool = Field(description="Closes a loop: drawn up the right-hand side.")


class GraphOut(WireModel):
    execution_id: str
    flow_id: str
    flow_version: int
    start: str
    width: float
    height: float
    nodes: list[GraphNodeOut]
    edges: list[GraphEdgeOut]


@router.get(
    "/v1/executions/{executionId}/graph",
    summary="The flow the execution runs, laid out to draw (pixels, top-left origin)",
    description=(
        "Computed once per flow version, off the event loop, and kept; a drawing that"
        " takes longer than `[api] graph_seconds` answers 503 (`kind: limit`)."
    ),
    responses={
        200: {"model": GraphOut},
        **problems(
            404,
            **{
                "503": "The drawing took longer than `[api] graph_seconds` (`kind: limit`,"
                " with Retry-After), or the store is unavailable."
            },
        ),
    },
)
async def graph(request: Request, execution_id: ExecutionIdPath, principal: Viewer) -> Response:
    runtime = state_of(request.app).runtime
    ex = await load_execution(runtime.store, principal, execution_id)

    async def definition() -> Any:
        stored = await runtime.store.get_flow(ex.flow_id, ex.flow_version)
        if stored is None:
            raise FlowNotFound(f"no version {ex.flow_version} of flow '{ex.flow_id}' in the store")
        return stored.definition

    # keyed by the stored id, which names the owner: never by the flow's name alone
    drawing = await drawings_of(request.app).get((ex.flow_id, ex.flow_version), definition)
    return Response(drawing.response_body(ex.id), media_type="application/json")


def drawings_of(app: Any) -> Drawings:
    """The process's drawings, made at the first request with ``[api]``'s settings."""
    found: Drawings | None = getattr(app.state, "drawings", None)
    if found is None:
        api = state_of(app).config.api
        found = app.state.drawings = Drawings(
            seconds=api.graph_seconds,
            concurrency=api.graph_concurrency,
            max_bytes=api.graph_cache_bytes,
        )
    return found


class ChangeOut(WireModel):
    value: Any
    at: str | None
    by: Literal["start", "step", "operator"]
    seq: int | None = Field(description="The step that set it (by: step).")
    node_id: str | None
    actor: str | None = Field(description="Who (by: operator): `key:<id>`, `cli:<user>`…")
    removed: bool


class VariablesOut(WireModel):
    execution_id: str
    variables: dict[str, Any]
    history: dict[str, list[ChangeOut]] = Field(description="Per top-level name, oldest first.")


@router.get(
    "/v1/executions/{executionId}/variables",
    summary="The variables now, and which step or operator gave each its values",
    responses={200: {"model": VariablesOut}, **problems(404)},
)
async def variables(
    request: Request, execution_id: ExecutionIdPath, principal: Viewer
) -> JSONResponse:
    runtime = state_of(request.app).runtime
    store = runtime.store
    ex = await load_execution(store, principal, execution_id)
    snapshots: list[Snapshot] = []
    depths: list[int] = []
    for c in await store.checkpoints(ex.id):
        state = verified_state(c)
        if state is not None:  # a damaged checkpoint tells nothing; the next one does
            snapshots.append(Snapshot(c.seq, c.node_id, c.started_at + c.duration, state["vars"]))
            depths.append(len(state.get("stack") or []))
    # inside a sub-flow, the running frame's own history: from its call, at its depth
    snapshots = [snapshots[i] for i in running_frame_steps(len(ex.stack), depths)]
    edits = [
        Edit(
            line.at,
            line.context.get("actor"),
            [*line.context.get("set", []), *line.context.get("unset", [])],
        )
        for line in await store.logs(ex.id)
        if line.message == "operator.set_variables"
    ]
    history = variable_history(
        ex.start_variables if not ex.stack else {},
        ex.created_at,
        snapshots,
        edits,
        ex.variables,
        runtime.engine.clock.now(),
    )
    return JSONResponse(
        {
            "executionId": ex.id,
            "variables": ex.variables,
            "history": {
                name: [c.wire() | {"at": iso(c.at)} for c in changes]
                for name, changes in history.items()
            },
        }
    )
