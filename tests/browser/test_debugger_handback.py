"""The debugger shows who holds a conversation and hands it back, in a real browser.

A 'wait' handoff gives the conversation to a person of the ``support`` queue: the page
flags it "with a person · support", the waiting fact names the queue, resume and advance
are refused with the reason, the person's messages read as theirs in the conversation.
*Hand back* with a node picked calls the handback route: the bot asks its survey and
the page follows it live. A viewer sees the control disabled, with the reason.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from test_debugger import confirm, fact, login, screenshot

from conftest import module_flow_api

pytestmark = pytest.mark.slow

CARE = {
    "id": "care",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "What is wrong?", "variable": "issue",
         "next": "to_desk"},
        {"id": "to_desk", "type": "handoff", "mode": "wait", "queue": "support",
         "reason": "about {{issue}}", "text": "Connecting you to a person.",
         "returnAfterSeconds": 3600, "next": "bye"},
        {"id": "survey", "type": "question", "text": "How did we do, 1 to 5?",
         "variable": "score", "next": "bye"},
        {"id": "bye", "type": "end", "text": "Bye."},
    ],
}  # fmt: skip


def held_execution(api: Any, *, answered: bool = True) -> str:
    """An execution of CARE a person holds; ``answered``: the person wrote once (which
    cancels the return deadline)."""
    with api.client("acme_operator") as client:
        started = client.post(
            "/v1/executions",
            json={"flowId": "care", "conversationId": "wa-9", "contactId": "5511912345678"},
        )
        assert started.status_code == 201, started.text
        execution_id = str(started.json()["executionId"])
        sent = client.post(
            "/v1/conversations/wa-9/messages",
            json={"messageId": "c-1", "contactId": "5511912345678", "text": "card blocked"},
        )
        assert sent.status_code == 202, sent.text
        for _ in range(200):
            if client.get(f"/v1/executions/{execution_id}").json()["waitingFor"] == "human":
                break
            time.sleep(0.05)
        if answered:
            said = client.post(
                "/v1/conversations/wa-9/agent-messages",
                json={"messageId": "a-1", "agentId": "ana", "text": "Hi, Ana from support."},
            )
            assert said.status_code == 202, said.text
    return execution_id


@pytest.fixture(scope="module")
def care_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One server with the CARE flow for the module."""
    with module_flow_api(tmp_path_factory, CARE) as api:
        yield api


def test_hand_back_from_the_debugger(
    care_server: Any, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    """Flagged with the queue; resume refused; Hand back to a picked node runs it."""
    api = care_server.tenant()
    execution_id = held_execution(api)
    page = open_page()
    login(page, api.url, api.keys["acme_operator"])
    page.goto(f"{api.url}/debugger/executions/{execution_id}")
    expect(page.locator(".exec-id")).to_have_text(execution_id)
    expect(page.locator(".held-flag")).to_have_text(re.compile("with a person · support"))
    expect(fact(page, "waiting")).to_have_text(re.compile(r"^a person, queue support \(since"))
    expect(fact(page, "worker")).to_contain_text("a person holds the conversation")
    agent = page.locator(".chat .bubble.agent")
    expect(agent).to_contain_text("Hi, Ana from support.")
    expect(agent.locator(".who")).to_have_text(re.compile("person · ana", re.IGNORECASE))
    expect(page.locator("#do-resume")).to_be_disabled()
    expect(page.locator("#why-resume")).to_contain_text("a person holds the conversation")
    expect(page.locator("#do-advance")).to_be_disabled()
    expect(page.locator("#do-handback")).to_be_enabled()
    screenshot(page, tmp_path, "debugger-handback.png")

    page.locator("#handback-to").select_option("survey")
    page.locator("#do-handback").click()
    expect(page.locator("dialog#confirm")).to_contain_text("at node survey")
    expect(page.locator("dialog#confirm")).to_contain_text("queue support")
    confirm(page, "solved on the phone")
    expect(page.locator("#toast")).to_contain_text("Handed back")
    expect(page.locator(".title-row .badge")).to_have_text(re.compile("waiting input"))
    expect(page.locator(".held-flag")).to_be_hidden()
    expect(fact(page, "node")).to_have_text("survey")
    expect(page.locator(".chat")).to_contain_text("How did we do, 1 to 5?")
    expect(page.locator("#do-handback")).to_be_disabled()
    expect(page.locator("#why-handback")).to_contain_text(
        "only a conversation a person holds can be handed back"
    )
    page.locator("#tab-history").click()
    expect(page.locator("#panel-history")).to_contain_text("solved on the phone")

    with api.client("acme_operator") as client:
        body = client.get(f"/v1/executions/{execution_id}").json()
    assert body["currentNodeId"] == "survey" and body["heldBy"] is None
    logs = [line["message"] for line in client_logs(api, execution_id)]
    assert "operator.handback" in logs


def client_logs(api: Any, execution_id: str) -> list[dict[str, Any]]:
    with api.client("acme_operator") as client:
        lines: list[dict[str, Any]] = client.get(f"/v1/executions/{execution_id}/logs").json()[
            "logs"
        ]
    return lines


def test_a_viewer_sees_hand_back_disabled(care_server: Any, open_page: Callable[..., Page]) -> None:
    """A viewer key reads who holds it and when the bot takes it back (nobody answered
    yet), and may not hand it back."""
    api = care_server.tenant()
    execution_id = held_execution(api, answered=False)
    page = open_page()
    login(page, api.url, api.keys["acme_viewer"])
    page.goto(f"{api.url}/debugger/executions/{execution_id}")
    expect(page.locator(".held-flag")).to_have_text(re.compile("with a person · support"))
    expect(fact(page, "waiting")).to_have_text(re.compile(r"the bot takes it back in 59m \d\ds$"))
    expect(page.locator("#do-handback")).to_be_disabled()
    expect(page.locator("#handback-to")).to_be_disabled()
    expect(page.locator(".controls")).to_contain_text("viewer")
