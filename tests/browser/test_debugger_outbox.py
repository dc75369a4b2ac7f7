"""The debugger's Outbox view in a real browser: from the dead-messages alert to a
redriven message.

A real ``trilha serve`` sends its messages through the webhook channel to a receiver
on 127.0.0.1 that refuses them (503) while told to; with ``max_attempts = 2`` a refused
message is given up (dead) in a fraction of a second, and the ``dead_messages`` alert
rule, evaluated every 0.5 s with ``for_seconds = 0``, fires at once. The operator starts
from the alert banner, reaches the dead message in one click, and redrives it once the
receiver takes messages again: it leaves the dead list and its execution is no longer
flagged. A viewer key sees the same list with no enabled Redrive, at a phone's width;
a redrive the server refuses (the message was delivered meanwhile) shows the
problem's detail.

``TRILHA_DOCS_SCREENSHOTS=1`` writes docs/img/debugger-outbox.png (1280x800).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect
from test_debugger import confirm, login, screenshot

from webhook_receiver import WebhookReceiver, webhook_receiver

pytestmark = pytest.mark.slow

#: the message's text holds markup: the page must show it as text
QUESTION = "Your <b>name</b>? <img src=x>"
FLOW = {
    "id": "notify",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": QUESTION, "variable": "name", "next": "end"},
        {"id": "end", "type": "end"},
    ],
}
CONTACT = "5511987654321"
#: the dead-messages alert fires at its first evaluation; the other rules are off, so
#: the banner holds this alert alone whatever the host's memory
ALERTS = """
[alerts]
evaluation_interval_seconds = 0.5

[alerts.rules.dead_messages]
for_seconds = 0

[alerts.rules.error_rate]
enabled = false

[alerts.rules.memory]
enabled = false

[alerts.rules.slow_turn]
enabled = false

[alerts.rules.queue_backlog]
enabled = false
"""


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """The platform's webhook: 503 while ``refuse_all`` is set, else 200."""
    with webhook_receiver(refuse_all=True) as made:
        yield made


def taken(receiver: WebhookReceiver) -> list[str]:
    """The conversations of the messages it accepted."""
    return [b["conversationId"] for b in receiver.accepted()]


@pytest.fixture
def served(serve_flow: Callable[..., Any], receiver: WebhookReceiver) -> Any:
    return serve_flow(
        FLOW,
        config=f'[channel]\nkind = "webhook"\nurl = "{receiver.url}"\nmax_attempts = 2\n'
        "backoff_seconds = 0.05\n" + ALERTS,
    )


