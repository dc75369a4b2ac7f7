"""``messages_per_second`` per number, on real time: the dispatcher sends a burst of
one number's messages through the Graph API stand-in, and the request times the
stand-in recorded show the rate; another institution's number, queued at the same
time, is never held back by the burst; a message held back by the rate limit comes
back without an attempt counted.

Only lower bounds are asserted (the spacing the limit guarantees), never how fast
anything went; each bound allows one interval for the first request's own transit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from graph_standin import GraphStandIn, graph_standin
from trilha.channels.whatsapp.channel import WhatsAppChannel
from trilha.config import WhatsAppConfig, WhatsAppNumber
from trilha.engine.clock import SystemClock
from trilha.engine.dispatcher import Dispatcher
from trilha.observability.trace import trace_problems

Harness = Any
RATE = 4.0


@pytest.fixture
def clock() -> SystemClock:
    """Real time for the harness (the root conftest's is fake): the limit is real time."""
    return SystemClock()


@pytest.fixture
def standin() -> Iterator[GraphStandIn]:
    with graph_standin() as server:
        yield server


HELLO = {"id": "hello", "start": "hi", "nodes": [{"id": "hi", "type": "end", "text": "oi"}]}


async def start(h: Harness, number: str, institution: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        wa_id = f"55119{number}{i:04d}"
        ex = await h.start(
            "hello", f"wa:{number}:{wa_id}", institution_id=institution, contact_id=wa_id
        )
        while await h.engine.run_once(execution_id=ex.id):
            pass
        ids.append(ex.id)
    return ids


async def test_one_numbers_burst_is_spaced_and_holds_no_other_number_back(
    harness: Harness, standin: GraphStandIn
) -> None:
    config = WhatsAppConfig(
        access_token="t",
        app_secret="s",
        verify_token="v",
        api_base_url=standin.url,
        messages_per_second=RATE,
        numbers=[
            WhatsAppNumber(phone_number_id="1001", institution="inst-1"),
            WhatsAppNumber(phone_number_id="2001", institution="inst-2"),
        ],
    )
    channel = WhatsAppChannel.from_config(config)
    dispatcher = Dispatcher(harness.store, channel, clock=harness.clock)
    await harness.publish(HELLO)
    burst = await start(harness, "1001", "inst-1", 12)
    other = await start(harness, "2001", "inst-2", 2)
    deadline = time.monotonic() + 60
    try:
        while len(standin.sends()) < 14 and time.monotonic() < deadline:
            await dispatcher.run_once()
            await asyncio.sleep(0.02)
    finally:
        await channel.aclose()
    sends = standin.sends()
    assert len(sends) == 14
    times = [r.at for r in sends if r.path == "/v21.0/1001/messages"]
    theirs = [r.at for r in sends if r.path == "/v21.0/2001/messages"]
    assert len(times) == 12 and len(theirs) == 2
    # at most RATE a second: the j-th send starts no sooner than j intervals after the first
    interval = 1 / RATE
    for j, at in enumerate(times):
        assert at - times[0] >= j * interval - interval, (j, at - times[0])
    assert times[-1] - times[0] >= 11 * interval - interval

    # the other institution's number was never held back: none of its messages deferred
    for ex_id in other:
        assert await deferrals(harness, ex_id) == 0
        assert [(m.status, m.attempts) for m in await harness.store.outbox_for(ex_id)] == [
            ("sent", 1)
        ]
    # the burst's messages waited in the outbox, none of them charged an attempt for it
    waited = [await deferrals(harness, ex_id) for ex_id in burst]
    assert sum(waited) > 0
    for ex_id in burst:
        assert [(m.status, m.attempts) for m in await harness.store.outbox_for(ex_id)] == [
            ("sent", 1)
        ]
        assert [r.message for r in await harness.store.logs(ex_id)].count(
            "message.delivery_failed"
        ) == 0
        # a deferral written after the execution ended still makes a complete trail
        problems = await trace_problems(harness.store, ex_id)
        assert [p for p in problems if p.startswith("trail")] == [], problems


async def deferrals(h: Harness, execution_id: str) -> int:
    return sum(1 for r in await h.store.logs(execution_id) if r.message == "message.deferred")
