"""The dispatcher's failed deliveries on a fake clock: a real SQLite store, the real
webhook channel POSTing to a real server on 127.0.0.1 (or to a port nobody listens
on). Each failed attempt's backoff follows ``[channel] backoff_seconds`` up to
``max_backoff_seconds``; the reason is bounded (HTTP status class, timeout,
connection) and counted per institution; the last attempt makes the message dead."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from trilha.channels.webhook import WebhookChannel
from trilha.engine.dispatcher import Dispatcher
from trilha.errors import ChannelError
from trilha.observability.metrics import Metrics

Harness = Any

FLOW = {
    "id": "hello",
    "start": "hi",
    "nodes": [{"id": "hi", "type": "end", "text": "hello"}],
}


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def queue_hello(h: Harness) -> Any:
    """Start ``hello`` and run its step (the engine alone: nothing is delivered yet)."""
    ex = await h.start("hello")
    while await h.engine.run_once(execution_id=ex.id):
        pass
    return ex


def failures(metrics: Metrics) -> dict[tuple[str, str], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == "trilha_outbox_delivery_failures_total":
                found[(sample.labels["institution"], sample.labels["reason"])] = sample.value
    return found


async def _reason(channel: WebhookChannel, h: Harness) -> str:
    from trilha.engine.dispatcher import failure_reason

    await h.publish(FLOW)
    await queue_hello(h)
    (message,) = await h.store.claim_outbox("probe", now=h.clock.now(), lease_seconds=30, limit=1)
    try:
        await channel.deliver(message)
    except ChannelError as exc:
        return failure_reason(exc)
    finally:
        await channel.aclose()
    raise AssertionError("the delivery did not fail")


@pytest.mark.parametrize(
    ("route", "expected"),
    [({"status": 503}, "http_5xx"), ({"status": 404}, "http_4xx"), ({"delay": 1.0}, "timeout")],
)
async def test_a_failure_has_a_bounded_reason(
    make_harness: Callable[..., Harness], http_server: Any, route: dict[str, Any], expected: str
) -> None:
    http_server.route("POST", "/hook", **route)
    channel = WebhookChannel(f"{http_server.url}/hook", timeout=0.3)
    assert await _reason(channel, make_harness()) == expected


async def test_a_refused_connection_is_a_connection_failure(
    make_harness: Callable[..., Harness],
) -> None:
    channel = WebhookChannel(f"http://127.0.0.1:{closed_port()}/hook", timeout=2)
    assert await _reason(channel, make_harness()) == "connection"


async def test_backoff_doubles_to_its_cap_then_the_message_is_dead(
    make_harness: Callable[..., Harness], http_server: Any
) -> None:
    http_server.route("POST", "/hook", status=503)
    h = make_harness()
    metrics = Metrics()
    channel = WebhookChannel(f"{http_server.url}/hook", timeout=2)
    dispatcher = Dispatcher(
        h.store,
        channel,
        clock=h.clock,
        max_attempts=4,
        backoff_seconds=10.0,
        max_backoff_seconds=15.0,
        metrics=metrics,
    )
    await h.publish(FLOW)
    ex = await queue_hello(h)
    try:
        assert await dispatcher.run_once() == 1
        pauses = []
        for _ in range(3):
            (message,) = await h.store.outbox_for(ex.id)
            line = (await h.store.logs(ex.id))[-1]
            assert line.message == "message.delivery_failed"
            pauses.append(line.context["retryInSeconds"])
            h.clock.advance(line.context["retryInSeconds"] + 0.01)  # it is rounded
            assert await dispatcher.run_once() == 1
    finally:
        await channel.aclose()
    # 10 s then 20 s and 40 s capped at 15 s, each with jitter (half to all of it)
    assert 5 <= pauses[0] <= 10 and 7.5 <= pauses[1] <= 15 and 7.5 <= pauses[2] <= 15
    (message,) = await h.store.outbox_for(ex.id)
    assert (message.status, message.attempts) == ("dead", 4)
    lines = [(r.message, r.level) for r in await h.store.logs(ex.id)]
    assert lines[-2:] == [("message.delivery_failed", "WARN"), ("message.dead", "ERROR")]
    assert lines.count(("message.delivery_failed", "WARN")) == 4
    assert failures(metrics) == {("inst-1", "http_5xx"): 4.0}
    assert http_server.count("POST", "/hook") == 4
