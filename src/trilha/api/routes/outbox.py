"""Undelivered messages: seen and sent again.

``GET /v1/outbox?status=dead|pending`` lists the messages the dispatcher gave up on
(``dead``: every attempt failed) or that still wait for an attempt (``pending``),
oldest first, a page at a time (``limit``, ``cursor``), scoped to the key's
institution like every read (an admin key sees every one, or the one
``institutionId`` names). ``POST /v1/outbox/{id}/redrive`` (operator or admin) makes
one due now with its attempts reset; the trail says so (``message.redriven``, with
the key as the actor), and the dispatcher then sends it with its own idempotency key,
so a channel that did receive an earlier attempt can recognise the repeat. Another
institution's message is 404; a sent one is 409 (there is nothing to send again).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from trilha.api.app import state_of
from trilha.api.auth import Viewer, Writer
from trilha.api.cursors import decode_cursor, encode_cursor
from trilha.api.problems import Problem, not_found, problems
from trilha.api.routes.executions import InstitutionQuery, actor_of, read_scope
from trilha.core.wire import WireModel
from trilha.outbox import MAX_ID, item_view

router = APIRouter(prefix="/v1/outbox", tags=["outbox"])

MAX_PAGE = 500


class OutboxItemOut(WireModel):
    """An outbound message that was not delivered (yet)."""

    id: int = Field(description="The message's id: what `/v1/outbox/{id}/redrive` takes.")
    idempotency_key: str = Field(description="Sent with every attempt; the same on a redrive.")
    execution_id: str
    institution_id: str
    conversation_id: str
    contact_id: str
    contact_masked: str = Field(description="The contact as a screen shows it (masked).")
    text: str
    status: Literal["pending", "dead"]
    attempts: int = Field(description="Failed attempts so far (reset by a redrive).")
    last_error: str | None = Field(description="Why the last attempt failed (masked).")
    next_attempt_at: str | None = Field(description="When it is tried next; null when dead.")
    created_at: str


class OutboxPage(WireModel):
    messages: list[OutboxItemOut] = Field(description="Oldest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: done.")


def _outbox_position(values: Any) -> int:
    """The last id of the previous page, as an outbox cursor holds it."""
    tag, last_id = values
    if tag != "outbox" or isinstance(last_id, bool) or not isinstance(last_id, int):
        raise ValueError("unexpected content")
    if not 0 <= last_id <= MAX_ID:
        raise ValueError("out of range")
    return last_id


@router.get(
    "",
    summary="Messages given up (dead) or waiting for another attempt (pending), oldest first",
    responses={200: {"model": OutboxPage}, **problems(404, 422)},
)
async def list_outbox(
    request: Request,
    principal: Viewer,
    status: Annotated[
        Literal["dead", "pending"],
        Query(description="`dead`: every attempt failed; `pending`: waiting for an attempt."),
    ] = "dead",
    institution_id: InstitutionQuery = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`nextCursor` of the previous page.")
    ] = None,
) -> JSONResponse:
    store = state_of(request.app).runtime.store
    institution = read_scope(principal, institution_id)
    after = decode_cursor(cursor, _outbox_position) if cursor is not None else None
    found = await store.list_outbox(
        status, institution_id=institution, after=after, limit=limit + 1
    )
    page = found[:limit]
    more = len(found) > limit and bool(page)
    return JSONResponse(
        {
            "messages": [item_view(m) for m in page],
            "nextCursor": encode_cursor("outbox", page[-1].id) if more else None,
        }
    )


MessageIdPath = Annotated[int, Path(alias="id", ge=1, le=MAX_ID, description="The message's id.")]


@router.post(
    "/{id}/redrive",
    summary="Send a dead (or pending) message again, now, with its attempts reset",
    responses={
        200: {"model": OutboxItemOut, "description": "Due now: the message as it is."},
        **problems(403, 404, 409, **{"409": "The message was delivered already."}),
    },
)
async def redrive(request: Request, message_id: MessageIdPath, principal: Writer) -> JSONResponse:
    state = state_of(request.app)
    done = await state.runtime.store.redrive_outbox(
        message_id,
        institution_id=principal.scope(),
        now=state.runtime.engine.clock.now(),
        actor=actor_of(principal),
    )
    if done.outcome == "not_found" or done.item is None:
        raise not_found(f"message {message_id}")
    if done.outcome == "sent":
        raise Problem(
            409,
            f"message {message_id} was delivered already: there is nothing to send again",
            kind="conflict",
            extra={"currentStatus": "sent"},
        )
    state.wake()  # the dispatcher runs in the workers' loop: send it now
    return JSONResponse(item_view(done.item))
