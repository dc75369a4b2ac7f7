"""A person holds the conversation (a ``handoff`` in ``wait`` mode), speaks to the contact,
and hands the conversation back to the bot.

* ``POST /v1/conversations/{id}/agent-messages`` ``{"messageId", "agentId", "text" |
  "content"}`` records the person's message (``from: "agent"`` in the transcript, with
  its ``agentId``) and queues it in the outbox, so it is delivered through the channel
  with the bot's retries, receipts and dead-letter path. Exactly once per ``messageId``
  in the conversation: a repeat answers the first result (``duplicate: true``), even
  after the handback. Only while a person holds the conversation: otherwise 409
  (``urn:trilha:problem:not_held``, with ``currentStatus``): a person's message while the
  bot runs would cross its questions, and the contact's answer would go to the bot. The
  first agent message cancels the handoff's ``returnAfterSeconds``.
* ``POST /v1/conversations/{id}/handback`` ``{"nodeId"?, "variables"?, "reason"?}`` gives
  the conversation back: the execution resumes at ``nodeId`` (a node of the flow version
  it is pinned to: 422 otherwise) or at the handoff node's ``next``, with ``variables``
  (dotted path -> value, as ``PATCH /v1/executions/{id}/variables`` sets them) merged in.
  It is an operator's action: audited in the state history and the trail
  (``operator.handback``) with the key as the actor. 409 when no person holds it, so a
  retried handback never moves the execution twice (no ``Idempotency-Key`` is needed).

Both act on the conversation's latest execution of the key's institution (an admin key
names ``institutionId``); another institution's conversation is 404; a viewer key 403.
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator

from trilha.api.app import state_of
from trilha.api.auth import Writer
from trilha.api.problems import not_found, problems
from trilha.api.routes.executions import (
    NODE_ID_PATTERN,
    ExecutionOut,
    ExternalId,
    actor_of,
    execution_answer,
    institution_for,
)
from trilha.api.routes.messages import ConversationIdPath
from trilha.api.wire import JsonObject, Text
from trilha.core.execution import iso
from trilha.core.flow import FLOW_ID_PATTERN
from trilha.core.wire import WireModel
from trilha.engine.operator import MAX_VARIABLE_PATHS, variable_path_problem
from trilha.errors import ExecutionNotFound
from trilha.outbound import AgentText, OutboundContent
from trilha.store.base import AgentMessageResult

router = APIRouter(prefix="/v1/conversations", tags=["handback"])

_INSTITUTION = Field(
    default=None,
    pattern=FLOW_ID_PATTERN,
    max_length=200,
    description="Default: the key's; admin keys must name one.",
)


class AgentMessageIn(WireModel):
    """A person's message to the contact: a ``text``, or a structured ``content``."""

    message_id: ExternalId = Field(
        description="The desk's id of the message: a repeat answers the first result."
    )
    agent_id: ExternalId = Field(description="Who wrote it (shown in the transcript).")
    text: AgentText | None = Field(default=None, description="At most 4,096 characters.")
    content: OutboundContent | None = Field(
        default=None,
        description="Instead of `text`: buttons, a list, media or a location, in the form"
        " channels receive (`type` and its field); what the channel cannot show is"
        " degraded as the bot's messages are.",
    )
    institution_id: str | None = _INSTITUTION

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.text is None) == (self.content is None):
            raise ValueError("give exactly one of `text` and `content`")
        return self


class AgentMessageOut(WireModel):
    accepted: bool = Field(description="Always true: the message is queued.")
    duplicate: bool = Field(description="This messageId was recorded before: its result.")
    message_id: str
    conversation_id: str
    execution_id: str
    agent_id: str | None
    idempotency_key: str = Field(description="The key the channel receives it with.")
    text: str = Field(description="The message as plain text (content's rendering).")
    content: dict[str, Any] | None
    queued_at: str | None = Field(description="When it was first recorded.")


