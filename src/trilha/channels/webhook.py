"""POSTs each message as JSON to the platform, with an ``Idempotency-Key`` header and,
when the channel has signing secrets, signed as Standard Webhooks says (the message's
idempotency key is its ``webhook-id``: the same on every retry)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from trilha.channels.signing import WebhookSigner, json_body, signed_headers
from trilha.core.content import CAPABILITIES
from trilha.core.execution import OutboundMessage, iso
from trilha.errors import ChannelError


class WebhookPost:
    """POSTs JSON bodies to one receiver, each with its ``Idempotency-Key`` (also its
    ``webhook-id`` when signed); any 2xx is success, anything else a ChannelError
    saying why (the status answered, or ``reason`` timeout / connection). Shared by
    the channel and the handoff desk, whose receivers are webhooks alike."""

    def __init__(
        self,
        what: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        signer: WebhookSigner | None = None,
    ) -> None:
        self.what = what
        self.url = url
        self.signer = signer
        self._client = httpx.AsyncClient(headers=headers or {}, timeout=timeout, trust_env=False)

    async def __call__(self, key: str, body: dict[str, Any]) -> None:
        content = json_body(body)
        headers = signed_headers(self.signer, key, content, time.time())
        where = f"{self.what} {self.url}"
        try:
            response = await self._client.post(
                self.url, content=content, headers=headers | {"Idempotency-Key": key}
            )
        except httpx.TimeoutException as exc:
            raise ChannelError(f"{where}: {exc}", reason="timeout") from exc
        except httpx.ConnectError as exc:
            raise ChannelError(f"{where}: {exc}", reason="connection") from exc
        except httpx.HTTPError as exc:
            raise ChannelError(f"{where}: {exc}") from exc
        if response.status_code >= 300:
            raise ChannelError(
                f"{where} answered {response.status_code}", status=response.status_code
            )

    async def aclose(self) -> None:
        await self._client.aclose()


class WebhookChannel:
    """POSTs each message to the platform: ``text`` (its plain rendering, for simple
    platforms) and ``content`` (the structured message, ``type`` first). What the
    platform cannot show is declared in ``[channel] renders`` and degraded before."""

    name = "webhook"
    #: the platform behind the webhook keeps its own rules on when it may write
    window_seconds: float | None = None

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        signer: WebhookSigner | None = None,
        renders: frozenset[str] = CAPABILITIES,
    ) -> None:
        self.url = url
        self.renders = renders
        self._post = WebhookPost("webhook", url, headers=headers, timeout=timeout, signer=signer)

    async def deliver(self, message: OutboundMessage) -> None:
        await self._post(
            message.idempotency_key,
            {
                "executionId": message.execution_id,
                "institutionId": message.institution_id,
                "conversationId": message.conversation_id,
                "contactId": message.contact_id,
                "text": message.text,
                "content": message.content or {"type": "text", "text": message.text},
                "payload": message.payload,
                "createdAt": iso(message.created_at),
                "idempotencyKey": message.idempotency_key,
                # a person holding the conversation wrote it (null: the bot)
                "agentId": message.agent_id,
                # the contact's message this one answers (null: none)
                "replyTo": message.reply_to,
            },
        )

    async def aclose(self) -> None:
        await self._post.aclose()
