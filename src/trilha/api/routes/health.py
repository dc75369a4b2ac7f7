"""Liveness, readiness and metrics: what a load balancer and Prometheus ask."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from trilha.api.app import state_of
from trilha.errors import TrilhaError

router = APIRouter(tags=["health"])

#: a store that does not answer a count in this long is not ready
READY_TIMEOUT_SECONDS = 2.0


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The store answers, its schema is current and the workers run",
    responses={503: {"description": "not ready; `checks` says what failed"}},
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


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry = state_of(request.app).runtime.metrics
    body = registry.render() if registry is not None else b""
    return Response(body, media_type=CONTENT_TYPE_LATEST)
