"""Liveness, readiness and metrics: what a load balancer and Prometheus ask.

``/healthz`` and ``/readyz`` answer anyone (they say nothing about any tenant).
``/metrics`` spans every institution (flow ids, error counts by institution), so it
answers an admin key only (401 without a key, 403 for another key), or, with
``[metrics] listen`` set, is not served here at all (404) but on that address,
without a key, for a scraper on a private network."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from trilha.api.app import state_of
from trilha.api.auth import administrator, authenticated
from trilha.api.problems import Problem, problems
from trilha.errors import TrilhaError

router = APIRouter(tags=["health"])

#: a store that does not answer a count in this long is not ready
READY_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, dict[str, Any]] = Field(
        description="`store`, `migrations`, `workers`: each `{ok, ...}`."
    )


@router.get(
    "/readyz",
    summary="The store answers, its schema is current and the workers run",
    responses={
        200: {"model": Readiness},
        503: {"model": Readiness, "description": "not ready; `checks` says what failed"},
    },
)
async def readyz(request: Request) -> JSONResponse:
    state = state_of(request.app)
    checks: dict[str, Any] = {}
    try:
        stats = await asyncio.wait_for(
            state.runtime.store.queue_stats(state.runtime.engine.clock.now()),
            READY_TIMEOUT_SECONDS,
        )
        checks["store"] = {"ok": True, "due": stats.due, "waiting": stats.waiting}
    except (TrilhaError, TimeoutError) as exc:
        checks["store"] = {"ok": False, "error": str(exc) or "no answer in time"}
    # the store applies pending migrations when it opens: serving means they are applied
    checks["migrations"] = {"ok": True}
    alive = state.workers_alive()
    checks["workers"] = {"ok": alive, "loops": state.options.workers}
    ready = all(check["ok"] for check in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


async def metrics_reader(request: Request) -> None:
    """404 when ``[metrics] listen`` serves ``/metrics`` elsewhere (whatever the key),
    else an admin key (401, 403 otherwise)."""
    if state_of(request.app).config.metrics.listen is not None:
        raise Problem(
            404,
            "/metrics is not served on this address but on the metrics listener ([metrics] listen)",
            kind="not_found",
        )
    await administrator(await authenticated(request))


@router.get(
    "/metrics",
    summary="Prometheus metrics (an admin key)",
    response_class=Response,
    dependencies=[Depends(metrics_reader)],
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
        **problems(404, **{"404": "Served on `[metrics] listen` instead, without a key."}),
        # (problems(403) would also list the 400/413/415 of a body; a GET has none)
        403: problems(403, **{"403": "The key is not an admin's: metrics span every tenant."})[403],
    },
)
async def metrics(request: Request) -> Response:
    """The Prometheus text of this process: every institution's, for an admin."""
    registry = state_of(request.app).runtime.metrics
    body = registry.render() if registry is not None else b""
    return Response(body, media_type=CONTENT_TYPE_LATEST)
