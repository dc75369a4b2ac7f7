"""The debugger inside a sub-flow: the call stack says which frame runs and shows each
caller's variables; the graph draws the running frame's flow, and draws the caller's
again, live, when the sub-flow returns."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from test_debugger import confirm, fact, login, screenshot

pytestmark = pytest.mark.slow

MAIN = {
    "id": "checkout",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "set", "variables": {"order": "A-17"}, "next": "get_address"},
        {
            "id": "get_address",
            "type": "subflow",
            "label": "ask the address",
            "flowId": "address",
            "input": {"cep": "{{cep}}"},
            "output": {"address": "result"},
            "branches": {"failed": "sorry"},
            "next": "thanks",
        },
        {"id": "thanks", "type": "end", "text": "Order {{order}} goes to n. {{address.number}}."},
        {"id": "sorry", "type": "end", "text": "We could not get your address."},
    ],
}
ADDRESS = {
    "id": "address",
    "start": "ask_number",
    "nodes": [
        {
            "id": "ask_number",
            "type": "question",
            "text": "House number at {{cep}}?",
            "variable": "number",
            "next": "keep",
        },
        {
            "id": "keep",
            "type": "set",
            "variables": {"result": {"cep": "{{cep}}", "number": "{{number}}"}},
            "next": "noted",
        },
        {"id": "noted", "type": "end", "text": "Noted."},
    ],
}


def test_the_debugger_shows_the_running_frame_and_its_callers(
    serve_flow: Callable[..., Any], open_page: Callable[..., Page], tmp_path: Path
) -> None:
    served = serve_flow(MAIN)
    with served.client("acme_operator") as client:
        published = client.put("/v1/flows/address", json=ADDRESS)
        assert published.status_code == 201, published.text
        started = client.post(
            "/v1/executions",
            json={
                "flowId": "checkout",
                "conversationId": "conv-sub",
                "contactId": "5511987650000",
                "variables": {"cep": "01001-000"},
            },
        )
        assert started.status_code == 201, started.text
        eid = started.json()["executionId"]

    page = open_page()
    login(page, served.url, served.keys["acme_operator"])
    page.goto(f"{served.url}/debugger/executions/{eid}")
    expect(fact(page, "node")).to_have_text("ask_number")

    # which frame runs: the sub-flow, last, marked; its caller waits at its subflow node
    stack = page.locator("section.call-stack")
    expect(stack).to_be_visible()
    frames = stack.locator("li.frame")
    expect(frames).to_have_count(2)
    expect(frames.nth(0)).to_contain_text("checkout v1 at get_address")
    expect(frames.nth(0)).to_contain_text("waits for the sub-flow to return")
    expect(frames.nth(1)).to_contain_text("address v1 at ask_number")
    expect(frames.nth(1)).to_have_attribute("aria-current", "step")
    expect(frames.nth(1).locator(".frame-running")).to_have_text("running")
    # the caller's variables, kept while the sub-flow sees its input alone
    frames.nth(0).locator("summary").click()
    caller_vars = frames.nth(0).locator("table.frame-vars")
    expect(caller_vars).to_contain_text("order")
    expect(caller_vars).to_contain_text("A-17")
    page.get_by_role("tab", name="Variables").click()
    expect(page.locator("table.vars")).to_contain_text("cep")
    expect(page.locator("table.vars")).not_to_contain_text("order")

    # the graph is the running frame's flow
    graph = page.locator(".flow-graph")
    expect(graph).to_have_attribute("aria-label", re.compile("Flow acme/address version 1"))
    expect(page.locator('.flow-graph [data-node="ask_number"]')).to_have_class(
        re.compile("current")
    )
    expect(page.locator('.flow-graph [data-node="get_address"]')).to_have_count(0)
    screenshot(page, tmp_path, "img/debugger-subflow.png")

    # the contact answers: the sub-flow returns, the graph is the caller's again, live
    page.locator("#contact-text").fill("42")
    page.locator("#do-message").click()
    confirm(page)
    expect(fact(page, "node")).to_have_text("thanks")
    expect(stack).to_be_hidden()
    expect(graph.first).to_have_attribute("aria-label", re.compile("Flow checkout version 1"))
    expect(page.locator('.flow-graph [data-node="thanks"]')).to_have_class(re.compile("current"))
    expect(page.locator('.flow-graph [data-node="get_address"]')).to_have_class(
        re.compile("visited")
    )
    expect(page.locator(".chat")).to_contain_text("Order A-17 goes to n. 42.")
