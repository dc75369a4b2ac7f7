"""Moving a flow's waiting executions to another of its versions:
``POST /v1/flows/{flowId}/migrations``.

The flow is the one ``flowId`` means for the key (its institution's own, else the
shared one; another institution's is 404), and only the key's institution's
executions are examined (an admin key names the institution with ``institutionId``,
or without it acts on the shared flow's executions of every institution). ``filter``
narrows them as the executions listing does (:mod:`trilha.api.execution_filters`).
What moves is decided in :mod:`trilha.core.moving`; the walk and the fenced, audited
writes are :class:`trilha.engine.moving.Mover`'s. Operator role (a viewer key: 403).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from trilha.api.app import state_of
from trilha.api.auth import Writer, charge
from trilha.api.cursors import encode_cursor
from trilha.api.execution_filters import ExecutionFilterBody, filter_of
from trilha.api.problems import Problem, not_found, problems
from trilha.api.routes.executions import actor_of
from trilha.api.routes.flows import FlowIdPath, InstitutionQuery, owner_for, resolve
from trilha.api.wire import Text
from trilha.core.moving import MAX_NODE_MAP
from trilha.core.tenancy import split_id
from trilha.core.wire import WireModel
from trilha.engine.moving import ACTIVE_ORDER, MAX_LIMIT, Mover

router = APIRouter(prefix="/v1/flows", tags=["flows"])

#: a call costs one request of its key's rate limit more per this many executions its
#: ``limit`` lets it examine
EXAMINED_PER_REQUEST = 2_000
_NODE_ID = r"^[A-Za-z0-9_.:\-]+$"
NodeId = Annotated[str, Field(pattern=_NODE_ID, min_length=1, max_length=100)]


class MigrationRequest(WireModel):
    """Which executions to move from which version to which, node by node."""

    from_version: int = Field(ge=1, le=2**31, description="The version they run now.")
    to_version: int = Field(ge=1, le=2**31, description="The version to move them to.")
    node_map: dict[NodeId, NodeId] = Field(
        default_factory=dict,
        max_length=MAX_NODE_MAP,
        description="Old node id -> its counterpart in the new version, for nodes renamed;"
        " a node not named here keeps its id.",
    )
    filter: ExecutionFilterBody = Field(
        default_factory=ExecutionFilterBody,
        description="The executions listing's filters: only the executions they select.",
    )
    dry_run: bool = Field(default=False, description="Only count and check; move nothing.")
    reason: Text | None = Field(
        default=None, max_length=1_000, description="Why: kept in each execution's audit."
    )
    limit: int = Field(
        default=MAX_LIMIT,
        ge=1,
        le=MAX_LIMIT,
        description="The most executions of `fromVersion` this call examines.",
    )
    cursor: str | None = Field(
        default=None, max_length=500, description="`nextCursor` of the previous call."
    )


class NodeCountOut(WireModel):
    node_id: str = Field(description="A node of `fromVersion` executions sit at.")
    count: int = Field(description="How many (of this call's).")
    counterpart: str | None = Field(description="Its node in `toVersion`; null: none.")
    missing_variables: list[str] = Field(
        description="Variables the new version reads from the counterpart on (and does not"
        " set on the way) that at least one of these executions lacks."
    )


class SkippedOut(WireModel):
    execution_id: str
    reason: str = Field(description="Why it does not move (or would not).")


class MigrationOut(WireModel):
    """What the call found (dry run) or did."""

    flow_id: str
    dry_run: bool
    from_version: int
    to_version: int
    total: int = Field(description="The active executions of `fromVersion` examined.")
    movable: int | None = Field(default=None, description="Dry run: how many would move.")
    moved: int | None = Field(default=None, description="How many moved.")
    nodes: list[NodeCountOut]
    skipped: list[SkippedOut] = Field(description="At most 100; `skippedTotal` counts all.")
    skipped_total: int
    next_cursor: str | None = Field(
        description="Pass as `cursor` (same body) to go on past `limit`; null: done."
    )


def _invalid(field: str, message: str) -> Problem:
    return Problem(
        422, f"{field}: {message}", kind="invalid", errors=[{"field": field, "message": message}]
    )


def _position(cursor: str) -> tuple[int, float, str]:
    """Where a previous call stopped (:func:`~trilha.api.cursors.encode_cursor`'s form);
    422 naming ``body.cursor`` for anything this route never gave out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        index, created_at, execution_id = orjson.loads(raw)
        if (
            not isinstance(index, int)
            or not 0 <= index < len(ACTIVE_ORDER)
            or isinstance(created_at, bool)
            or not isinstance(created_at, int | float)
            or not isinstance(execution_id, str)
        ):
            raise ValueError("unexpected content")
        return index, float(created_at), execution_id
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise _invalid("body.cursor", "pass nextCursor as it was given") from None


@router.post(
    "/{flowId}/migrations",
    summary="Move a flow's waiting executions to another version (or count them: dryRun)",
    responses={
        200: {"model": MigrationOut, "description": "Counted (dryRun) or moved."},
        **problems(
            403,
            404,
            422,
            **{
                "404": "No such flow for this key.",
                "422": "A version the flow does not have, the same version twice, a `nodeMap`"
                " naming nodes the versions do not have, or a body of the wrong shape.",
            },
        ),
    },
)
async def migrate(
    request: Request,
    flow_id: FlowIdPath,
    principal: Writer,
    body: MigrationRequest,
    institution_id: InstitutionQuery = None,
) -> JSONResponse:
    state = state_of(request.app)
    store, engine = state.runtime.store, state.runtime.engine
    owner = owner_for(principal, institution_id)
    latest = await resolve(store, owner, flow_id)
    if latest is None:
        raise not_found(f"flow '{flow_id}'")
    if body.to_version == body.from_version:
        raise _invalid("body.toVersion", "must differ from fromVersion")
    for name, version in (("fromVersion", body.from_version), ("toVersion", body.to_version)):
        if await store.get_flow(latest.flow_id, version) is None:
            raise _invalid(f"body.{name}", f"flow '{flow_id}' has no version {version}")
    given = body.filter.flow_id
    if given is not None and given not in (flow_id, latest.flow_id):
        raise _invalid("body.filter.flowId", f"the path names the flow ('{flow_id}')")
    old = await engine.flow(latest.flow_id, body.from_version)
    new = await engine.flow(latest.flow_id, body.to_version)
    for old_id, new_id in body.node_map.items():
        if old.node(old_id) is None:
            raise _invalid(f"body.nodeMap.{old_id}", f"v{old.version} has no node '{old_id}'")
        if new.node(new_id) is None:
            raise _invalid(f"body.nodeMap.{old_id}", f"v{new.version} has no node '{new_id}'")
    # a shared flow's executions are those of the key's institution; an institution's
    # own flow has no others (the filter's institution holds in any case)
    flow_owner, _ = split_id(latest.flow_id)
    institution = owner if owner is not None else flow_owner
    where = await filter_of(
        body.filter.model_copy(update={"flow_id": None}),
        store=store,
        institution=institution,
        now=engine.clock.now(),
        stuck_grace=state.runtime.worker.sweeper.grace_seconds,
    )
    # a call may examine thousands of executions: it spends the key's rate limit in
    # proportion to how many it may examine (the default limit: 5 requests' worth more)
    charge(request, principal, body.limit / EXAMINED_PER_REQUEST)
    result = await Mover(store, engine).run(
        old,
        new,
        body.node_map,
        where,
        dry_run=body.dry_run,
        actor=actor_of(principal),
        reason=body.reason,
        limit=body.limit,
        after=_position(body.cursor) if body.cursor is not None else None,
    )
    if result.moved and not body.dry_run:
        state.wake()  # a moved question whose reply arrived meanwhile is due now
    answer: dict[str, Any] = {"flowId": flow_id, **result.wire()}
    position = result.next_position
    answer["nextCursor"] = encode_cursor(*position) if position is not None else None
    return JSONResponse(answer)
