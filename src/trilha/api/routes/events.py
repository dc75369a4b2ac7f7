"""Live events as Server-Sent Events: one execution's, or a tenant's.

``GET /v1/executions/{executionId}/events`` and ``GET /v1/events?flowId=&status=``
answer ``text/event-stream``. Every trail line is one event::

    id: 1234                      the line's global trail id (resume from it)
    event: state | node | message | log
    data: {wire line of DESIGN §5, executionId, institutionId, flowId, status}

``state`` is ``execution.state_changed``; ``node`` is ``node.entered`` and
``node.left``; ``message`` is ``message.sent`` and ``message.received``; every
other line (``execution.started``, ``execution.ended``, retries, operator
actions, warnings...) is ``log``. ``status`` is the execution's status when the
line was read (for a live line, what the commit that wrote it left).

Resuming: ``Last-Event-ID`` (what ``EventSource`` sends when it reconnects) or
``lastEventId`` for clients that cannot set headers (the header wins, being the
newer): the lines after it are replayed from the store, then live ones follow.
Without it an execution's stream starts at the beginning of its trail (a
debugger wants the history) and the tenant's stream starts now. An execution's
stream ends by itself shortly after the execution ends, with a last ``end``
event; ``EventSource`` clients should ``close()`` on it (or they reconnect and
get the same ``end`` again). A comment line keeps idle streams alive every
``api.sse_ping_seconds``. Every stream ends when the server stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from trilha.api.app import state_of
from trilha.api.auth import Viewer
from trilha.api.events import (
    CLOSE_GRACE_SECONDS,
    END,
    Ended,
    EventFilter,
    EventHub,
    Opened,
    Ping,
    event_data,
    event_type,
)
from trilha.api.problems import Problem, not_found, problems
from trilha.core.states import ExecutionStatus
from trilha.errors import CorruptedRecord, ExecutionNotFound, TrilhaError
from trilha.observability.logging import get_logger
from trilha.observability.trail import Identity

log = get_logger("trilha.api.events")

router = APIRouter(tags=["events"])

MEDIA_TYPE = "text/event-stream"
#: as in routes/executions.py: an id that cannot exist is refused before a store read
EXECUTION_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
#: SQLite's largest integer: a bigger id could not be bound as a parameter
MAX_ID = 2**63 - 1

_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "A stream of Server-Sent Events: `id` (trail line id), `event` (`state`, "
            "`node`, `message`, `log`; `end` closes an execution's stream) and `data` "
            "(JSON: the log line plus executionId, institutionId, flowId, status)."
        ),
        "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
    }
}

LastEventHeader = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID",
        ge=0,
        le=MAX_ID,
        description="Resume after this event id (sent by EventSource when it reconnects).",
    ),
]
LastEventQuery = Annotated[
    int | None,
    Query(
        alias="lastEventId",
        ge=0,
        le=MAX_ID,
        description="Resume after this event id, for clients that cannot set headers.",
    ),
]


class EventStreamResponse(Response):
    """Sends SSE frames as they come, and stops when the client leaves or the hub
    closes (server shutdown), even if the client stopped reading."""

    media_type = MEDIA_TYPE

    def __init__(self, frames: AsyncGenerator[bytes, None], hub: EventHub) -> None:
        # no Response.__init__: it would declare a Content-Length for an empty body
        self.frames = frames
        self.hub = hub
        self.status_code = 200
        self.background = None
        self.init_headers(
            {
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # a buffering proxy would hold events back
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def pump() -> None:
            try:
                async with aclosing(self.frames) as frames:
                    async for chunk in frames:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:
                pass  # the client went away mid-send: nothing left to tell it

        async def client_left() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        async def server_stops() -> None:
            # the stream ends by itself on close; this only cuts one whose client
            # stopped reading (a send that never returns) so shutdown is not held
            await self.hub.closed.wait()
            await asyncio.sleep(CLOSE_GRACE_SECONDS)

        streaming = asyncio.create_task(pump())
        watchers = [asyncio.create_task(client_left()), asyncio.create_task(server_stops())]
        tasks = [streaming, *watchers]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        failure = None if streaming.cancelled() else streaming.exception()
        if failure is not None:
            raise failure


def frame(event_id: int | None, kind: str, data: Mapping[str, Any]) -> bytes:
    """One SSE event. The JSON is compact, so it holds no raw newline: one ``data:``."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\n".encode() + b"data: " + orjson.dumps(data, default=str) + b"\n\n"


