"""Issue 17 in a real browser: the debugger shows what became of each message.

A real ``trilha serve`` sends its messages through the webhook channel to a receiver on
127.0.0.1 that takes some conversations' messages, refuses others' (500: given up at
once, ``max_attempts = 1``) and holds one conversation's for a few seconds (queued
meanwhile). The platform's receipts arrive through ``POST .../statuses``. The list flags
the executions with undelivered messages, also one that fails while the page is open;
an execution's page flags them too and shows each bot message's ticks (one sent, two
delivered, two blue read, a red mark for failed or given up, a clock while queued),
moving as receipts arrive; at a phone's width nothing overflows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from test_debugger import login, screenshot

from webhook_receiver import WebhookReceiver, webhook_receiver

pytestmark = pytest.mark.slow

FLOW = {
    "id": "notify",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Your name?", "variable": "name", "next": "end"},
        {"id": "end", "type": "end"},
    ],
}
#: how long the receiver holds the slow conversation's messages
HOLD_SECONDS = 4.0


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """The platform's webhook: 500 to the conversations in ``refuse``, answers held
    back ``HOLD_SECONDS`` for those in ``hold``."""
    with webhook_receiver(refuse_status=500) as made:
        made.hold_seconds = HOLD_SECONDS
        yield made


def key(receiver: WebhookReceiver, conversation: str, text: str) -> str:
    """The key of ``conversation``'s message saying ``text``, once it reached the webhook."""
    found = receiver.key_of(conversation, text, wait=20)
    assert found, f"{text!r} never reached the webhook"
    return found


@pytest.fixture
def served(serve_flow: Callable[..., Any], receiver: WebhookReceiver) -> Any:
    return serve_flow(
        FLOW,
        config=f'[channel]\nkind = "webhook"\nurl = "{receiver.url}"\nmax_attempts = 1\n'
        "backoff_seconds = 0.1\n",
    )


def start(served: Any, conversation: str) -> str:
    with served.client("acme_operator") as client:
        started = client.post(
            "/v1/executions",
            json={"flowId": "notify", "conversationId": conversation, "contactId": "5511987654321"},
        )
    assert started.status_code == 201, started.text
    execution_id: str = started.json()["executionId"]
    return execution_id


def receipt(served: Any, conversation: str, key: str, status: str, **extra: Any) -> None:
    with served.client("acme_operator") as client:
        answer = client.post(
            f"/v1/conversations/{conversation}/statuses",
            json={"idempotencyKey": key, "status": status, "at": time.time(), **extra},
        )
    assert answer.status_code == 200, answer.text


def bubble(page: Page, text: str) -> Any:
    return page.locator("li.bubble.bot", has_text=text)


def undelivered(served: Any, execution_id: str) -> int:
    with served.client("acme_operator") as client:
        count: int = client.get(f"/v1/executions/{execution_id}").json()["undelivered"]
    return count


