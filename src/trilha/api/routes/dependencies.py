"""Dependencies as the process sees them: each one's circuit breaker and who waits.

``GET /v1/dependencies`` answers, for each dependency the key's institution may call
(:func:`trilha.core.tenancy.dependency_denial`; an admin key: every one), its breaker
in this process (state, when it last opened and closed, the call that tripped it,
its recent calls' failure rate and latency), what counts against it, and how many of
the institution's executions wait for it. Breakers live in each process's memory:
another ``trilha serve`` or ``trilha worker`` on the same store has its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from trilha.api.app import state_of
from trilha.api.auth import Viewer
from trilha.api.problems import problems
from trilha.api.routes.executions import InstitutionQuery, read_scope
from trilha.config import DependencyConfig
from trilha.core.execution import iso
from trilha.core.tenancy import dependency_denial, stored_id
from trilha.core.wire import WireModel
from trilha.engine.engine import Engine
from trilha.observability.masking import mask_text
from trilha.resilience.breaker import BreakerSnapshot, BreakerState

router = APIRouter(tags=["insight"])

#: which snapshot speaks for a dependency when the process runs several worker loops
#: (each engine has its breakers): the one furthest from closed
_SEVERITY = {BreakerState.OPEN: 2, BreakerState.HALF_OPEN: 1, BreakerState.CLOSED: 0}


class TripOut(WireModel):
    """The call that last opened the breaker, and why it opened."""

    at: str | None
    reason: str = Field(description="`6 of 10 recent calls failed (60% >= 50%)`...")
    kind: Literal["timeout", "connect", "status"]
    status: int | None = Field(description="The HTTP status, for kind `status`.")
    request: str | None = Field(
        description="`METHOD URL` (masked); null when another institution's call tripped it."
    )
    message: str = Field(description="Masked; withheld as `request` is.")


class RecentOut(WireModel):
    """The calls in the breaker's window."""

    calls: int
    failures: int = Field(description="Of them, the failures that count against it.")
    failure_rate: float | None = Field(description="failures / calls; null with no calls.")
    errors: int = Field(
        description="Of them, the calls that failed at all, counted against it or not."
    )
    success_rate: float | None = Field(description="(calls - errors) / calls; null with no calls.")
    p50_ms: float | None
    p95_ms: float | None


class DependencyOut(WireModel):
    name: str
    state: Literal["closed", "open", "half_open"]
    opened_at: str | None = Field(description="When it last opened.")
    closed_at: str | None = Field(description="When it last closed (null: never opened).")
    retry_at: str | None = Field(description="When an open breaker lets probes through.")
    trip: TripOut | None
    recent: RecentOut
    refused: int = Field(description="Calls refused since it last opened.")
    waiting_executions: int = Field(description="The institution's executions waiting for it.")
    count: list[str] = Field(
        description="What counts against it (`breaker.count`): timeout, connect, 4xx, 5xx"
        " or a status; any other failure is the request's own."
    )


class DependenciesOut(WireModel):
    dependencies: list[DependencyOut]


@router.get(
    "/v1/dependencies",
    summary="The dependencies the institution may call, with this process's breakers",
    responses={200: {"model": DependenciesOut}, **problems(404, 422)},
)
async def dependencies(
    request: Request, principal: Viewer, institution_id: InstitutionQuery = None
) -> JSONResponse:
    state = state_of(request.app)
    institution = read_scope(principal, institution_id)
    declared = {
        name: dep
        for name, dep in sorted(state.config.dependencies.items())
        if institution is None or may_call(name, dep, institution)
    }
    waiting = await state.runtime.store.waiting_for_dependencies(institution)
    shown = []
    for name, dep in declared.items():
        snapshot = process_snapshot(name, state.engines)
        shown.append(
            dependency_json(name, snapshot, institution)
            | {"waitingExecutions": waiting.get(name, 0), "count": list(dep.breaker.count)}
        )
    return JSONResponse({"dependencies": shown})


def may_call(name: str, dep: DependencyConfig, institution: str) -> bool:
    """Whether a flow of ``institution``'s own may call dependency ``name``."""
    own_flow = stored_id(institution, name)
    return (
        dependency_denial(name, dep.institutions, flow_id=own_flow, institution_id=institution)
        is None
    )


def process_snapshot(name: str, engines: Iterable[Engine]) -> BreakerSnapshot | None:
    """The breaker of ``name`` in this process (``None``: never called here)."""
    found = [b.snapshot() for e in engines if (b := e.breakers.all().get(name)) is not None]
    return max(found, key=lambda s: (_SEVERITY[s.state], s.opened_at or 0.0), default=None)


#: what a trip's message reads when the call was another institution's
ANOTHER_INSTITUTIONS_CALL = "a call of another institution"


def dependency_json(
    name: str, snapshot: BreakerSnapshot | None, institution: str | None = None
) -> dict[str, Any]:
    """A dependency's breaker on the wire; one never called is closed, with no calls.

    A breaker is shared by every institution that may call the dependency, so the call
    that tripped it may be another's: ``institution`` (``None``: an admin reading them
    all) sees why it opened, but that call's request and message only if it was its own."""
    if snapshot is None:  # never called here: closed, with no calls
        snapshot = BreakerSnapshot(
            name=name,
            state=BreakerState.CLOSED,
            opened_at=None,
            closed_at=None,
            retry_at=None,
            trip=None,
            calls=0,
            failures=0,
            failure_rate=None,
            errors=0,
            latency_p50=None,
            latency_p95=None,
            refused=0,
        )
    trip = snapshot.trip
    # fails closed: a call of no known institution is not shown to one either
    foreign = trip is not None and institution is not None and trip.institution_id != institution
    return {
        "name": name,
        "state": snapshot.state.value,
        "openedAt": iso(snapshot.opened_at),
        "closedAt": iso(snapshot.closed_at),
        "retryAt": iso(snapshot.retry_at),
        "trip": None
        if trip is None
        else {
            "at": iso(trip.at),
            "reason": trip.reason,
            "kind": trip.kind,
            "status": trip.status,
            "request": None if trip.request is None or foreign else mask_text(trip.request),
            "message": ANOTHER_INSTITUTIONS_CALL if foreign else mask_text(trip.message),
        },
        "recent": {
            "calls": snapshot.calls,
            "failures": snapshot.failures,
            "failureRate": snapshot.failure_rate,
            "errors": snapshot.errors,
            "successRate": (snapshot.calls - snapshot.errors) / snapshot.calls
            if snapshot.calls
            else None,
            "p50Ms": _ms(snapshot.latency_p50),
            "p95Ms": _ms(snapshot.latency_p95),
        },
        "refused": snapshot.refused,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
