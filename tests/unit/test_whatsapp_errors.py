"""How Meta's answers are classified for the dispatcher (what becomes of the message,
and the bounded ``reason`` label of the trail and the failure counter), and that the
webhook channel's failures keep their labels."""

from __future__ import annotations

import httpx
import pytest

from trilha.channels.whatsapp.graph import GraphError, classify, graph_error
from trilha.engine.dispatcher import failure_reason
from trilha.errors import ChannelError


def answer(
    status: int, code: int | None = None, headers: dict[str, str] | None = None
) -> GraphError:
    body = {"error": {"message": "(#x) t", "code": code}} if code is not None else {}
    return graph_error("Graph API /messages", httpx.Response(status, json=body, headers=headers))


@pytest.mark.parametrize(
    ("status", "code", "kind", "reason"),
    [
        (400, 130429, "throttled", "throttled"),
        (400, 131056, "throttled", "throttled"),
        (429, None, "throttled", "throttled"),
        (400, 131047, "outside_window", "outside_window"),
        (400, 131026, "permanent", "permanent"),
        (400, 132001, "permanent", "permanent"),
        (500, 131000, "transient", "http_5xx"),
        (503, None, "transient", "http_5xx"),
        (401, 190, "transient", "http_4xx"),
        # the whole account refused: wait for it to be put right, never kill the queue
        (400, 368, "transient", "http_4xx"),
        (400, 131031, "transient", "http_4xx"),
        (400, 131042, "transient", "http_4xx"),
        (400, 133005, "permanent", "permanent"),  # a two-step PIN mismatch
    ],
)
def test_metas_answers_are_classified(
    status: int, code: int | None, kind: str, reason: str
) -> None:
    exc = answer(status, code)
    assert classify(status, code) == kind
    assert exc.kind == kind
    assert exc.meta_code == code
    assert failure_reason(exc) == reason


def test_the_pair_rate_limit_and_a_retry_after_header_say_when_to_try_again() -> None:
    assert answer(400, 131056).details["retry_after"] == 6.0
    assert answer(429, None, {"Retry-After": "12"}).details["retry_after"] == 12.0
    assert answer(429, None, {"Retry-After": "999999"}).details["retry_after"] == 3_600.0
    assert "retry_after" not in answer(400, 130429).details
    assert "retry_after" not in answer(400, 131026, {"Retry-After": "5"}).details


def test_a_webhook_failure_keeps_its_labels() -> None:
    assert failure_reason(ChannelError("x", status=503)) == "http_5xx"
    assert failure_reason(ChannelError("x", reason="timeout")) == "timeout"
    assert failure_reason(ChannelError("x", kind="something else")) == "error"
