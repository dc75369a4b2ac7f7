"""Handoffs are announced to the human desk (the declared ``handoff`` dependency)."""

from __future__ import annotations

from typing import Any

from trilha.channels.desk import HandoffDesk
from trilha.channels.memory import MemoryChannel
from trilha.engine.dispatcher import Dispatcher


async def test_handoff_is_posted_to_the_desk_and_retried(harness: Any, http_server: Any) -> None:
    """A handoff is POSTed with its queue, reason and an Idempotency-Key; a failing desk is
    retried until it accepts, and a sent notice is not sent again."""
    http_server.route("POST", "/handoffs", body={"ok": True})
    http_server.fail_first("POST", "/handoffs", 1, status=500)
    await harness.publish(
        {
            "id": "h",
            "start": "x",
            "nodes": [
                {"id": "x", "type": "handoff", "queue": "vip", "reason": "asked for a person"}
            ],
        }
    )
    ex = await harness.start("h")
    await harness.settle()
    desk = HandoffDesk(http_server.url + "/handoffs")
    dispatcher = Dispatcher(harness.store, MemoryChannel(), clock=harness.clock, desk=desk)
    try:
        assert await dispatcher.run_once() == 1  # the desk answers 500
        harness.clock.advance(10)
        assert await dispatcher.run_once() == 1  # retried, accepted
        harness.clock.advance(60)
        assert await dispatcher.run_once() == 0  # nothing left to announce
    finally:
        await desk.aclose()
    posts = [r for r in http_server.requests if r["path"] == "/handoffs"]
    assert len(posts) == 2
    body = posts[-1]["body"]
    assert body["executionId"] == ex.id and body["queue"] == "vip"
    assert body["reason"] == "asked for a person"
    assert posts[0]["headers"]["Idempotency-Key"] == posts[1]["headers"]["Idempotency-Key"]


def test_the_desk_is_the_handoff_dependency() -> None:
    """A dependency named `handoff` in the configuration becomes the desk; none, no desk."""
    from trilha.config import Config, DependencyConfig
    from trilha.runtime import make_desk

    assert make_desk(Config()) is None
    config = Config(dependencies={"handoff": DependencyConfig(base_url="http://127.0.0.1:9/h")})
    desk = make_desk(config)
    assert desk is not None and desk.url == "http://127.0.0.1:9/h"
