"""Tells the human desk about a handoff, and forwards what the contact says while a person
holds the conversation: JSON POSTs to the declared ``handoff`` dependency, each with an
``Idempotency-Key`` so a repeat after a crash is dropped, signed as Standard Webhooks
says when the dependency has signing secrets.

Two kinds of body (``type``):

* ``handoff``: ``{handoffId, executionId, institutionId, conversationId, contactId,
  queue, reason, at, mode, variables, transcript, transcriptOmitted, handbackUrl,
  agentMessagesUrl}``. ``variables`` are the execution's, with credentials (keys such as
  ``token``, ``password``, ``apiKey``) replaced by ``[masked]`` and the contact's data
  (CPF, phone, e-mail) left as they are: the person serving the contact needs them, and
  the transcript carries them as said anyway. ``transcript`` is the conversation so far
  (at most :data:`MAX_TRANSCRIPT` lines, the latest; ``transcriptOmitted`` counts the
  rest). The two URLs are for a ``wait`` handoff (``null`` for ``end``).
* ``message``: ``{executionId, institutionId, conversationId, contactId, messageId,
  text, content, at, handbackUrl, agentMessagesUrl}``: one contact message said while a
  person held the conversation, in the order the contact wrote them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from trilha.channels.signing import WebhookSigner
from trilha.channels.webhook import WebhookPost
from trilha.core.execution import Handoff, InboundMessage, TranscriptEntry, iso
from trilha.core.hold import desk_message_key
from trilha.observability.masking import hide_credentials

#: the transcript lines a handoff notice carries at most (the latest)
MAX_TRANSCRIPT = 100


def conversation_url(public_url: str | None, conversation_id: str, action: str) -> str:
    """``POST /v1/conversations/{id}/{action}`` on trilha's public address (the path
    alone when it is not configured: ``[api] public_url``)."""
    path = f"/v1/conversations/{quote(conversation_id, safe='')}/{action}"
    return f"{public_url}{path}" if public_url else path


class HandoffDesk:
    """POSTs handoff notices and held contact messages to ``url``; any 2xx is success."""

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        signer: WebhookSigner | None = None,
        public_url: str | None = None,
    ) -> None:
        self.url = url
        #: trilha's address as the desk reaches it (``[api] public_url``)
        self.public_url = public_url
        self._post = WebhookPost(
            "handoff desk", url, headers=headers, timeout=timeout, signer=signer
        )

    def _urls(self, handoff_mode: str, conversation_id: str) -> dict[str, str | None]:
        waits = handoff_mode == "wait"
        return {
            "handbackUrl": conversation_url(self.public_url, conversation_id, "handback")
            if waits
            else None,
            "agentMessagesUrl": conversation_url(self.public_url, conversation_id, "agent-messages")
            if waits
            else None,
        }

    async def notify(
        self,
        handoff_id: int,
        handoff: Handoff,
        *,
        variables: dict[str, Any] | None = None,
        transcript: Sequence[TranscriptEntry] = (),
    ) -> None:
        shown = list(transcript)[-MAX_TRANSCRIPT:]
        await self._post(
            f"handoff:{handoff.execution_id}:{handoff_id}",
            {
                "type": "handoff",
                "handoffId": handoff_id,
                "executionId": handoff.execution_id,
                "institutionId": handoff.institution_id,
                "conversationId": handoff.conversation_id,
                "contactId": handoff.contact_id,
                "queue": handoff.queue,
                "reason": handoff.reason,
                "at": iso(handoff.at),
                "mode": handoff.mode,
                "variables": None if variables is None else hide_credentials(variables),
                "transcript": [entry.wire() for entry in shown],
                "transcriptOmitted": len(transcript) - len(shown),
                **self._urls(handoff.mode, handoff.conversation_id),
            },
        )

    async def forward(self, message: InboundMessage) -> None:
        """One contact message said while a person held the conversation."""
        assert message.execution_id is not None  # held messages belong to an execution
        await self._post(
            desk_message_key(message.execution_id, message.id),
            {
                "type": "message",
                "executionId": message.execution_id,
                "institutionId": message.institution_id,
                "conversationId": message.conversation_id,
                "contactId": message.contact_id,
                "messageId": message.message_id,
                "text": message.text,
                "content": message.content,
                "at": iso(message.received_at),
                **self._urls("wait", message.conversation_id),
            },
        )

    async def aclose(self) -> None:
        await self._post.aclose()
