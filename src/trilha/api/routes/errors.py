"""Errors grouped: what failed, where, against what, and on which inputs.

``GET /v1/errors`` answers the failed steps of a time window (an hour by default)
grouped by flow, node, dependency, error kind and HTTP status, biggest first. A
partial failure shows as one group whose inputs share a pattern (every request for
a customer code starting with 9), and each group links to the listing of its
executions (``executionsUrl``), where every execution carries the step it failed
on. One aggregate over the store's failed steps (:meth:`Store.error_groups`),
scoped to the key's institution like every read; inputs and messages are masked
as the trail is.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from trilha.api.app import state_of
from trilha.api.auth import Viewer
from trilha.api.problems import problems
from trilha.api.routes.executions import (
    FlowIdQuery,
    InstitutionQuery,
    SinceQuery,
    parse_since,
    read_scope,
    stored_flow_id,
)
from trilha.core.execution import iso
from trilha.core.policies import ErrorKind
from trilha.core.wire import WireModel
from trilha.observability.masking import mask_text, mask_value
from trilha.store.base import ErrorGroup

router = APIRouter(tags=["insight"])

#: the window ``GET /v1/errors`` covers when it is not given ``since``
DEFAULT_WINDOW_SECONDS = 3_600
MAX_GROUPS = 200
#: distinct failing inputs shown per group
INPUTS_PER_GROUP = 10
#: the kinds the listing filters by (an error stored by an older engine may say another)
KINDS = frozenset(k.value for k in ErrorKind)


class ErrorGroupOut(WireModel):
    """Failed steps alike: the same flow, node, dependency, error kind and HTTP status."""

    flow_id: str = Field(description="The stored flow id: `INSTITUTION/FLOW` for own flows.")
    node_id: str | None
    node_type: str | None
    dependency: str | None = Field(description="The dependency the node called, if any.")
    kind: str | None = Field(description="One of: " + ", ".join(sorted(KINDS)) + ".")
    status: int | None = Field(description="The HTTP status the dependency answered.")
    type: str | None = Field(description="The newest failure's error type.")
    message: str | None = Field(description="The newest failure's message (masked).")
    count: int = Field(description="Failed steps.")
    executions: int = Field(description="Distinct executions they belong to.")
    first_seen: str
    last_seen: str
    example_execution_id: str = Field(description="The execution of the newest failure.")
    inputs: list[Any] = Field(
        description=f"Up to {INPUTS_PER_GROUP} distinct inputs it failed on, newest first"
        " (masked): the request of an http or ai step (`METHOD URL`), else the step's input."
    )
    executions_url: str = Field(
        description="The listing of its executions, each with the step it failed on."
    )


class ErrorsOut(WireModel):
    since: float = Field(description="Unix seconds: the window's start.")
    groups: list[ErrorGroupOut] = Field(description="Biggest first.")


@router.get(
    "/v1/errors",
    summary="Failed steps grouped by flow, node, dependency, error kind and HTTP status",
    responses={200: {"model": ErrorsOut}, **problems(404, 422)},
)
async def errors(
    request: Request,
    principal: Viewer,
    since: SinceQuery = None,
    flow_id: FlowIdQuery = None,
    institution_id: InstitutionQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_GROUPS, description="The biggest groups.")] = 50,
) -> JSONResponse:
    runtime = state_of(request.app).runtime
    institution = read_scope(principal, institution_id)
    now = runtime.engine.clock.now()
    start = parse_since(since, now) if since is not None else now - DEFAULT_WINDOW_SECONDS
    flow = await stored_flow_id(runtime.store, institution, flow_id) if flow_id else None
    found = await runtime.store.error_groups(
        start, institution_id=institution, flow_id=flow, limit=limit, inputs=INPUTS_PER_GROUP
    )
    return JSONResponse(
        {"since": start, "groups": [_group(g, start, institution_id) for g in found]}
    )


def _group(group: ErrorGroup, since: float, institution_id: str | None) -> dict[str, Any]:
    inputs: list[Any] = []
    for raw in group.inputs:  # masking may make two inputs one (two CPFs look alike)
        shown = mask_value(raw)
        if shown not in inputs:
            inputs.append(shown)
    return {
        "flowId": group.flow_id,
        "nodeId": group.node_id,
        "nodeType": group.node_type,
        "dependency": group.dependency,
        "kind": group.kind,
        "status": group.status,
        "type": group.type,
        "message": None if group.message is None else mask_text(group.message),
        "count": group.count,
        "executions": group.executions,
        "firstSeen": iso(group.first_seen),
        "lastSeen": iso(group.last_seen),
        "exampleExecutionId": group.example_execution_id,
        "inputs": inputs,
        "executionsUrl": executions_url(group, since, institution_id),
    }


def executions_url(group: ErrorGroup, since: float, institution_id: str | None) -> str:
    """The listing of the group's executions over the same window: the filters of what
    the group is made of (a part it has none of, a status for one, filters nothing)."""
    query = {
        "flowId": group.flow_id,
        "errorNode": group.node_id,
        "errorKind": group.kind if group.kind in KINDS else None,
        "errorStatus": group.status,
        "errorDependency": group.dependency,
        # repr: the shortest text that reads back as the same float
        "since": repr(since),
        "institutionId": institution_id,
    }
    return "/v1/executions?" + urlencode({k: v for k, v in query.items() if v is not None})
