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
    health,
    insight,
    messages,
    operator,
    outbox,
    signals,
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
    statuses.router,
    operator.router,
    signals.router,
    outbox.router,
    events.router,
    debugger.router,
]
