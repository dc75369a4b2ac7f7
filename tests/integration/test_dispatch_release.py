"""A conversation's later messages go out right after the one a channel deferred, not a
lease's term later: the dispatcher gives back the leases of the messages it did not try
(the WhatsApp channel defers a message for a moment whenever a number is at its rate)."""

from __future__ import annotations

from typing import Any

from trilha.channels.whatsapp.graph import GraphError
from trilha.core.execution import OutboundMessage
from trilha.engine.dispatcher import Dispatcher

Harness = Any

FLOW = {
    "id": "two",
    "start": "a",
    "nodes": [
        {"id": "a", "type": "message", "text": "um", "next": "b"},
        {"id": "b", "type": "message", "text": "dois", "next": "c"},
        {"id": "c", "type": "end"},
    ],
}


class DefersOnce:
    """A channel whose first delivery is deferred half a second, as a number at its
    rate is; it records when (in the harness's clock) each text went out."""

    name = "defers-once"
    renders: frozenset[str] = frozenset()
    window_seconds: float | None = None

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.deferred = False
        self.sent: dict[str, float] = {}

    async def deliver(self, message: OutboundMessage) -> None:
        if not self.deferred:
            self.deferred = True
            raise GraphError("at its rate", kind="throttled", retry_after=0.5, deferred=True)
        self.sent[message.text] = self.harness.clock.now()

    async def aclose(self) -> None:
        return None


async def test_the_next_message_follows_a_deferred_one_at_once(harness: Harness) -> None:
    await harness.publish(FLOW)
    ex = await harness.start("two", "wa:1001:5511987654321")
    while await harness.engine.run_once(execution_id=ex.id):
        pass
    channel = DefersOnce(harness)
    dispatcher = Dispatcher(harness.store, channel, clock=harness.clock, lease_seconds=30)
    start = harness.clock.now()
    await dispatcher.run_once()
    assert channel.sent == {}  # "um" deferred, "dois" held behind it
    for _ in range(10):
        harness.clock.advance(1.0)
        await dispatcher.run_once()
    assert list(channel.sent) == ["um", "dois"]
    # both in the first round after the deferral, not 30 s (the lease) later
    assert channel.sent["dois"] - start <= 1.0
    [um, dois] = await harness.store.outbox_for(ex.id)
    assert (um.attempts, dois.attempts) == (1, 1)  # the deferral counted no attempt
