"""The issue's "done when": an operator finds the execution that failed last, sees
why from the page alone, fixes its variable and moves it on, with no other tool.

The failure is real: the flow calls a declared dependency, a real HTTP server on
127.0.0.1 standing in for the institution's CRM, which answers 503 for a customer
id it does not know (a transient error: the node is retried, with a backoff long
enough that the execution waits in ``recovering``). A typo in the id is the bug
the operator fixes. And the other way trouble reaches the page: a firing alert.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from test_debugger import confirm, fact, login, screenshot

from conftest import GOOD_ID

pytestmark = pytest.mark.slow

LOOKUP_FLOW = {
    "id": "lookup",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "One moment, please.", "next": "fetch"},
        {
            "id": "fetch",
            "type": "http",
            "label": "customer from the CRM",
            "dependency": "crm",
            "url": "/customers/{{customer_id}}",
            "saveAs": "customer",
            # retried, but not soon: the execution waits in recovering for a person
            "retry": {"maxAttempts": 5, "initialIntervalSeconds": 600, "jitter": False},
            "next": "thanks",
        },
        {
            "id": "thanks",
            "type": "message",
            "text": "Thanks, {{customer.name}}: your plan is {{customer.plan}}.",
            "next": "done",
        },
        {"id": "done", "type": "end"},
    ],
}


def test_an_operator_finds_the_failed_execution_fixes_it_and_moves_it_on(
    serve_flow: Callable[..., Any], tmp_path: Path, crm: str, open_page: Callable[..., Page]
) -> None:
    config = f'[channel]\nkind = "memory"\n\n[dependencies.crm]\nbase_url = "{crm}"\n'
    served = serve_flow(LOOKUP_FLOW, config=config)
    with served.client("acme_operator") as client:
        ids = {}
        for conversation, customer in (("conv-ok", GOOD_ID), ("conv-typo", "C-1OO")):
            started = client.post(
                "/v1/executions",
                json={
                    "flowId": "lookup",
                    "conversationId": conversation,
                    "contactId": "5511987654321",
                    "variables": {"customer_id": customer},
                },
            )
            assert started.status_code == 201, started.text
            ids[conversation] = started.json()["executionId"]
    broken, fine = ids["conv-typo"], ids["conv-ok"]

    page = open_page()
    login(page, served.url, served.keys["acme_operator"])
    # find it: of the two, only the broken one has errors
    expect(page.locator(f'tr[data-id="{fine}"] .badge')).to_have_text(re.compile("completed"))
    page.get_by_label("With errors").check()
    rows = page.locator("table.executions tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", broken)
    expect(rows.first.locator(".badge")).to_have_text(re.compile("recovering"))
    screenshot(page, tmp_path, "debugger-errors.png")
    rows.first.locator("a").click()

    # see why, from the page alone: the failed node, the step's error, the log line
    expect(page.locator(".exec-id")).to_have_text(broken)
    expect(fact(page, "node")).to_have_text("fetch")
    expect(page.locator('.flow-graph [data-node="fetch"]')).to_have_class(re.compile("failed"))
    page.locator("#tab-timeline").click()
    failed_step = page.locator("#panel-timeline tr.failed")
    expect(failed_step).to_have_count(1)
    expect(failed_step).to_contain_text("fetch")
    expect(failed_step.locator(".error-cell")).to_contain_text("503")
    page.locator("#tab-variables").click()
    expect(page.locator('.vars tr[data-name="customer_id"] td.value')).to_have_text('"C-1OO"')
    expect(page.locator("#do-retry")).to_be_enabled()
    screenshot(page, tmp_path, "debugger-failure.png")

    # fix the variable (audited), then retry the failed step now
    page.locator("#var-path").fill("customer_id")
    page.locator("#var-value").fill(GOOD_ID)
    page.locator("#var-set").click()
    confirm(page, "typo in the customer id: O for 0")
    expect(page.locator('.vars tr[data-name="customer_id"] td.value')).to_have_text(f'"{GOOD_ID}"')
    page.locator("#do-retry").click()
    confirm(page, "CRM id fixed")
    expect(page.locator(".title-row .badge")).to_have_text(re.compile("completed"))
    page.locator("#tab-conversation").click()
    expect(page.locator(".chat")).to_contain_text("Thanks, Ana: your plan is gold.")
    page.locator("#tab-history").click()
    history = page.locator("#panel-history")
    expect(history).to_contain_text("typo in the customer id: O for 0")
    expect(history).to_contain_text("retry requested by an operator")

    with served.client("acme_operator") as client:
        done = client.get(f"/v1/executions/{broken}").json()
        audit = client.get(f"/v1/executions/{broken}/history").json()["audit"]
    assert done["status"] == "completed"
    assert done["variables"]["customer"] == {"name": "Ana", "plan": "gold"}
    assert [a["operation"] for a in audit] == ["set_variables", "retry"]


def test_a_firing_alert_shows_as_a_banner_over_the_list(
    serve_flow: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    """The memory rule with a threshold every host is over fires at the first
    evaluation; the list page shows it (from GET /v1/alerts) above the table."""
    config = (
        '[channel]\nkind = "memory"\n\n[alerts]\nevaluation_interval_seconds = 0.5\n\n'
        "[alerts.rules.memory]\nthreshold = 0.0001\nfor_seconds = 0\n"
    )
    served = serve_flow(LOOKUP_FLOW, config=config)
    with served.client("acme_viewer") as client:
        for _ in range(100):
            firing = [
                a for a in client.get("/v1/alerts").json()["alerts"] if a["status"] == "firing"
            ]
            if firing:
                break
            time.sleep(0.1)
    assert [a["rule"] for a in firing] == ["TrilhaMemoryHigh"]
    page = open_page()
    login(page, served.url, served.keys["acme_viewer"])
    banner = page.locator("#alerts")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("1 alert firing")
    expect(banner).to_contain_text("TrilhaMemoryHigh")
    expect(banner).to_contain_text("host memory in use")