class HandbackIn(WireModel):
    """Where the bot takes the conversation back, and what it should know."""

    node_id: str | None = Field(
        default=None,
        pattern=NODE_ID_PATTERN,
        max_length=100,
        description="A node of the flow version the execution is pinned to; default: the"
        " handoff node's `next`.",
    )
    variables: JsonObject = Field(
        default_factory=dict,
        max_length=MAX_VARIABLE_PATHS,
        description='Dotted path -> value to set first, e.g. `{"ticket.id": "T-9"}`'
        " (bounded by `[engine] max_value_bytes` and `max_state_bytes`).",
    )
    reason: Text | None = Field(
        default=None, max_length=1_000, description="Why: kept in the state history."
    )
    institution_id: str | None = _INSTITUTION

    @model_validator(mode="after")
    def _paths(self) -> Self:
        for path in self.variables:
            problem = variable_path_problem(path)
            if problem is not None:
                raise ValueError(f"variables: path {path!r}: {problem}")
        return self


@router.post(
    "/{conversationId}/agent-messages",
    summary="Send the contact a message from the person who holds the conversation",
    status_code=202,
    responses={
        202: {"model": AgentMessageOut, "description": "Queued (or a repeat: the first)."},
        **problems(
            403,
            404,
            409,
            422,
            **{
                "404": "No execution for the conversation (or another institution's).",
                "409": "No person holds the conversation (`currentStatus`).",
            },
        ),
    },
)
async def agent_message(
    request: Request,
    conversation_id: ConversationIdPath,
    principal: Writer,
    body: AgentMessageIn,
) -> JSONResponse:
    state = state_of(request.app)
    institution = institution_for(principal, body.institution_id)
    engine = state.runtime.engine
    said = body.content.said(engine.renders) if body.content is not None else None
    result = await state.runtime.store.record_agent_message(
        institution_id=institution,
        conversation_id=conversation_id,
        message_id=body.message_id,
        agent_id=body.agent_id,
        text=said.text if said is not None else body.text or "",
        content=said.content if said is not None else None,
        now=engine.clock.now(),
    )
    state.wake()  # this process's dispatcher delivers it now, not at its next poll
    return JSONResponse(_agent_answer(result), status_code=202)


def _agent_answer(result: AgentMessageResult) -> dict[str, Any]:
    message = result.message
    return {
        "accepted": True,
        "duplicate": result.status == "duplicate",
        "messageId": result.message_id,
        "conversationId": message.conversation_id,
        "executionId": message.execution_id,
        "agentId": message.agent_id,
        "idempotencyKey": message.idempotency_key,
        "text": message.text,
        "content": message.content,
        "queuedAt": iso(message.created_at),
    }


@router.post(
    "/{conversationId}/handback",
    summary="Give the conversation a person holds back to the bot",
    responses={
        200: {"model": ExecutionOut, "description": "Handed back: the execution as it is now."},
        **problems(
            403,
            404,
            409,
            422,
            **{
                "404": "No execution for the conversation (or another institution's).",
                "409": "No person holds the conversation (`currentStatus`).",
                "422": "`nodeId` is not a node of the flow (or the handoff has no next), or"
                " a variable path or value is refused.",
            },
        ),
    },
)
async def handback(
    request: Request,
    conversation_id: ConversationIdPath,
    principal: Writer,
    body: Annotated[HandbackIn | None, Body()] = None,
) -> JSONResponse:
    body = body or HandbackIn()
    state = state_of(request.app)
    institution = institution_for(principal, body.institution_id)
    try:
        latest = await state.runtime.store.latest_execution(institution, conversation_id)
    except ExecutionNotFound:
        raise not_found(f"conversation '{conversation_id}'") from None
    ex = await state.runtime.operator.handback(
        latest.id,
        body.node_id,
        body.variables,
        actor=actor_of(principal),
        reason=body.reason,
    )
    state.wake()  # it runs from the node now
    return await execution_answer(request, principal, ex)
