"""POSTs each message as JSON to the platform, with an ``Idempotency-Key`` header and,
when the channel has signing secrets, signed as Standard Webhooks says (the message's
idempotency key is its ``webhook-id``: the same on every retry)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from trilha.channels.signing import WebhookSigner, json_body, signed_headers
from trilha.core.execution import OutboundMessage, iso
from trilha.errors import ChannelError


class WebhookChannel:
    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        signer: WebhookSigner | None = None,
    ) -> None:
        self.url = url
        self.signer = signer
        self._client = httpx.AsyncClient(headers=headers or {}, timeout=timeout, trust_env=False)

    async def deliver(self, message: OutboundMessage) -> None:
        body: dict[str, Any] = {
            "executionId": message.execution_id,
            "institutionId": message.institution_id,
            "conversationId": message.conversation_id,
            "contactId": message.contact_id,
            "text": message.text,
            "payload": message.payload,
            "createdAt": iso(message.created_at),
            "idempotencyKey": message.idempotency_key,
        }
        content = json_body(body)
        key = message.idempotency_key
        headers = signed_headers(self.signer, key, content, time.time())
        try:
            response = await self._client.post(
                self.url, content=content, headers=headers | {"Idempotency-Key": key}
            )
        except httpx.TimeoutException as exc:
            raise ChannelError(f"webhook {self.url}: {exc}", reason="timeout") from exc
        except httpx.ConnectError as exc:
            raise ChannelError(f"webhook {self.url}: {exc}", reason="connection") from exc
        except httpx.HTTPError as exc:
            raise ChannelError(f"webhook {self.url}: {exc}") from exc
        if response.status_code >= 300:
            raise ChannelError(
                f"webhook {self.url} answered {response.status_code}", status=response.status_code
            )

    async def aclose(self) -> None:
        await self._client.aclose()
