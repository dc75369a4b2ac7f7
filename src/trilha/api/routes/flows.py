"""Flows: publish a version, list, read, list versions.

Flows have an owner. Those of ``trilha serve --flows DIR`` (and those an admin
publishes without ``institutionId``) are *shared*: every institution may read
and run them. A flow an institution publishes is its own, stored as
``INSTITUTION/FLOW`` so two tenants' ``checkout`` never meet; the institution
names it ``checkout`` and, for that institution, its own flow hides a shared
one of the same name. Another institution's flows do not exist for a key (404).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse

from trilha.api.app import state_of
from trilha.api.auth import Principal, Viewer, Writer, charge
from trilha.api.calls import call_cycles
from trilha.api.problems import Problem, not_found, problems
from trilha.api.routes.calendars import missing_calendars
from trilha.api.wire import storable
from trilha.config import Config
from trilha.core.execution import iso
from trilha.core.flow import FLOW_ID_PATTERN, Flow, NodeTypes, parse_flow
from trilha.core.flow import Problem as FlowProblem
from trilha.core.tenancy import flow_candidates, split_id, stored_id
from trilha.runtime import dependency_access_problems
from trilha.store.base import Store, StoredFlow

router = APIRouter(prefix="/v1/flows", tags=["flows"])

#: a published flow costs one request of its key's rate limit per this many bytes
BYTES_PER_REQUEST = 16_384
#: the flows a publication looks up to warn about missing ones (a flow may name many)
MAX_REFERENCES_CHECKED = 50

FlowIdPath = Annotated[
    str,
    Path(alias="flowId", pattern=FLOW_ID_PATTERN, max_length=200, description="The flow's id."),
]
InstitutionQuery = Annotated[
    str | None,
    Query(
        alias="institutionId",
        pattern=FLOW_ID_PATTERN,
        max_length=200,
        description="Admin keys only: act on this institution's flows (default: shared ones).",
    ),
]


def owner_for(principal: Principal, institution_id: str | None) -> str | None:
    """Whose flows a request addresses: the key's institution, or for an admin the
    ``institutionId`` it names (``None``: the shared flows)."""
    if principal.admin:
        return institution_id
    if institution_id is not None and institution_id != principal.institution_id:
        raise not_found(f"institution '{institution_id}'")
    return principal.institution_id


async def resolve(
    store: Store, owner: str | None, flow_id: str, version: int | None = None
) -> StoredFlow | None:
    """The flow ``flow_id`` means for ``owner``: its own, else the shared one (the
    engine resolves a jump the same way: :func:`trilha.core.tenancy.flow_candidates`)."""
    for candidate in flow_candidates(owner, flow_id):
        found = await store.get_flow(candidate, version)
        if found is not None:
            return found
    return None


def flow_json(flow: StoredFlow) -> dict[str, Any]:
    owner, name = split_id(flow.flow_id)
    return {
        "flowId": name,
        "storedId": flow.flow_id,
        "institutionId": owner,
        "shared": owner is None,
        "version": flow.version,
        "createdAt": iso(flow.created_at),
        "definition": flow.definition | {"id": name},
    }


@router.put(
    "/{flowId}",
    summary="Publish a new version of a flow",
    responses={
        200: {"description": "unchanged: the latest version already has this definition"},
        201: {"description": "a new version was stored"},
        **problems(
            403,
            404,
            **{
                "404": "`institutionId` names another institution.",
                "422": "The flow is invalid (`errors` lists every problem), or the request"
                " does not have the expected shape.",
            },
        ),
    },
    status_code=201,
)
async def publish(
    request: Request,
    flow_id: FlowIdPath,
    principal: Writer,
    definition: Annotated[dict[str, Any], Body(description="The flow (see `trilha schema`).")],
    institution_id: InstitutionQuery = None,
) -> JSONResponse:
    state = state_of(request.app)
    owner = owner_for(principal, institution_id)
    # checking a flow costs CPU in proportion to its size: it spends the key's rate
    # limit in proportion too (a 1 MiB flow, 64 requests' worth), beyond the request
    extra = len(await request.body()) / BYTES_PER_REQUEST - 1
    if extra > 0:
        charge(request, principal, extra)
    body_id = definition.get("id", flow_id)
    if body_id != flow_id:
        raise Problem(
            422,
            f"the body's id {body_id!r} differs from the path's {flow_id!r}",
            kind="invalid",
            errors=[{"field": "body.id", "message": f"must be {flow_id!r} (the path's)"}],
        )

    # a flow may be 1 MiB and 5,000 nodes: checking it takes a few hundred milliseconds
    # of CPU, done beside the event loop rather than on it, which serves every tenant
    checked = await asyncio.to_thread(
        _check,
        definition | {"id": stored_id(owner, flow_id)},
        state.runtime.engine.processors.node_types,
        state.runtime.config,
    )
    if isinstance(checked, ValueError):
        raise Problem(
            422,
            f"flow '{flow_id}' cannot be stored: {checked}",
            kind="invalid",
            errors=[{"field": "body", "message": str(checked)}],
        )
    flow, problems, wire = checked
    errors = [p for p in problems if p.severity == "error"]
    if flow is None or errors:
        raise Problem(
            422,
            f"flow '{flow_id}' is invalid: {len(errors)} problem(s)",
            kind="flow_invalid",
            errors=[
                {"field": p.path or "flow", "message": p.message, "severity": p.severity}
                for p in problems
            ],
        )
    problems += await _missing_references(state.runtime.store, owner, flow)
    problems += await missing_calendars(state.runtime.store, state.runtime.config, owner, flow)
    problems += await call_cycles(flow, lambda ref: resolve(state.runtime.store, owner, ref))
    before = await state.runtime.store.get_flow(flow.id)
    version = await state.runtime.engine.publish(flow, wire)
    stored = await state.runtime.store.get_flow(flow.id, version)
    assert stored is not None
    created = before is None or before.version != version
    return JSONResponse(
        flow_json(stored) | {"warnings": [str(p) for p in problems if p.severity == "warning"]},
        status_code=201 if created else 200,
    )


async def _missing_references(store: Store, owner: str | None, flow: Flow) -> list[FlowProblem]:
    """Warnings for the flows an institution's ``flow`` names that do not exist for it
    yet: it may be published first, but a contact reaching the node would meet an
    error. (A shared flow's names resolve per running institution: nothing to say.)"""
    found: list[FlowProblem] = []
    if owner is None:
        return found
    positions = {node.id: i for i, node in enumerate(flow.nodes)}
    named = [
        (f"nodes[{positions[node.id]}].{rel}", reference)
        for node in flow.nodes
        for rel, reference in node.flow_references()
    ]
    if flow.settings.fallback.fallback_flow_id:
        named.append(("settings.fallback.fallbackFlowId", flow.settings.fallback.fallback_flow_id))
    for path, reference in named[:MAX_REFERENCES_CHECKED]:
        if await resolve(store, owner, reference) is None:
            found.append(
                FlowProblem(
                    path,
                    f"no flow '{reference}' exists for institution '{owner}' (yet)",
                    "warning",
                )
            )
    return found


def _check(
    definition: dict[str, Any], node_types: NodeTypes, config: Config
) -> ValueError | tuple[Flow | None, list[FlowProblem], dict[str, Any]]:
    """Everything publishing checks, with the flow's wire form to store: whether the
    store can keep it, the flow's own rules, and the dependencies its owner may call."""
    try:
        storable(definition)
    except ValueError as exc:
        return exc
    flow, problems = parse_flow(definition, node_types)
    if flow is None:
        return None, problems, {}
    problems += dependency_access_problems(flow, config)
    return flow, problems, flow.wire()


@router.get(
    "",
    summary="The latest version of every flow this key can run",
    responses=problems(404, **{"404": "`institutionId` names another institution."}),
)
async def list_flows(
    request: Request, principal: Viewer, institution_id: InstitutionQuery = None
) -> dict[str, Any]:
    store = state_of(request.app).runtime.store
    flows = await store.list_flows()
    if principal.admin and institution_id is None:
        visible = flows
    else:
        owner = owner_for(principal, institution_id)
        own = {split_id(f.flow_id)[1] for f in flows if split_id(f.flow_id)[0] == owner}
        visible = [
            f
            for f in flows
            if split_id(f.flow_id)[0] == owner
            or (split_id(f.flow_id)[0] is None and f.flow_id not in own)
        ]
    return {"flows": [flow_json(f) for f in sorted(visible, key=lambda f: f.flow_id)]}


@router.get(
    "/{flowId}",
    summary="A flow: its latest version, or `?version=N`",
    responses=problems(404, **{"404": "No such flow (or version) for this key."}),
)
async def get_flow(
    request: Request,
    flow_id: FlowIdPath,
    principal: Viewer,
    version: Annotated[int | None, Query(ge=1, le=2**31)] = None,
    institution_id: InstitutionQuery = None,
) -> dict[str, Any]:
    store = state_of(request.app).runtime.store
    found = await resolve(store, owner_for(principal, institution_id), flow_id, version)
    if found is None:
        raise not_found(f"flow '{flow_id}'" + (f" version {version}" if version else ""))
    return flow_json(found)


@router.get(
    "/{flowId}/versions",
    summary="Every version of a flow, oldest first",
    responses=problems(404, **{"404": "No such flow for this key."}),
)
async def versions(
    request: Request,
    flow_id: FlowIdPath,
    principal: Viewer,
    institution_id: InstitutionQuery = None,
) -> dict[str, Any]:
    store = state_of(request.app).runtime.store
    latest = await resolve(store, owner_for(principal, institution_id), flow_id)
    if latest is None:
        raise not_found(f"flow '{flow_id}'")
    return {
        "flowId": flow_id,
        "versions": [
            {"version": f.version, "createdAt": iso(f.created_at)}
            for f in await store.flow_versions(latest.flow_id)
        ],
    }
