"""The API's routers, in the order the OpenAPI document lists them."""

from __future__ import annotations

from fastapi import APIRouter

from trilha.api.routes import (
    apidocs,
    bulk,
    calendars,
    contacts,
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
    migrations,
    operator,
    outbox,
    signals,
    statuses,
    triggers,
    whatsapp,
)

ROUTERS: list[APIRouter] = [
    health.router,
    flows.router,
    migrations.router,
    insight.router,  # before executions: /v1/executions/counts is not an id
    bulk.router,  # likewise /v1/executions/bulk
    errors.router,
    dependencies.router,
    calendars.router,
    executions.router,
    messages.router,
    triggers.router,
    contacts.router,
    handback.router,
    statuses.router,
    operator.router,
    signals.router,
    outbox.router,
    events.router,
    debugger.router,
    apidocs.router,
    whatsapp.router,
]
