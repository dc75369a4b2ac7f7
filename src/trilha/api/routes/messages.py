"""Inbound messages: the contact's replies, delivered by the platform.

``POST /v1/conversations/{conversationId}/messages`` stores the message durably
(:meth:`~trilha.store.base.Store.deliver_inbound`) before it answers 202, and the
store wakes the conversation's active execution: a worker applies its messages in
the order they were received. A repeated ``messageId`` in the conversation is
acknowledged (202, ``"duplicate": true``) and ignored, whenever it comes: also after
the execution it went to has ended, so a platform's retry never turns into an error.

A message for a conversation with **no active execution** answers 404
(``urn:trilha:problem:no_active_execution``) and is **not stored**. What a platform
does then is its own choice (start a flow for it with ``POST /v1/executions`` and send
the message again, or route the contact to a person); storing the message would only
keep a reply that nothing will ever read, and its ``messageId`` would then count as a
duplicate when sent again after the start, so that second delivery would be ignored.
The conversation's executions are looked up first, and the message is attached to
the active one in the store's transaction: one that ends meanwhile refuses it
(nothing stored, 404), never silently drops it.

Back-pressure never applies here: replies keep conversations already running moving.

A message has a ``type`` (default ``text``): ``button`` and ``list`` replies carry the
``replyId`` tapped, ``media`` a file by link, ``location`` a place
(:mod:`trilha.inbound` checks each). The store keeps the structured form as the
message's ``content`` and a plain rendering as its ``text``, so readers of text alone
see the title tapped, the caption or ``[image]``, the place's name or coordinates.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from trilha.api.app import state_of
from trilha.api.auth import Writer
from trilha.api.idempotency import IdempotencyKey, idempotent
from trilha.api.problems import Problem, problems
from trilha.api.routes.executions import (
    EXTERNAL_ID_PATTERN,
    ExternalId,
    institution_for,
)
from trilha.api.wire import JsonObject
from trilha.core.execution import Execution, iso
from trilha.core.flow import FLOW_ID_PATTERN
from trilha.core.wire import WireModel
from trilha.errors import CorruptedRecord, ExecutionEnded, ExecutionNotFound
from trilha.inbound import InboundContent
from trilha.store.base import InboundResult, Store

router = APIRouter(prefix="/v1/conversations", tags=["messages"])

ConversationIdPath = Annotated[
    str,
    Path(
        alias="conversationId",
        pattern=EXTERNAL_ID_PATTERN,
        max_length=200,
        description="The platform's conversation id.",
    ),
]


class InboundMessageIn(InboundContent):
    """A contact's message, as the platform received it: a text (``{"text": "oi"}``), a
    button or list reply, a photo or document, a location (:class:`InboundContent`)."""

    message_id: ExternalId = Field(description="The platform's id: repeats are ignored.")
    contact_id: ExternalId
    payload: JsonObject | None = Field(
        default=None, description="Anything else the channel carried (a button's value...)."
    )
    institution_id: str | None = Field(
        default=None,
        pattern=FLOW_ID_PATTERN,
        max_length=200,
        description="Default: the key's; admin keys must name one.",
    )


class MessageAccepted(WireModel):
    accepted: bool = Field(description="Always true: the message is stored.")
    duplicate: bool = Field(description="This messageId had been received already: ignored.")
    message_id: str
    conversation_id: str
    execution_id: str | None = Field(description="The execution the message goes to.")
    received_at: str | None = Field(description="When it was first received.")


@router.post(
    "/{conversationId}/messages",
    summary="Deliver a contact's message to the conversation's active execution",
    status_code=202,
    responses={
        202: {"model": MessageAccepted, "description": "Stored (or a duplicate, ignored)."},
        **problems(
            403,
            404,
            **{
                "404": "The conversation has no active execution (nothing was stored), or"
                " belongs to another institution.",
            },
        ),
    },
)
async def deliver(
    request: Request,
    conversation_id: ConversationIdPath,
    principal: Writer,
    body: InboundMessageIn,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    # the institution first (a foreign one is 404), then the key's kept answer: a key
    # never replays one institution's answer to another's caller
    institution = institution_for(principal, body.institution_id)

    async def run() -> JSONResponse:
        return await _deliver(request, institution, conversation_id, body)

    return await idempotent(request, principal, institution, idempotency_key, body, run)


async def _deliver(
    request: Request, institution: str, conversation_id: str, body: InboundMessageIn
) -> JSONResponse:
    state = state_of(request.app)
    store = state.runtime.store
    now = state.runtime.engine.clock.now()
    tried: set[str | None] = set()
    while True:
        try:
            latest: Execution | None = await store.latest_execution(institution, conversation_id)
        except ExecutionNotFound:
            latest = None
        except CorruptedRecord:
            # the newest row fails its checks: still a live conversation; the store finds
            # the active row by its identity columns and the message wakes it, and the
            # engine restores it from its last checkpoint when it claims it
            result = await _store(store, institution, conversation_id, body, now, None)
            state.wake()
            return _accepted(conversation_id, result)
        target = latest.id if latest is not None else None
        if target is None or target in tried:
            raise _no_active(conversation_id)
        tried.add(target)
        try:
            result = await _store(store, institution, conversation_id, body, now, target)
        except (ExecutionEnded, ExecutionNotFound):
            # it ended (or went) since it was read: a newer execution may have started
            # meanwhile, so look once more before refusing
            continue
        state.wake()  # this process's workers apply it now, not at their next poll
        return _accepted(conversation_id, result)


async def _store(
    store: Store,
    institution: str,
    conversation_id: str,
    body: InboundMessageIn,
    now: float,
    execution_id: str | None,
) -> InboundResult:
    """Store the message for ``execution_id``: duplicates are found first (whatever the
    execution's state), then an ended execution refuses it (:class:`ExecutionEnded`)."""
    return await store.deliver_inbound(
        institution_id=institution,
        conversation_id=conversation_id,
        message_id=body.message_id,
        contact_id=body.contact_id,
        text=body.plain_text(),
        payload=body.payload,
        now=now,
        execution_id=execution_id,
        content=body.content(),
    )


def _no_active(conversation_id: str) -> Problem:
    return Problem(
        404,
        f"conversation '{conversation_id}' has no active execution: nothing was stored."
        " Start a flow for it (POST /v1/executions), then send the message again",
        kind="no_active_execution",
    )


def _accepted(conversation_id: str, result: InboundResult) -> JSONResponse:
    message = result.message
    return JSONResponse(
        {
            "accepted": True,
            "duplicate": result.status == "duplicate",
            "messageId": message.message_id,
            "conversationId": conversation_id,
            "executionId": message.execution_id,
            "receivedAt": iso(message.received_at),
        },
        status_code=202,
    )