def test_ticks_move_with_the_receipts_and_undelivered_executions_are_flagged(
    served: Any, receiver: WebhookReceiver, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    receiver.refuse.add("wa:dead")
    ok = start(served, "wa:ok")
    dead = start(served, "wa:dead")
    failed = start(served, "wa:failed")
    question = key(receiver, "wa:ok", "Your name?")
    receipt(
        served,
        "wa:failed",
        key(receiver, "wa:failed", "Your name?"),
        "failed",
        error="131026: +55 11 98765-4321 is not on WhatsApp",
    )
    deadline = time.monotonic() + 20
    while undelivered(served, dead) < 1:
        assert time.monotonic() < deadline, "the refused message was never given up"
        time.sleep(0.1)

    page = open_page(width=1280, height=800)
    login(page, served.url, served.keys["acme_operator"])
    flags = {
        eid: page.locator(f'tr[data-id="{eid}"] .undelivered-flag') for eid in (ok, dead, failed)
    }
    expect(flags[dead].locator(".label")).to_have_text("1 undelivered")
    expect(flags[failed].locator(".label")).to_have_text("1 undelivered")
    expect(flags[ok]).to_be_hidden()

    # a conversation whose message is given up while the list is open is flagged live
    receiver.refuse.add("wa:late")
    late = start(served, "wa:late")
    expect(page.locator(f'tr[data-id="{late}"] .undelivered-flag .label')).to_have_text(
        "1 undelivered", timeout=15_000
    )
    screenshot(page, tmp_path, "img/debugger-undelivered.png", full_page=False)
    # sent again once the platform takes it: the flag goes, live
    receiver.refuse.discard("wa:late")
    with served.client("acme_operator") as client:
        dead_ones = client.get("/v1/outbox?status=dead").json()["messages"]
        (message,) = [m for m in dead_ones if m["executionId"] == late]
        redriven = client.post(f"/v1/outbox/{message['id']}/redrive")
        assert redriven.status_code == 200, redriven.text
    expect(page.locator(f'tr[data-id="{late}"] .undelivered-flag')).to_be_hidden(timeout=15_000)
    expect(flags[dead]).to_be_visible()

    # the ok execution: one tick once the channel took it, two when delivered, two blue
    # when read, as the receipts arrive with the page open; a late "sent" does not
    # lower it
    page.goto(f"{served.url}/debugger/executions/{ok}")
    asked = bubble(page, "Your name?").locator(".delivery")
    expect(asked).to_have_attribute("data-delivery", "sent")
    expect(asked.locator(".ticks")).to_have_text("✓")
    expect(page.locator(".exec-head .undelivered-flag")).to_be_hidden()
    receipt(served, "wa:ok", question, "delivered")
    expect(asked).to_have_attribute("data-delivery", "delivered")
    expect(asked.locator(".ticks")).to_have_text("✓✓")
    grey = asked.evaluate("el => getComputedStyle(el.querySelector('.ticks')).color")
    receipt(served, "wa:ok", question, "read")
    expect(asked).to_have_attribute("data-delivery", "read")
    expect(asked).to_have_text("✓✓read")
    blue = asked.evaluate("el => getComputedStyle(el.querySelector('.ticks')).color")
    assert blue == "rgb(29, 143, 225)" and grey != blue, (grey, blue)
    receipt(served, "wa:ok", question, "sent")
    page.locator("#tab-logs").click()
    expect(page.locator(".log", has_text="message.status")).to_have_count(3)
    page.locator("#tab-conversation").click()
    expect(asked).to_have_attribute("data-delivery", "read")
    screenshot(page, tmp_path, "img/debugger-delivery.png", full_page=False)

    # the given-up execution: flagged in its header, a red mark on its message
    page.goto(f"{served.url}/debugger/executions/{dead}")
    expect(page.locator(".exec-head .undelivered-flag .label")).to_have_text("1 undelivered")
    expect(page.locator(".exec-undelivered")).to_contain_text("A message to the contact")
    gone = bubble(page, "Your name?")
    expect(gone).to_have_class("bubble bot undelivered")
    expect(gone.locator(".delivery")).to_have_text("✕not delivered")
    assert "500" in (gone.locator(".delivery").get_attribute("title") or "")
    red = gone.locator(".delivery .ticks").evaluate("el => getComputedStyle(el).color")
    assert red == "rgb(198, 40, 40)", red

    # the failure the channel reported, its reason masked
    page.goto(f"{served.url}/debugger/executions/{failed}")
    mark = bubble(page, "Your name?").locator(".delivery")
    expect(mark).to_have_attribute("data-delivery", "failed")
    title = mark.get_attribute("title") or ""
    assert "131026" in title and "98765-4321" not in title, title


def test_a_message_on_its_way_shows_a_clock_then_its_tick(
    served: Any, receiver: WebhookReceiver, open_page: Callable[..., Page]
) -> None:
    receiver.hold.add("wa:slow")
    slow = start(served, "wa:slow")
    page = open_page()
    login(page, served.url, served.keys["acme_operator"])
    page.goto(f"{served.url}/debugger/executions/{slow}")
    mark = bubble(page, "Your name?").locator(".delivery")
    expect(mark).to_have_attribute("data-delivery", "queued")
    expect(mark.locator(".ticks")).to_have_text("◷")
    expect(mark).to_have_attribute("data-delivery", "sent", timeout=20_000)


def test_delivery_marks_fit_a_phone(
    served: Any, receiver: WebhookReceiver, open_page: Callable[..., Page]
) -> None:
    """At 375 px the flagged list and the marked transcript never overflow sideways."""
    receiver.refuse.add("wa:phone")
    execution_id = start(served, "wa:phone")
    key(receiver, "wa:phone", "Your name?")
    page = open_page(width=375, height=812, scheme="dark")
    login(page, served.url, served.keys["acme_operator"])
    expect(page.locator(f'tr[data-id="{execution_id}"] .undelivered-flag')).to_be_visible()

    def overflow() -> int:
        return int(
            page.evaluate(
                "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
                " - document.documentElement.clientWidth"
            )
        )

    assert overflow() == 0
    page.goto(f"{served.url}/debugger/executions/{execution_id}")
    expect(page.locator(".exec-head .undelivered-flag")).to_be_visible()
    expect(page.locator(".delivery.d-dead")).to_have_count(1)
    assert overflow() == 0
    flag = page.locator(".exec-head .undelivered-flag").bounding_box()
    assert flag is not None and flag["x"] + flag["width"] <= 375
