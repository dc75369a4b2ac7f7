"""What a channel adapter is: deliver one outbound message, idempotently.

The dispatcher may deliver a message again after a crash between sending and
recording it, so every adapter passes the message's idempotency key along
(the webhook as an ``Idempotency-Key`` header) for the platform to drop a
repeat.
"""

from __future__ import annotations

from typing import Protocol

from trilha.core.execution import OutboundMessage


class Channel(Protocol):
    name: str
    #: what the channel shows besides text (:data:`trilha.core.content.CAPABILITIES`);
    #: the engine degrades the rest the same way every time before it is queued
    renders: frozenset[str]
    #: the customer-service window, in seconds after the contact's last message, within
    #: which anything may be sent (WhatsApp's 24 hours); outside it a node sends its
    #: ``template`` or fails with ``outside_window``. ``None``: no window
    window_seconds: float | None

    async def deliver(self, message: OutboundMessage) -> None:
        """Deliver or raise :class:`~trilha.errors.ChannelError`."""

    async def aclose(self) -> None: ...
