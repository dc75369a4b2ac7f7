"""The API's routers, in the order the OpenAPI document lists them."""

from __future__ import annotations

from fastapi import APIRouter

from trilha.api.routes import (
    debugger,
    dependencies,
    errors,
    events,
    executions,
    flows,
    handback,
    health,
    insight,
    messages,
    operator,
    outbox,
    statuses,
)

ROUTERS: list[APIRouter] = [
    health.router,
    flows.router,
    insight.router,  # before executions: /v1/executions/counts is not an id
    errors.router,
    dependencies.router,
    executions.router,
    messages.router,
    handback.router,
    statuses.router,
    operator.router,
    outbox.router,
    events.router,
    debugger.router,
]
