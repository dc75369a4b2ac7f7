"""Delivery receipts: what the channel did with each message trilha sent.

``POST /v1/conversations/{conversationId}/statuses`` takes the channel's report for
one outbound message, named by the ``idempotencyKey`` the webhook channel sent with it
(:mod:`trilha.channels.webhook`): ``sent``, ``delivered``, ``read`` or ``failed``, at a
time. Every report is recorded once (a repeat is acknowledged as a duplicate and
changes nothing, so a platform may retry freely) and leaves a ``message.status`` line
in the execution's trail; the message's delivery state, shown in its transcript, only
moves forward (:mod:`trilha.core.delivery`): a late ``sent`` after ``read`` is in the
trail, and the message still reads as read.

A key that is not one of the conversation's messages in the key's institution answers
404 naming it, whether it is absent or another institution's: a tenant learns nothing
of another's messages. Receipts are accepted for ended executions too (a ``read``
often comes after the flow finished).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field, PlainValidator, WithJsonSchema

from trilha.api.app import state_of
from trilha.api.auth import Writer
from trilha.api.idempotency import IdempotencyKey, idempotent
from trilha.api.problems import Problem, problems
from trilha.api.routes.executions import ExternalId, institution_for, parse_time
from trilha.api.routes.messages import ConversationIdPath
from trilha.api.wire import Text
from trilha.core.delivery import ReceiptStatus
from trilha.core.flow import FLOW_ID_PATTERN
from trilha.core.wire import WireModel
from trilha.observability.logging import get_logger
from trilha.store.base import ReceiptResult
from trilha.transcript import delivery_view

router = APIRouter(prefix="/v1/conversations", tags=["messages"])
log = get_logger("trilha.api.statuses")

#: the longest failure text kept: a channel's error code and sentence, not a page
MAX_ERROR = 1_000
#: the longest ``at`` string: an ISO-8601 time with fractions and a zone is ~32
MAX_AT = 40


def _at_shape(value: Any) -> str | float:
    """``at`` as sent: a number or a short string (its meaning is checked against the
    clock in :func:`parse_at`); a JSON ``true`` is not the time 1 (1970)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("must be unix seconds or an ISO-8601 time with a zone")
    if isinstance(value, str) and not 0 < len(value) <= MAX_AT:
        raise ValueError(f"must be 1 to {MAX_AT} characters")
    return value if isinstance(value, str) else float(value)


AtValue = Annotated[
    str | float,
    PlainValidator(_at_shape),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "maxLength": MAX_AT}, {"type": "number"}]}, mode="validation"
    ),
]


class StatusIn(WireModel):
    """The channel's report on one message trilha sent."""

    idempotency_key: ExternalId = Field(
        description="The message's key, as the webhook channel sent it (`idempotencyKey`)."
    )
    status: ReceiptStatus = Field(description="What became of the message.")
    at: AtValue = Field(
        description="When: ISO-8601 with a zone (`2026-01-01T12:00:00Z`) or unix seconds;"
        " at most a day ahead."
    )
    error: Text | None = Field(
        default=None,
        max_length=MAX_ERROR,
        description="Why it failed, as the channel says (kept as sent, shown masked).",
    )
    institution_id: str | None = Field(
        default=None,
        pattern=FLOW_ID_PATTERN,
        max_length=200,
        description="Default: the key's; admin keys must name one.",
    )


class DeliveryOut(WireModel):
    status: ReceiptStatus | None = Field(description="The furthest status reported so far.")
    at: str | None
    error: str | None = Field(default=None, description="The failure's text, masked.")


class StatusRecorded(WireModel):
    recorded: bool = Field(description="Always true: the report is kept.")
    duplicate: bool = Field(
        description="This status had been reported for the message already: ignored."
    )
    advanced: bool = Field(
        description="It moved the message's delivery state (false for a late report)."
    )
    idempotency_key: str
    status: ReceiptStatus
    execution_id: str
    conversation_id: str
    delivery: DeliveryOut


@router.post(
    "/{conversationId}/statuses",
    summary="Record the channel's delivery receipt for a message trilha sent",
    responses={
        200: {"model": StatusRecorded, "description": "Recorded (or a duplicate, ignored)."},
        **problems(
            403,
            404,
            **{"404": "No message with that idempotencyKey in the institution's conversation."},
        ),
    },
)
async def record_status(
    request: Request,
    conversation_id: ConversationIdPath,
    principal: Writer,
    body: StatusIn,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    # the institution first (a foreign one is 404), then the key's kept answer
    institution = institution_for(principal, body.institution_id)

    async def run() -> JSONResponse:
        return await _record(request, institution, conversation_id, body)

    return await idempotent(request, principal, institution, idempotency_key, body, run)


async def _record(
    request: Request, institution: str, conversation_id: str, body: StatusIn
) -> JSONResponse:
    state = state_of(request.app)
    now = state.runtime.engine.clock.now()
    at = parse_at(body.at, now)
    result = await state.runtime.store.record_receipt(
        institution_id=institution,
        conversation_id=conversation_id,
        idempotency_key=body.idempotency_key,
        status=body.status,
        at=at,
        error=body.error,
        now=now,
    )
    if result is None:
        raise Problem(
            404,
            f"no message with idempotencyKey '{body.idempotency_key}' in conversation"
            f" '{conversation_id}'",
            kind="not_found",
            errors=[{"field": "body.idempotencyKey", "message": "no such message"}],
        )
    if not result.duplicate:
        # the process log masks on the way out, as the store's trail does on the way in
        (log.warning if body.status == "failed" else log.info)(
            "message.status",
            executionId=result.delivery.execution_id,
            idempotencyKey=body.idempotency_key,
            status=body.status,
            delivery=result.delivery.receipt,
            error=body.error,
        )
    return JSONResponse(_recorded(conversation_id, body, result))


def parse_at(value: str | float, now: float) -> float:
    """``at`` as unix seconds (see :func:`parse_time`); 422 naming ``body.at``."""
    return parse_time(value, now, "body.at")


def _recorded(conversation_id: str, body: StatusIn, result: ReceiptResult) -> dict[str, Any]:
    delivery = result.delivery
    return {
        "recorded": True,
        "duplicate": result.duplicate,
        "advanced": result.advanced,
        "idempotencyKey": delivery.idempotency_key,
        "status": body.status,
        "executionId": delivery.execution_id,
        "conversationId": conversation_id,
        "delivery": delivery_view(delivery),
    }
