"""Triggers: which flow a contact's message starts when nothing runs in its conversation.

``PUT /v1/triggers`` takes a JSON array and replaces the institution's triggers as a
whole; ``GET /v1/triggers`` reads them; ``DELETE /v1/triggers`` forgets them. A key
reads and writes its own institution's triggers only (an admin key names one with
``?institutionId=``); a trigger's ``flowId`` is a name, resolved as ``POST
/v1/executions`` resolves one (the institution's own flow, else the shared one), so a
trigger never starts another institution's flow. The rules are in
:mod:`trilha.core.triggers`.

Where triggers come from: ``[[triggers]]`` in ``trilha.toml`` (each with its
``institution``) are an institution's triggers until it sets its own through the API,
which then replace them entirely (an empty array included: no triggers at all);
``DELETE`` returns to the configuration's. ``GET`` says which apply (``source``:
``api``, ``config`` or ``none``).

Each process keeps an institution's triggers for :data:`CACHE_SECONDS` (a message costs
no store read for them); a change through this process applies at once, one through
another process within that time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field, ValidationError

from trilha.api.app import state_of
from trilha.api.auth import Principal, Viewer, Writer
from trilha.api.problems import Problem, problems
from trilha.api.routes.executions import actor_of, institution_for
from trilha.api.routes.flows import resolve
from trilha.config import Config
from trilha.core.execution import iso
from trilha.core.flow import FLOW_ID_PATTERN
from trilha.core.triggers import MAX_TRIGGERS, Trigger, TriggerSet, trigger_problems
from trilha.core.wire import WireModel
from trilha.observability.logging import get_logger
from trilha.store.base import Store, StoredTriggers

router = APIRouter(prefix="/v1/triggers", tags=["triggers"])
log = get_logger("trilha.api")

#: how long a process keeps an institution's triggers before reading them again
CACHE_SECONDS: Final = 2.0
#: institutions whose triggers a process keeps at once (the cache starts over past it)
CACHE_INSTITUTIONS: Final = 10_000

Source = Literal["api", "config", "none"]


class TriggerOut(WireModel):
    keywords: list[str] = Field(default_factory=list)
    flow_id: str
    default: bool = False
    interrupt: bool = False


class TriggersOut(WireModel):
    institution_id: str
    source: Source = Field(
        description="`api`: set with PUT /v1/triggers; `config`: the `[[triggers]]` of"
        " trilha.toml (the institution set none); `none`: neither."
    )
    updated_at: str | None = Field(description="When they were set through the API.")
    updated_by: str | None = Field(description="Who set them (`key:<id>`).")
    triggers: list[TriggerOut]


InstitutionQuery = Annotated[
    str | None,
    Query(
        alias="institutionId",
        pattern=FLOW_ID_PATTERN,
        max_length=200,
        description="Admin keys: the institution (required). Others: their own (default).",
    ),
]


@dataclass(frozen=True, slots=True)
class Effective:
    """The triggers that apply to an institution now, and where they come from."""

    institution_id: str
    source: Source
    triggers: TriggerSet
    stored: StoredTriggers | None = None

    def wire(self) -> dict[str, Any]:
        stored = self.stored
        return {
            "institutionId": self.institution_id,
            "source": self.source,
            "updatedAt": iso(stored.updated_at) if stored is not None else None,
            "updatedBy": stored.updated_by if stored is not None else None,
            "triggers": [t.wire() for t in self.triggers.triggers],
        }


class TriggerBook:
    """Each institution's triggers in effect, read from the store (else the
    configuration) and kept for :data:`CACHE_SECONDS`."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self._kept: dict[str, tuple[float, Effective]] = {}

    async def effective(self, institution_id: str) -> Effective:
        now = time.monotonic()
        kept = self._kept.get(institution_id)
        if kept is not None and kept[0] > now:
            return kept[1]
        found = await self._read(institution_id)
        if len(self._kept) >= CACHE_INSTITUTIONS:
            self._kept.clear()
        self._kept[institution_id] = (now + CACHE_SECONDS, found)
        return found

    def forget(self, institution_id: str) -> None:
        self._kept.pop(institution_id, None)

    async def _read(self, institution_id: str) -> Effective:
        stored = await self.store.get_triggers(institution_id)
        if stored is not None:
            return Effective(institution_id, "api", TriggerSet(_valid(stored)), stored)
        configured = self.config.triggers_of(institution_id)
        source: Source = "config" if configured else "none"
        return Effective(institution_id, source, TriggerSet(configured))


def _valid(stored: StoredTriggers) -> list[Trigger]:
    """The stored triggers that still pass their checks (a stored one that does not, set
    by an older trilha, is skipped and logged rather than failing every message)."""
    out = []
    for i, raw in enumerate(stored.triggers):
        try:
            out.append(Trigger.model_validate(raw))
        except ValidationError as exc:
            log.warning(
                "trigger.invalid",
                institutionId=stored.institution_id,
                position=i,
                error=str(exc.errors()[0].get("msg")),
            )
    return out


