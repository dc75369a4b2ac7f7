"""Meta's webhook for the WhatsApp channel: the subscription check and the notifications.

Meta cannot send an API key, so these two routes take none: the subscription check
is answered only for the configured ``verify_token``, and a notification is taken only
with a valid ``X-Hub-Signature-256`` (the HMAC-SHA256 of the raw body with the Meta
app's secret), checked before anything else is read of it; without one the answer is
401 and nothing is stored. A signed body is kept in the store as it arrived and
answered 200 at once: what it says is delivered in the background
(:mod:`trilha.api.whatsapp_webhooks`), so Meta never waits for, or retries because
of, trilha's own work. Both routes answer 404 unless ``[channel] kind = "whatsapp"``.

Bounds: the body as every request's (``[api] max_body_bytes``, 413), and at most
1,000 messages and statuses and 1,000 changes in one body (413, nothing stored).
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from trilha.api.app import state_of
from trilha.api.problems import Problem, malformed_json, problems
from trilha.channels.whatsapp.inbound import (
    WEBHOOK_CHANNEL,
    WebhookRefused,
    conversation_keys,
    parse_webhook,
    signature_ok,
)
from trilha.observability.logging import get_logger

if TYPE_CHECKING:  # it imports the routes (the delivery of POST .../messages)
    from trilha.api.whatsapp_webhooks import WhatsAppInbound

router = APIRouter(prefix="/v1/channels/whatsapp", tags=["channels"])
log = get_logger("trilha.whatsapp")

#: the path Meta is given (in the Meta app's WhatsApp configuration)
WEBHOOK_PATH = "/v1/channels/whatsapp/webhook"
#: the longest challenge echoed (Meta's is a number of ten or so digits)
MAX_CHALLENGE = 256


def _inbound(request: Request) -> WhatsAppInbound:
    inbound: WhatsAppInbound | None = getattr(request.app.state, "whatsapp", None)
    if inbound is None:
        raise Problem(
            404,
            'the WhatsApp channel is not configured here ([channel] kind = "whatsapp")',
            kind="not_found",
        )
    return inbound


@router.get(
    "/webhook",
    summary="Meta's webhook subscription check: echo `hub.challenge` for the verify token",
    response_class=PlainTextResponse,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "The challenge, as sent.",
        },
        **problems(
            403,
            404,
            **{
                "403": "`hub.mode` is not `subscribe`, or `hub.verify_token` is not the"
                " configured one.",
                "404": "The WhatsApp channel is not configured.",
            },
        ),
    },
)
async def verify(
    request: Request,
    mode: Annotated[str | None, Query(alias="hub.mode", max_length=64)] = None,
    token: Annotated[str | None, Query(alias="hub.verify_token", max_length=4_096)] = None,
    challenge: Annotated[
        str | None, Query(alias="hub.challenge", max_length=MAX_CHALLENGE, pattern=r"^[!-~]+$")
    ] = None,
) -> PlainTextResponse:
    inbound = _inbound(request)
    good = token is not None and hmac.compare_digest(
        token.encode("utf-8"), inbound.verify_token.encode("utf-8")
    )
    if mode != "subscribe" or not good:
        log.warning("whatsapp.verification_refused", mode=(mode or "")[:64])
        raise Problem(
            403,
            "hub.mode must be 'subscribe' and hub.verify_token the configured verify_token",
            kind="forbidden",
        )
    if challenge is None:
        raise Problem(
            422,
            "hub.challenge: required",
            kind="invalid",
            errors=[{"field": "query.hub.challenge", "message": "required"}],
        )
    log.info("whatsapp.verified")
    return PlainTextResponse(challenge)


@router.post(
    "/webhook",
    summary="Meta's webhook notifications: contacts' messages and delivery statuses",
    responses={
        200: {"description": "Kept: what it says is delivered in the background."},
        **problems(
            404,
            413,
            **{
                "401": "No `X-Hub-Signature-256`, or not the body's signature with the app"
                " secret: nothing was stored.",
                "404": "The WhatsApp channel is not configured.",
                "413": "The body is over `api.max_body_bytes`, or holds over 1,000 messages"
                " and statuses: nothing was stored.",
            },
        ),
    },
)
async def receive(
    request: Request,
    signature: Annotated[str | None, Header(alias="X-Hub-Signature-256")] = None,
) -> JSONResponse:
    inbound = _inbound(request)
    raw = await request.body()
    if not signature_ok(inbound.app_secret, raw, signature):
        log.warning("whatsapp.signature_refused", signed=signature is not None, bytes=len(raw))
        raise Problem(
            401,
            "X-Hub-Signature-256 is missing or is not the body's HMAC-SHA256 with the app"
            " secret: nothing was stored",
            kind="invalid_signature",
        )
    try:
        # the conversations it names order it among the stored bodies (per contact)
        keys = conversation_keys(parse_webhook(json.loads(raw)))
    except WebhookRefused as exc:
        if exc.too_large:
            raise Problem(413, f"{exc}: nothing was stored", kind="too_large") from None
        raise Problem(422, f"{exc}: nothing was stored", kind="invalid") from None
    except json.JSONDecodeError as exc:
        raise malformed_json(exc.msg, exc.doc, exc.pos) from None
    except (ValueError, RecursionError):  # nested past the parser's depth: not ours
        raise Problem(400, "the body is not valid JSON", kind="malformed_json") from None
    state = state_of(request.app)
    webhook_id = await state.runtime.store.receive_channel_webhook(
        WEBHOOK_CHANNEL, raw, now=state.runtime.engine.clock.now(), keys=keys
    )
    inbound.processor.wake()
    log.debug("whatsapp.webhook_received", webhookId=webhook_id, bytes=len(raw))
    return JSONResponse({"received": True})
