"""Tells the human desk about a handoff: a JSON POST to the declared ``handoff``
dependency, with an ``Idempotency-Key`` so a repeat after a crash is dropped, signed as
Standard Webhooks says when the dependency has signing secrets."""

from __future__ import annotations

import time

import httpx

from trilha.channels.signing import WebhookSigner, json_body, signed_headers
from trilha.core.execution import Handoff, iso
from trilha.errors import ChannelError


class HandoffDesk:
    """POSTs ``{handoffId, executionId, institutionId, conversationId, contactId, queue,
    reason, at}`` to ``url``; any 2xx is success."""

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

    async def notify(self, handoff_id: int, handoff: Handoff) -> None:
        key = f"handoff:{handoff.execution_id}:{handoff_id}"
        body = {
            "handoffId": handoff_id,
            "executionId": handoff.execution_id,
            "institutionId": handoff.institution_id,
            "conversationId": handoff.conversation_id,
            "contactId": handoff.contact_id,
            "queue": handoff.queue,
            "reason": handoff.reason,
            "at": iso(handoff.at),
        }
        content = json_body(body)
        headers = signed_headers(self.signer, key, content, time.time())
        try:
            response = await self._client.post(
                self.url, content=content, headers=headers | {"Idempotency-Key": key}
            )
        except httpx.HTTPError as exc:
            raise ChannelError(f"handoff desk {self.url}: {exc}") from exc
        if response.status_code >= 300:
            raise ChannelError(f"handoff desk {self.url} answered {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
