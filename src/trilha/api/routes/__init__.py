"""The API's routers, in the order the OpenAPI document lists them."""

from __future__ import annotations

from fastapi import APIRouter

from trilha.api.routes import events, executions, flows, health, messages, operator

ROUTERS: list[APIRouter] = [
    health.router,
    flows.router,
    executions.router,
    messages.router,
    operator.router,
    events.router,
]
