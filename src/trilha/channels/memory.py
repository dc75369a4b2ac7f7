"""An in-memory channel for tests and benchmarks: keeps what it was given."""

from __future__ import annotations

from trilha.core.content import CAPABILITIES
from trilha.core.execution import OutboundMessage


class MemoryChannel:
    name = "memory"
    renders = CAPABILITIES
    window_seconds: float | None = None

    def __init__(self) -> None:
        self.messages: list[OutboundMessage] = []
        self.keys: set[str] = set()
        self.duplicates = 0

    async def deliver(self, message: OutboundMessage) -> None:
        if message.idempotency_key in self.keys:
            self.duplicates += 1
            return
        self.keys.add(message.idempotency_key)
        self.messages.append(message)

    def texts(self, execution_id: str | None = None) -> list[str]:
        return [m.text for m in self.messages if execution_id in (None, m.execution_id)]

    async def aclose(self) -> None:
        return None
