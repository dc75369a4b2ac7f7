"""An execution waiting for an event, in the debugger: the wait names the event, and once
a signal comes the page shows the step that took it, its payload and the trail lines."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from test_debugger import fact, login, screenshot

pytestmark = pytest.mark.slow

PAY = {
    "id": "pay",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "message", "text": "Pay with the link, please.", "next": "wait"},
        {
            "id": "wait",
            "type": "wait_event",
            "event": "payment.confirmed",
            "saveAs": "payment",
            "inputTimeoutSeconds": 3600,
            "next": "thanks",
        },
        {"id": "thanks", "type": "end", "text": "Paid {{payment.amount}}, thank you!"},
    ],
}


def test_the_debugger_shows_the_event_wait_and_the_signal(
    serve_flow: Callable[..., Any], open_page: Callable[..., Page], tmp_path: Path
) -> None:
    """The waiting fact names the event and its due time; after the signal the execution
    completes live, the timeline shows the step that took it, the variables its payload
    and the logs the signal.received and signal.applied lines."""
    served = serve_flow(PAY)
    with served.client("acme_operator") as client:
        started = client.post(
            "/v1/executions",
            json={"flowId": "pay", "conversationId": "conv-pay", "contactId": "5511900000002"},
        )
        assert started.status_code == 201, started.text
        execution_id = started.json()["executionId"]
    page = open_page()
    login(page, served.url, served.keys["acme_operator"])
    page.goto(f"{served.url}/debugger/executions/{execution_id}")
    expect(fact(page, "node")).to_have_text("wait")
    expect(fact(page, "waiting")).to_have_text(
        re.compile(r"^event payment\.confirmed \(a signal\) · due in (59m|1h)")
    )
    expect(page.locator(".title-row .badge")).to_have_text(re.compile("waiting input"))
    expect(page.locator('.flow-graph [data-node="wait"]')).to_have_class(re.compile("current"))
    screenshot(page, tmp_path, "img/debugger-wait-event.png")

    with served.client("acme_operator") as client:
        sent = client.post(
            f"/v1/executions/{execution_id}/signals/payment.confirmed",
            json={"signalId": "pix-77", "payload": {"amount": "R$ 42"}},
        )
        assert sent.status_code == 202, sent.text
    expect(page.locator(".title-row .badge")).to_have_text(re.compile("completed"))
    expect(page.locator(".chat")).to_contain_text("Paid R$ 42, thank you!")
    page.locator("#tab-timeline").click()
    took = page.locator("#panel-timeline tbody tr").filter(has_text="pix-77")
    expect(took).to_have_count(1)
    expect(took.locator("td.node")).to_contain_text("wait")
    page.locator("#tab-variables").click()
    expect(page.locator('.vars tr[data-name="payment"] td.value')).to_contain_text("R$ 42")
    page.locator("#tab-logs").click()
    logs = page.locator("#panel-logs .logs")
    expect(logs).to_contain_text("signal.received")
    expect(logs).to_contain_text("signal.applied")