PING = b": keep-alive\n\n"
#: sent once the subscription is registered: a client knows its stream is live
OPEN = b": stream open\n\n"


async def _frames(
    hub: EventHub,
    flt: EventFilter,
    *,
    after: int | None,
    ping_seconds: float,
    status: str | None = None,
) -> AsyncGenerator[bytes, None]:
    items = hub.stream(flt, after=after, ping_seconds=ping_seconds, status=status)
    async with aclosing(items):
        try:
            async for item in items:
                if isinstance(item, Opened):
                    yield OPEN
                elif isinstance(item, Ping):
                    yield PING
                elif isinstance(item, Ended):
                    yield frame(
                        None, END, {"executionId": item.execution_id, "status": item.status}
                    )
                else:
                    identity = await hub.identity(item)
                    yield frame(
                        item.id, event_type(item.record.message), event_data(item, identity)
                    )
        except TrilhaError as exc:
            # the store went away mid-stream: end it; the client resumes from its last id
            log.warning("events.stream_failed", error=exc)


def _hub(request: Request) -> EventHub:
    hub = state_of(request.app).hub
    if hub is None or hub.closed.is_set():
        raise Problem(
            503,
            "the server is stopping; reconnect with Last-Event-ID to resume",
            kind="unavailable",
            headers={"Retry-After": "1"},
        )
    return hub


@router.get(
    "/v1/executions/{executionId}/events",
    response_class=EventStreamResponse,
    status_code=200,
    responses={**_DOC, **problems(404)},
    summary="An execution's live events (SSE), from the start of its trail",
)
async def execution_events(
    request: Request,
    principal: Viewer,
    execution_id: Annotated[
        str,
        Path(
            alias="executionId",
            pattern=EXECUTION_ID_PATTERN,
            max_length=100,
            description="The execution's id.",
        ),
    ],
    last_event_header: LastEventHeader = None,
    last_event_query: LastEventQuery = None,
) -> EventStreamResponse:
    """Every line of the execution's trail, then live ones; ends after it ends."""
    hub = _hub(request)
    store = state_of(request.app).runtime.store
    status: str | None
    try:
        execution = await store.get_execution(execution_id)
        institution: str | None = execution.institution_id
        status = execution.status.value
        hub.remember(execution_id, Identity.of(execution))
    except ExecutionNotFound:
        raise not_found(f"execution '{execution_id}'") from None
    except CorruptedRecord:
        # the row cannot be read, its trail can: the tenant is on every trail line
        first = await store.trail_since(0, limit=1, execution_id=execution_id)
        if not first:
            raise not_found(f"execution '{execution_id}'") from None
        institution, status = first[0].institution_id, first[0].status
    principal.check(institution, f"execution '{execution_id}'")
    after = last_event_header if last_event_header is not None else last_event_query
    flt = EventFilter(execution_id=execution_id, institution_id=principal.scope())
    ping = state_of(request.app).config.api.sse_ping_seconds
    frames = _frames(
        hub, flt, after=0 if after is None else after, ping_seconds=ping, status=status
    )
    return EventStreamResponse(frames, hub)


@router.get(
    "/v1/events",
    response_class=EventStreamResponse,
    status_code=200,
    responses={**_DOC, **problems()},
    summary="Live events of the key's institution (SSE), from now",
)
async def events(
    request: Request,
    principal: Viewer,
    flow_id: Annotated[
        str | None,
        Query(
            alias="flowId",
            max_length=200,
            description="Only this flow's executions (its name, or INSTITUTION/FLOW).",
        ),
    ] = None,
    status: Annotated[
        list[ExecutionStatus] | None,
        Query(description="Only executions in this status (repeat for several)."),
    ] = None,
    last_event_header: LastEventHeader = None,
    last_event_query: LastEventQuery = None,
) -> EventStreamResponse:
    """Lines of every execution the key sees (an admin's: all), from now or resumed."""
    hub = _hub(request)
    flt = EventFilter(
        institution_id=principal.scope(),
        flow_id=flow_id or None,
        statuses=frozenset(s.value for s in status) if status else None,
    )
    after = last_event_header if last_event_header is not None else last_event_query
    ping = state_of(request.app).config.api.sse_ping_seconds
    return EventStreamResponse(_frames(hub, flt, after=after, ping_seconds=ping), hub)
