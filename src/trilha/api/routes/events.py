"""Live events as Server-Sent Events: one execution's, or a tenant's.

``GET /v1/executions/{executionId}/events`` and ``GET /v1/events?flowId=&status=``
answer ``text/event-stream``. Every trail line is one event::

    id: 1234                      the line's global trail id (resume from it)
    event: state | node | message | log
    data: {wire line of DESIGN §5, executionId, institutionId, flowId, status}

``state`` is ``execution.state_changed``; ``node`` is ``node.entered`` and
``node.left``; ``message`` is ``message.queued`` (a step queued it for the contact),
``message.received`` and what became of a queued message (``message.delivered``,
``message.delivery_failed``, ``message.dead``, ``message.redriven``, and the channel's
receipts, ``message.status``); every
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

Both routes take a place from the process's :class:`~trilha.api.events.StreamGate`
before they answer: past ``api.max_streams_per_key`` streams of one key, or
``api.max_streams`` in the process, a new one gets 429 with ``Retry-After``. A
stream whose key is revoked (or changes tenant or role) ends within seconds, with a
last comment saying why; reconnecting then gets 401.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from trilha.api.app import state_of
from trilha.api.auth import Principal, Viewer
from trilha.api.events import (
    CLOSE_GRACE_SECONDS,
    END,
    Ended,
    EventFilter,
    EventHub,
    Opened,
    Ping,
    StreamsFull,
    StreamSlot,
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
#: what a stream refused for want of room is told to wait: streams are long-lived, a
#: place frees when one of them ends
STREAMS_RETRY_AFTER_SECONDS = 5

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

_TOO_MANY = {
    "429": "This key's rate limit, or its open streams (`api.max_streams_per_key`) or the"
    " server's (`api.max_streams`) are at their limit; wait `Retry-After` seconds."
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

    def __init__(
        self, frames: AsyncGenerator[bytes, None], hub: EventHub, slot: StreamSlot
    ) -> None:
        # no Response.__init__: it would declare a Content-Length for an empty body
        self.frames = frames
        self.hub = hub
        #: the stream's place in the gate, given back when the response ends
        self.slot = slot
        self.status_code = 200
        self.background = None
        self.init_headers(
            {
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # a buffering proxy would hold events back
            }
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(send, receive)
        finally:
            self.slot.release()

    async def _stream(self, send: Send, receive: Receive) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def pump() -> None:
            try:
                async with aclosing(self.frames) as frames:
                    async for chunk in frames:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                        # a turn of the loop per frame: a replayed backlog is sent without
                        # waiting on anything, and without it the loop never hears that the
                        # client left (every write to the dead socket logs a plain line)
                        await asyncio.sleep(0)
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

        revoked = asyncio.create_task(self.slot.revoked.wait())
        streaming = asyncio.create_task(pump())
        watchers = [
            asyncio.create_task(client_left()),
            asyncio.create_task(server_stops()),
            revoked,
        ]
        tasks = [streaming, *watchers]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            cut = revoked.done() and not streaming.done()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if cut:
            # the key no longer stands: nothing more goes out but the reason, and a
            # client that stopped reading is not waited for
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(self._close(send), CLOSE_GRACE_SECONDS)
            return
        failure = None if streaming.cancelled() else streaming.exception()
        if failure is not None:
            raise failure

    @staticmethod
    async def _close(send: Send) -> None:
        await send({"type": "http.response.body", "body": REVOKED, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def frame(event_id: int | None, kind: str, data: Mapping[str, Any]) -> bytes:
    """One SSE event. The JSON is compact, so it holds no raw newline: one ``data:``."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\n".encode() + b"data: " + orjson.dumps(data, default=str) + b"\n\n"


PING = b": keep-alive\n\n"
#: sent once the subscription is registered: a client knows its stream is live
OPEN = b": stream open\n\n"
#: the last words of a stream whose key was revoked (a comment: parsers skip it)
REVOKED = b": closed: the API key was revoked or changed\n\n"


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


def _slot(request: Request, principal: Principal) -> StreamSlot:
    """A place for the stream in the process's gate, or 429 with ``Retry-After``."""
    gate = state_of(request.app).streams
    if gate is None:
        raise _stopping()
    try:
        return gate.open(principal)
    except StreamsFull as full:
        whose = (
            f"key {principal.key_id} holds {full.limit} open event streams, its limit"
            " (api.max_streams_per_key): close one first"
            if full.scope == "key"
            else f"the server holds {full.limit} open event streams, its limit (api.max_streams)"
        )
        raise Problem(
            429,
            whose,
            kind="limit_exceeded",
            headers={"Retry-After": str(STREAMS_RETRY_AFTER_SECONDS)},
            extra={
                "kind": "limit",
                "limit": full.limit,
                "scope": full.scope,
                "setting": "api.max_streams_per_key" if full.scope == "key" else "api.max_streams",
            },
        ) from None


def _hub(request: Request) -> EventHub:
    hub = state_of(request.app).hub
    if hub is None or hub.closed.is_set():
        raise _stopping()
    return hub


def _stopping() -> Problem:
    return Problem(
        503,
        "the server is stopping; reconnect with Last-Event-ID to resume",
        kind="unavailable",
        headers={"Retry-After": "1"},
    )


@router.get(
    "/v1/executions/{executionId}/events",
    response_class=EventStreamResponse,
    status_code=200,
    responses={**_DOC, **problems(404, **_TOO_MANY)},
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
    slot = _slot(request, principal)  # last: nothing after it can fail and keep the place
    frames = _frames(
        hub, flt, after=0 if after is None else after, ping_seconds=ping, status=status
    )
    return EventStreamResponse(frames, hub, slot)


@router.get(
    "/v1/events",
    response_class=EventStreamResponse,
    status_code=200,
    responses={**_DOC, **problems(**_TOO_MANY)},
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
    slot = _slot(request, principal)
    return EventStreamResponse(_frames(hub, flt, after=after, ping_seconds=ping), hub, slot)
