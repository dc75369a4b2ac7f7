"""Delivers the outbox through a channel: at least once, in order per conversation.

A message is in the outbox only if its step committed, so nothing is sent for
a step that did not happen; it is marked sent after the channel accepted it,
so a crash in between re-sends it with the same idempotency key. A failed
delivery is retried with exponential backoff; after ``max_attempts`` it is
marked dead (kept, visible, never silently dropped).
"""

from __future__ import annotations

import asyncio
import random

from trilha.channels.base import Channel
from trilha.channels.desk import HandoffDesk
from trilha.core.execution import OutboundMessage
from trilha.engine.clock import Clock, SystemClock
from trilha.errors import ChannelError
from trilha.store.base import Store


class Dispatcher:
    def __init__(
        self,
        store: Store,
        channel: Channel,
        *,
        clock: Clock | None = None,
        dispatcher_id: str = "dispatcher",
        max_attempts: int = 10,
        lease_seconds: float = 30.0,
        batch_size: int = 256,
        desk: HandoffDesk | None = None,
    ) -> None:
        self.store = store
        self.channel = channel
        self.clock = clock or SystemClock()
        self.dispatcher_id = dispatcher_id
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.batch_size = batch_size
        #: where handoffs are announced (the ``handoff`` dependency), if declared
        self.desk = desk

    async def run_once(self) -> int:
        """Deliver what is due now; returns how many messages were handled."""
        messages = await self.store.claim_outbox(
            self.dispatcher_id,
            now=self.clock.now(),
            lease_seconds=self.lease_seconds,
            limit=self.batch_size,
        )
        by_conversation: dict[tuple[str, str], list[OutboundMessage]] = {}
        for message in messages:
            key = (message.institution_id, message.conversation_id)
            by_conversation.setdefault(key, []).append(message)
        sent: list[int] = []
        # conversations are independent: deliver them side by side, so one slow
        # webhook call does not hold every other contact's reply behind it
        await asyncio.gather(*(self._deliver(queue, sent) for queue in by_conversation.values()))
        if sent:
            await self.store.mark_sent(sent, now=self.clock.now())
        return len(messages) + await self._notify_handoffs()

    async def _deliver(self, queue: list[OutboundMessage], sent: list[int]) -> None:
        """One conversation's messages, in order; the first failure stops the rest
        (they are retried after it, keeping the order the contact reads them in)."""
        for message in queue:
            assert message.id is not None
            try:
                await self.channel.deliver(message)
            except ChannelError as exc:
                attempts = message.attempts + 1
                retry_at = None
                if attempts < self.max_attempts:
                    backoff = min(300.0, 0.5 * 2 ** (attempts - 1))
                    retry_at = self.clock.now() + backoff * (0.5 + random.random() / 2)
                await self.store.mark_failed(
                    message.id, error=str(exc), retry_at=retry_at, now=self.clock.now()
                )
                return
            sent.append(message.id)

    async def _notify_handoffs(self) -> int:
        if self.desk is None:
            return 0
        notices = await self.store.claim_handoff_notices(
            now=self.clock.now(), lease_seconds=self.lease_seconds, limit=self.batch_size
        )
        for handoff_id, handoff in notices:
            try:
                await self.desk.notify(handoff_id, handoff)
            except ChannelError as exc:
                await self.store.mark_handoff_notice(
                    handoff_id,
                    now=self.clock.now(),
                    error=str(exc),
                    retry_at=self.clock.now() + 5.0 * (0.5 + random.random()),
                )
                continue
            await self.store.mark_handoff_notice(
                handoff_id, now=self.clock.now(), error=None, retry_at=None
            )
        return len(notices)
