"""Calendars: an institution's business hours, by name.

``PUT /v1/calendars/{name}`` stores one for the key's institution (replacing one of
that name), ``GET /v1/calendars`` lists what its flows see, ``GET
/v1/calendars/{name}`` reads one, ``DELETE`` forgets it. What a flow sees is
trilha.toml's calendars for the institution (``[calendars.NAME]`` with no
``institutions`` or naming it) with the institution's own ones in place of any of the
same name: deleting its own brings trilha.toml's back; trilha.toml's own cannot be
deleted here. Another institution's calendars do not exist for a key (404), and an
admin key names the institution it means (``?institutionId=``).

Each answer says whether the calendar is open now and when it next opens, so an
operator can check a calendar before a flow relies on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from trilha.api.app import state_of
from trilha.api.auth import Principal, Viewer, Writer
from trilha.api.problems import Problem, not_found, problems
from trilha.config import Config
from trilha.core import calendars
from trilha.core.calendars import CALENDAR_NAME_PATTERN, CalendarDefinition
from trilha.core.dates import iso as iso_date
from trilha.core.execution import iso
from trilha.core.flow import FLOW_ID_PATTERN, Flow, node_calendars
from trilha.core.flow import Problem as FlowProblem
from trilha.core.wire import WireModel
from trilha.engine.calendars import institution_calendars
from trilha.errors import LimitExceeded
from trilha.store.base import Store

router = APIRouter(prefix="/v1/calendars", tags=["calendars"])

CalendarNamePath = Annotated[
    str,
    Path(
        alias="name",
        pattern=CALENDAR_NAME_PATTERN,
        max_length=64,
        description="The calendar's name, as flows write it (`is_open('clinic')`).",
    ),
]
InstitutionQuery = Annotated[
    str | None,
    Query(
        alias="institutionId",
        pattern=FLOW_ID_PATTERN,
        max_length=200,
        description="Admin keys (required for them): the institution whose calendars.",
    ),
]


class CalendarOut(WireModel):
    name: str
    institution_id: str
    source: Literal["api", "config"] = Field(
        description="`api`: the institution's own (PUT); `config`: trilha.toml's."
    )
    created_at: str | None = Field(description="Stored calendars only.")
    updated_at: str | None = Field(description="Stored calendars only.")
    open_now: bool
    next_open: str | None = Field(
        description="When it next opens (now, when open), in its zone; null when it does"
        f" not open within {calendars.HORIZON_DAYS} days."
    )
    definition: dict[str, Any] = Field(description="The calendar, as it may be PUT back.")


class CalendarsOut(WireModel):
    calendars: list[CalendarOut]


def owner_of(principal: Principal, institution_id: str | None) -> str:
    """The institution a request addresses: the key's, or for an admin key the one it
    names (another tenant's is 404 for any other key)."""
    if principal.admin:
        if institution_id is None:
            raise Problem(
                422,
                "an admin key names the institution whose calendars it means",
                kind="invalid",
                errors=[{"field": "query.institutionId", "message": "required for an admin key"}],
            )
        return institution_id
    if institution_id is not None and institution_id != principal.institution_id:
        raise not_found(f"institution '{institution_id}'")
    return principal.institution_id


def calendar_json(
    name: str,
    institution_id: str,
    definition: dict[str, Any],
    now: float,
    *,
    created_at: float | None = None,
    updated_at: float | None = None,
) -> dict[str, Any]:
    open_now, opens = False, None
    try:
        compiled = calendars.calendar_from_wire(definition)
        moment = datetime.fromtimestamp(now, UTC)
        open_now = calendars.is_open(compiled, moment)
        found = calendars.next_open(compiled, moment)
        opens = None if found is None else iso_date(found)
    except calendars.CalendarError:
        pass  # stored before a rule it breaks: shown as it is, never open
    return {
        "name": name,
        "institutionId": institution_id,
        "source": "config" if created_at is None else "api",
        "createdAt": iso(created_at),
        "updatedAt": iso(updated_at),
        "openNow": open_now,
        "nextOpen": opens,
        "definition": definition,
    }


async def missing_calendars(
    store: Store, config: Config, owner: str | None, flow: Flow
) -> list[FlowProblem]:
    """Warnings for the calendars an institution's ``flow`` names that it has none of
    yet: it may be defined after the flow, but a contact reaching the node would meet an
    error. (A shared flow's calendars are each running institution's: nothing to say.)"""
    if owner is None:
        return []
    named = [
        (f"nodes[{i}].{path}", name)
        for i, node in enumerate(flow.nodes)
        for path, name in node_calendars(node)
        if name is not None
    ]
    if not named:
        return []
    known = await institution_calendars(store, config, owner, sorted({n for _, n in named}))
    found: dict[str, FlowProblem] = {}
    for path, name in named:
        if name not in known and name not in found:
            found[name] = FlowProblem(
                path, f"no calendar '{name}' exists for institution '{owner}' (yet)", "warning"
            )
    return list(found.values())


@router.put(
    "/{name}",
    summary="Store a calendar of the institution (replacing one of that name)",
    response_model=CalendarOut,
    status_code=201,
    responses={
        200: {
            "model": CalendarOut,
            "description": "Replaced: the institution had a calendar of that name.",
        },
        201: {"model": CalendarOut, "description": "A new calendar was stored."},
        **problems(403, 404, 409, **{"409": "the institution keeps its most calendars"}),
    },
)
async def put_calendar(
    request: Request,
    name: CalendarNamePath,
    principal: Writer,
    definition: Annotated[CalendarDefinition, Body(description="The calendar.")],
    institution_id: InstitutionQuery = None,
) -> JSONResponse:
    state = state_of(request.app)
    owner = owner_of(principal, institution_id)
    now = state.runtime.engine.clock.now()
    try:
        stored, created = await state.runtime.store.put_calendar(
            owner,
            name,
            definition.wire(),
            now=now,
            limit=state.config.api.max_calendars,
        )
    except LimitExceeded as exc:
        raise Problem(
            409, str(exc), kind="limit", extra={"limit": exc.details.get("limit")}
        ) from None
    body = calendar_json(
        name,
        owner,
        stored.definition,
        now,
        created_at=stored.created_at,
        updated_at=stored.updated_at,
    )
    return JSONResponse(body, status_code=201 if created else 200)


@router.get(
    "",
    summary="The calendars the institution's flows see",
    response_model=CalendarsOut,
    responses=problems(404),
)
async def list_calendars(
    request: Request, principal: Viewer, institution_id: InstitutionQuery = None
) -> dict[str, Any]:
    state = state_of(request.app)
    owner = owner_of(principal, institution_id)
    now = state.runtime.engine.clock.now()
    stored = {c.name: c for c in await state.runtime.store.list_calendars(owner)}
    configured = {n: c for n, c in state.config.calendars.items() if c.serves(owner)}
    out = []
    for name in sorted(configured.keys() | stored.keys()):
        own = stored.get(name)
        if own is None:
            out.append(calendar_json(name, owner, configured[name].wire(), now))
        else:
            out.append(
                calendar_json(
                    name,
                    owner,
                    own.definition,
                    now,
                    created_at=own.created_at,
                    updated_at=own.updated_at,
                )
            )
    return {"calendars": out}


@router.get(
    "/{name}",
    summary="A calendar the institution's flows see",
    response_model=CalendarOut,
    responses=problems(404),
)
async def get_calendar(
    request: Request,
    name: CalendarNamePath,
    principal: Viewer,
    institution_id: InstitutionQuery = None,
) -> dict[str, Any]:
    state = state_of(request.app)
    owner = owner_of(principal, institution_id)
    now = state.runtime.engine.clock.now()
    own = await state.runtime.store.get_calendar(owner, name)
    if own is not None:
        return calendar_json(
            name,
            owner,
            own.definition,
            now,
            created_at=own.created_at,
            updated_at=own.updated_at,
        )
    configured = state.config.calendars.get(name)
    if configured is None or not configured.serves(owner):
        raise not_found(f"calendar '{name}'")
    return calendar_json(name, owner, configured.wire(), now)


@router.delete(
    "/{name}",
    summary="Forget a calendar of the institution",
    status_code=204,
    responses={
        204: {"description": "Forgotten (trilha.toml's of that name, if any, applies again)."},
        **problems(403, 404, 409, **{"409": "the calendar is trilha.toml's"}),
    },
)
async def delete_calendar(
    request: Request,
    name: CalendarNamePath,
    principal: Writer,
    institution_id: InstitutionQuery = None,
) -> Response:
    state = state_of(request.app)
    owner = owner_of(principal, institution_id)
    if await state.runtime.store.delete_calendar(owner, name):
        return Response(status_code=204)
    configured = state.config.calendars.get(name)
    if configured is not None and configured.serves(owner):
        raise Problem(
            409,
            f"calendar '{name}' is trilha.toml's ([calendars.{name}]): change it there,"
            " or PUT one of that name to use in its place",
            kind="conflict",
        )
    raise not_found(f"calendar '{name}'")