async def warn_unknown_flows(store: Store, config: Config) -> None:
    """Say at start which ``[[triggers]]`` name a flow their institution cannot start
    (not published yet, or a typo): a message matching one would find nothing to start."""
    for trigger in config.triggers:
        if await resolve(store, trigger.institution, trigger.flow_id) is None:
            log.warning(
                "trigger.flow_missing",
                institutionId=trigger.institution,
                flowId=trigger.flow_id,
                hint="publish the flow (shared with --flows DIR, or the institution's own)"
                " or fix flow_id under [[triggers]] in trilha.toml",
            )


def trigger_book(request: Request) -> TriggerBook:
    """The process's :class:`TriggerBook` (made on first use)."""
    return trigger_book_of(request.app)


def trigger_book_of(app: Any) -> TriggerBook:
    """:func:`trigger_book` for work the app does outside a request (a webhook's)."""
    book: TriggerBook | None = getattr(app.state, "trigger_book", None)
    if book is None:
        state = state_of(app)
        book = app.state.trigger_book = TriggerBook(state.runtime.store, state.config)
    return book


def _institution(principal: Principal, institution_id: str | None) -> str:
    """The institution a request addresses: the key's (another one's is 404), or for an
    admin key the one it names (required)."""
    try:
        return institution_for(principal, institution_id)
    except Problem as exc:
        if exc.status == 422:  # institution_for names the body's field; here it is a query
            raise Problem(
                422,
                "an admin key must name the institution: ?institutionId=",
                kind="invalid",
                errors=[{"field": "query.institutionId", "message": "required for admin keys"}],
            ) from None
        raise


@router.get(
    "",
    summary="The institution's triggers, and where they come from",
    responses={200: {"model": TriggersOut}, **problems(404)},
)
async def get_triggers(
    request: Request, principal: Viewer, institution_id: InstitutionQuery = None
) -> JSONResponse:
    institution = _institution(principal, institution_id)
    book = trigger_book(request)
    book.forget(institution)  # a read shows what is stored now, not what was kept
    return JSONResponse((await book.effective(institution)).wire())


@router.put(
    "",
    summary="Replace the institution's triggers",
    responses={
        200: {"model": TriggersOut, "description": "Stored: the triggers now in effect."},
        **problems(
            403,
            404,
            **{
                "422": "A trigger is malformed, names a flow the institution cannot start,"
                " repeats another's keyword or is a second default (`errors` names each).",
            },
        ),
    },
)
async def put_triggers(
    request: Request,
    principal: Writer,
    body: Annotated[
        list[Trigger],
        Body(
            max_length=MAX_TRIGGERS,
            description="Every trigger of the institution, in order of precedence: a"
            ' keyword trigger `{"keywords": ["oi", "menu"], "flowId": "clinic"}`, with'
            ' `"interrupt": true` to start it even while another flow runs; at most one'
            ' `{"default": true, "flowId": "welcome"}`.',
        ),
    ],
    institution_id: InstitutionQuery = None,
) -> JSONResponse:
    state = state_of(request.app)
    store = state.runtime.store
    institution = _institution(principal, institution_id)
    errors = [
        {"field": path, "message": message}
        for path, message in trigger_problems(body, "body[{}]".format)
    ]
    for i, trigger in enumerate(body):
        if await resolve(store, institution, trigger.flow_id) is None:
            errors.append(
                {
                    "field": f"body[{i}].flowId",
                    "message": f"no flow '{trigger.flow_id}' of institution '{institution}'"
                    " or shared: publish it first",
                }
            )
    if errors:
        raise Problem(
            422,
            f"the triggers were not stored: {errors[0]['field']}: {errors[0]['message']}",
            kind="invalid",
            errors=errors,
        )
    now = state.runtime.engine.clock.now()
    await store.put_triggers(
        institution, [t.wire() for t in body], now=now, actor=actor_of(principal)
    )
    book = trigger_book(request)
    book.forget(institution)
    log.info(
        "triggers.replaced",
        institutionId=institution,
        triggers=len(body),
        actor=actor_of(principal),
    )
    return JSONResponse((await book.effective(institution)).wire())


@router.delete(
    "",
    summary="Forget the institution's triggers: the configuration's apply again",
    responses={200: {"model": TriggersOut}, **problems(403, 404)},
)
async def delete_triggers(
    request: Request, principal: Writer, institution_id: InstitutionQuery = None
) -> JSONResponse:
    institution = _institution(principal, institution_id)
    await state_of(request.app).runtime.store.delete_triggers(institution)
    book = trigger_book(request)
    book.forget(institution)
    log.info("triggers.deleted", institutionId=institution, actor=actor_of(principal))
    return JSONResponse((await book.effective(institution)).wire())
