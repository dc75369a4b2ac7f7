"""Tells the human desk about a handoff: a JSON POST to the declared ``handoff``
dependency, with an ``Idempotency-Key`` so a repeat after a crash is dropped, signed as
Standard Webhooks says when the dependency has signing secrets."""

from __future__ import annotations

from trilha.channels.signing import WebhookSigner
from trilha.channels.webhook import WebhookPost
from trilha.core.execution import Handoff, iso


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
        self._post = WebhookPost(
            "handoff desk", url, headers=headers, timeout=timeout, signer=signer
        )

    async def notify(self, handoff_id: int, handoff: Handoff) -> None:
        await self._post(
            f"handoff:{handoff.execution_id}:{handoff_id}",
            {
                "handoffId": handoff_id,
                "executionId": handoff.execution_id,
                "institutionId": handoff.institution_id,
                "conversationId": handoff.conversation_id,
                "contactId": handoff.contact_id,
                "queue": handoff.queue,
                "reason": handoff.reason,
                "at": iso(handoff.at),
            },
        )

    async def aclose(self) -> None:
        await self._post.aclose()