def wait_for(what: str, check: Callable[[], Any], seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def start(served: Any, conversation: str) -> str:
    with served.client("acme_operator") as client:
        started = client.post(
            "/v1/executions",
            json={"flowId": "notify", "conversationId": conversation, "contactId": CONTACT},
        )
    assert started.status_code == 201, started.text
    execution_id: str = started.json()["executionId"]
    return execution_id


def dead(served: Any, execution_id: str) -> dict[str, Any] | None:
    """The execution's dead message, once it is given up."""
    with served.client("acme_operator") as client:
        messages = client.get("/v1/outbox?status=dead").json()["messages"]
    return next((m for m in messages if m["executionId"] == execution_id), None)


def firing(served: Any) -> dict[str, Any] | None:
    with served.client("acme_viewer") as client:
        alerts = client.get("/v1/alerts").json()["alerts"]
    return next(
        (a for a in alerts if a["rule"] == "TrilhaDeadMessages" and a["status"] == "firing"),
        None,
    )


def test_from_the_dead_messages_alert_to_a_redriven_message(
    served: Any, receiver: WebhookReceiver, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    """Banner -> one click -> the dead message (text as text, contact masked, attempts,
    the 503, a link to its execution) -> Redrive, confirmed -> gone from the dead list,
    delivered, and its execution no longer flagged undelivered."""
    execution_id = start(served, "wa:outbox")
    message = wait_for("the message to be given up", lambda: dead(served, execution_id))
    alert = wait_for("the dead-messages alert", lambda: firing(served))
    assert alert["evidence"] == {
        "executions": None,
        "errors": None,
        "outbox": "/v1/outbox?status=dead",
    }

    page = open_page(width=1280, height=800)
    login(page, served.url, served.keys["acme_operator"])
    item = page.locator('#alerts li[data-rule="TrilhaDeadMessages"]')
    expect(item).to_be_visible()
    item.get_by_role("link", name=re.compile("See the undelivered messages")).click()
    expect(page).to_have_url(re.compile(r"/debugger/outbox\?status=dead$"))
    expect(page.locator('#views a[data-view="outbox"]')).to_have_attribute("aria-current", "page")
    expect(page.locator('.outbox-status a[data-status="dead"]')).to_have_attribute(
        "aria-current", "true"
    )

    row = page.locator(f'table.outbox tbody tr[data-id="{message["id"]}"]')
    expect(row).to_have_attribute("data-status", "dead")
    expect(row.locator(".msg-text")).to_have_text(QUESTION)  # shown as text...
    assert row.locator("td.text b, td.text img").count() == 0  # ...never parsed
    expect(row.locator(".contact")).to_have_text(message["contactMasked"])
    assert CONTACT not in (row.inner_text() + (row.inner_html()))
    expect(row.locator("td.attempts")).to_have_text("2")
    expect(row.locator(".last-error")).to_contain_text("503")
    expect(row.locator("td.status")).to_have_text("✕dead")
    link = row.locator("a.open-execution")
    expect(link).to_have_attribute("href", f"/debugger/executions/{execution_id}")
    redrive = row.get_by_role("button", name="Redrive")
    expect(redrive).to_be_enabled()
    screenshot(page, tmp_path, "img/debugger-outbox.png", full_page=False)

    # the platform takes messages again: redriven, confirmed, gone from the dead list
    receiver.refuse_all = False
    redrive.click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_contain_text(f"Redrive message {message['id']}?")
    expect(dialog.locator("#confirm-text")).to_contain_text(message["contactMasked"])
    confirm(page)
    expect(page.locator("#toast")).to_contain_text(f"Message {message['id']} redriven")
    expect(row).to_have_count(0)
    expect(page.locator(".outbox-view .empty")).to_have_text(
        "No message is dead: every message was delivered or is still being tried."
    )
    wait_for("the redriven message to arrive", lambda: "wa:outbox" in taken(receiver))

    # nor pending: it was delivered; and its execution is no longer flagged
    page.locator('.outbox-status a[data-status="pending"]').click()
    expect(page).to_have_url(re.compile(r"/debugger/outbox\?status=pending$"))
    expect(page.locator(".outbox-view .empty")).to_have_text(
        "No message is waiting for another attempt."
    )
    page.goto(f"{served.url}/debugger/executions/{execution_id}")
    expect(page.locator(".exec-head .undelivered-flag")).to_be_hidden()
    expect(page.locator("li.bubble.bot .delivery")).to_have_attribute("data-delivery", "sent")


def test_a_viewer_sees_the_dead_messages_but_no_enabled_redrive_even_on_a_phone(
    served: Any, open_page: Callable[..., Page]
) -> None:
    execution_id = start(served, "wa:viewer")
    message = wait_for("the message to be given up", lambda: dead(served, execution_id))
    page = open_page(width=375, height=812, scheme="dark")
    login(page, served.url, served.keys["acme_viewer"])
    page.locator('#views a[data-view="outbox"]').click()
    expect(page).to_have_url(re.compile(r"/debugger/outbox$"))
    row = page.locator(f'table.outbox tbody tr[data-id="{message["id"]}"]')
    expect(row.locator(".msg-text")).to_have_text(QUESTION)
    redrive = row.get_by_role("button", name="Redrive")
    expect(redrive).to_be_disabled()
    expect(redrive).to_have_attribute("title", "Not possible: viewer keys may only read")
    expect(page.locator(".redrive-note")).to_contain_text("Redrive is disabled: viewer keys")
    assert page.locator("table.outbox button.redrive:enabled").count() == 0

    overflow = page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth"
    )
    assert overflow == 0
    box = redrive.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 375


def test_a_redrive_the_server_refuses_shows_its_detail(
    served: Any, receiver: WebhookReceiver, open_page: Callable[..., Page]
) -> None:
    """The row is stale (no live updates: the event stream is cut) and the message was
    redriven and delivered behind the page's back: the server's 409 is the toast."""
    execution_id = start(served, "wa:stale")
    message = wait_for("the message to be given up", lambda: dead(served, execution_id))
    page = open_page()

    def cut(route: Route) -> None:
        route.abort()

    page.route("**/v1/events*", cut)
    login(page, served.url, served.keys["acme_operator"])
    page.goto(f"{served.url}/debugger/outbox")
    row = page.locator(f'table.outbox tbody tr[data-id="{message["id"]}"]')
    expect(row).to_be_visible()

    receiver.refuse_all = False
    with served.client("acme_operator") as client:
        assert client.post(f"/v1/outbox/{message['id']}/redrive").status_code == 200
    wait_for("the message to be delivered", lambda: "wa:stale" in taken(receiver))

    def sent() -> bool:
        with served.client("acme_operator") as client:
            listed = [
                m["id"]
                for status in ("dead", "pending")
                for m in client.get(f"/v1/outbox?status={status}").json()["messages"]
            ]
        return message["id"] not in listed

    wait_for("the message to be recorded as sent", sent)

    row.get_by_role("button", name="Redrive").click()
    confirm(page)
    expect(page.locator("#toast")).to_contain_text(
        f"Redrive failed: message {message['id']} was delivered already"
    )
    expect(page.locator("#toast")).to_have_class(re.compile(r"\berror\b"))
    expect(row).to_have_count(0)  # and the list is read again
