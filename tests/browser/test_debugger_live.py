"""The debugger keeps up with what changes after the page loaded, and says it plainly.

- A filtered list takes in the executions that come to match it (one completes,
  one fails), in createdAt order, and marks a row that stops matching.
- The confirmation dialog's buttons say different things; focus comes back to the
  control after an action; Escape dismisses the toast; the toast says what the
  server answered at that moment; the advance target resets; the path taken draws
  the operator's jump; disabled reasons speak like the badges.
- A stuck execution's page says why: no worker holds it and it is overdue, or which
  worker holds it until when; the stuck list picks up an execution that becomes
  stuck while it is open.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from test_debugger import confirm, fact, login

from conftest import GOOD_ID, GREET_FLOW

pytestmark = pytest.mark.slow

CONTACT = "5511987654321"

#: asks for the customer id, then looks it up in the CRM: the right id completes,
#: another one is a 503 (retried in 10 minutes: the execution waits in recovering)
ASK_LOOKUP_FLOW = {
    "id": "asklookup",
    "start": "ask_id",
    "nodes": [
        {
            "id": "ask_id",
            "type": "question",
            "text": "Your customer id?",
            "variable": "customer_id",
            "next": "fetch",
        },
        {
            "id": "fetch",
            "type": "http",
            "label": "customer from the CRM",
            "dependency": "crm",
            "url": "/customers/{{customer_id}}",
            "saveAs": "customer",
            "retry": {"maxAttempts": 5, "initialIntervalSeconds": 600, "jitter": False},
            "next": "thanks",
        },
        {"id": "thanks", "type": "message", "text": "Thanks, {{customer.name}}.", "next": "done"},
        {"id": "done", "type": "end"},
    ],
}


def start(served: Any, flow: str, conversation: str, contact: str = CONTACT) -> str:
    with served.client("acme_operator") as client:
        answer = client.post(
            "/v1/executions",
            json={"flowId": flow, "conversationId": conversation, "contactId": contact},
        )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["executionId"])


def reply(served: Any, conversation: str, text: str, contact: str = CONTACT) -> None:
    with served.client("acme_operator") as client:
        answer = client.post(
            f"/v1/conversations/{conversation}/messages",
            json={"messageId": f"m-{conversation}-{time.monotonic_ns()}", "contactId": contact,
                  "text": text},
        )  # fmt: skip
    assert answer.status_code == 202, answer.text


def status_of(served: Any, execution_id: str) -> str:
    with served.client("acme_operator") as client:
        return str(client.get(f"/v1/executions/{execution_id}").json()["status"])


def wait_status(served: Any, execution_id: str, wanted: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while status_of(served, execution_id) != wanted:
        assert time.monotonic() < deadline, f"{execution_id} never reached {wanted}"
        time.sleep(0.05)


def rows(page: Page) -> Any:
    return page.locator("table.executions tbody tr")


def focused_id(page: Page) -> str:
    return str(page.evaluate("document.activeElement ? document.activeElement.id : ''"))


def test_a_filtered_list_takes_in_executions_that_come_to_match(
    serve_flow: Callable[..., Any], crm: str, open_page: Callable[..., Page]
) -> None:
    """Lists filtered by status=completed, withErrors and status=waiting_input are open
    before anything happens; then executions complete and fail: each shows up where it
    now belongs, without a reload, and leaves its mark where it no longer does."""
    config = f'[channel]\nkind = "memory"\n\n[dependencies.crm]\nbase_url = "{crm}"\n'
    served = serve_flow(ASK_LOOKUP_FLOW, config=config)
    older = start(served, "asklookup", "conv-older")
    newer = start(served, "asklookup", "conv-newer")
    broken = start(served, "asklookup", "conv-broken", contact="5511900000042")

    pages = {}
    for name, query in (
        ("completed", "status=completed"),
        ("errors", "withErrors=true"),
        ("waiting", "status=waiting_input"),
    ):
        page = open_page()
        login(page, served.url, served.keys["acme_operator"])
        page.goto(f"{served.url}/debugger/?{query}")
        expect(page.locator(".live")).to_have_text("live")
        pages[name] = page
    expect(rows(pages["completed"])).to_have_count(0)
    expect(rows(pages["errors"])).to_have_count(0)
    expect(rows(pages["waiting"])).to_have_count(3)

    # the newer one completes first, then the older one: both appear, newest on top
    reply(served, "conv-newer", GOOD_ID)
    wait_status(served, newer, "completed")
    completed = pages["completed"]
    expect(completed.locator(f'tr[data-id="{newer}"]')).to_be_visible()
    expect(completed.locator(f'tr[data-id="{newer}"] .badge')).to_have_text(re.compile("completed"))
    reply(served, "conv-older", GOOD_ID)
    wait_status(served, older, "completed")
    expect(rows(completed)).to_have_count(2)
    expect(rows(completed).nth(0)).to_have_attribute("data-id", newer)
    expect(rows(completed).nth(1)).to_have_attribute("data-id", older)
    expect(completed.locator(".empty")).to_be_hidden()

    # one fails (the CRM answers 503): it appears in the with-errors list, with its error
    reply(served, "conv-broken", "C-1OO", contact="5511900000042")
    wait_status(served, broken, "recovering")
    errors = pages["errors"]
    row = errors.locator(f'tr[data-id="{broken}"]')
    expect(row).to_be_visible()
    expect(rows(errors)).to_have_count(1)
    expect(row.locator(".badge")).to_have_text(re.compile("recovering"))
    # a readable error (type and the start of the message) that opens to all of it,
    # and is the row link's description for keyboard and screen-reader users
    summary = row.locator("details.err summary")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text("503")
    expect(row.locator("a")).to_have_accessible_description(re.compile("503"))
    summary.focus()
    errors.keyboard.press("Enter")
    expect(row.locator(".err-full")).to_be_visible()
    expect(errors).to_have_url(re.compile(r"withErrors=true$"))  # opening it did not navigate
    # the completed ones never had an error: not taken in
    expect(errors.locator(f'tr[data-id="{newer}"]')).to_have_count(0)
    expect(rows(completed)).to_have_count(2)

    # the waiting list keeps its rows, marked as no longer matching, and says so
    waiting = pages["waiting"]
    for execution_id in (older, newer, broken):
        stale = waiting.locator(f'tr[data-id="{execution_id}"]')
        expect(stale).to_have_class(re.compile("stale"))
        expect(stale.locator(".nomatch")).to_have_text("no longer matches")
    expect(waiting.locator(".page-summary")).to_contain_text("3 no longer match")


def test_the_cancel_dialog_the_focus_and_the_toast(
    serve_flow: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    """Dismissing the Cancel dialog keeps the execution and the focus; a confirmed
    action gives the focus back to the control (or the next one still enabled);
    Escape dismisses the toast; the toast words the server's answer of that moment;
    an advance resets its target and the graph draws the jump; reasons read as the
    badges do."""
    served = serve_flow(GREET_FLOW)
    execution_id = start(served, "greet", "conv-focus")
    page = open_page()
    login(page, served.url, served.keys["acme_operator"])
    page.goto(f"{served.url}/debugger/executions/{execution_id}")
    expect(fact(page, "node")).to_have_text("ask_name")
    expect(page.locator(".flow-graph")).to_be_visible()

    # the state names read as the badges say them; the server's words stay in the title
    expect(page.locator("#why-resume")).to_have_text("it is waiting input")
    expect(page.locator("#why-resume")).to_have_attribute("title", "it is waiting_input")
    expect(page.locator("#do-resume")).to_have_attribute(
        "title", "Not possible: it is waiting_input"
    )

    # Cancel: two buttons that say two different things; "Keep it" keeps it
    page.locator("#do-cancel").focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#confirm-cancel")).to_have_text("Keep it")
    expect(dialog.locator("#confirm-ok")).to_have_text("Cancel execution")
    labels = dialog.locator("button").all_inner_texts()
    assert len(labels) == len(set(labels)), labels
    dialog.locator("#confirm-cancel").click()
    expect(dialog).to_be_hidden()
    assert focused_id(page) == "do-cancel"
    assert status_of(served, execution_id) == "waiting_input"
    # Escape dismisses it the same way
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert focused_id(page) == "do-cancel"

    # pause from the keyboard: Pause turns off, so the focus goes on to Resume
    page.locator("#do-pause").focus()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#confirm-cancel")).to_have_text("Back")
    dialog.locator("#confirm-ok").click()
    toast = page.locator("#toast")
    expect(toast).to_have_text(re.compile(r"^Paused at ask_name\."))
    expect(page.locator("#do-resume")).to_be_enabled()
    expect(page.locator("#do-resume")).to_be_focused()
    # the paused wait: what it would have done, not a running clock
    expect(fact(page, "waiting")).to_have_text(
        re.compile(r"^operator \(paused from waiting input; its wait would have ended in ")
    )
    page.keyboard.press("Escape")
    expect(toast).to_be_hidden()

    # a message while paused: the toast says the reply waits for the resume
    page.locator("#contact-text").fill("Ana")
    page.locator("#do-message").click()
    expect(dialog).to_contain_text("only once it is resumed")
    dialog.locator("#confirm-ok").click()
    expect(toast).to_contain_text("the reply waits until it is resumed")
    expect(page.locator("#contact-text")).to_be_focused()

    # resume: worded as what the server answered then (the page moves on live)
    page.locator("#do-resume").click()
    confirm(page)
    expect(toast).to_contain_text("Resumed (it was")
    expect(toast).to_contain_text("when the server answered")
    expect(page.locator(".title-row .badge")).to_have_text(re.compile("waiting input"))
    expect(fact(page, "node")).to_have_text("ask_topic")
    expect(page.locator("#do-resume")).to_be_disabled()
    expect(page.locator("#do-pause")).to_be_focused()  # Resume turned off: the next control
    page.keyboard.press("Escape")
    expect(toast).to_be_hidden()

    # advance to a node no edge leads to: the select goes back to "next node", the
    # graph draws the jump as a dashed arc, and the focus is back on Advance
    page.locator("#advance-to").select_option("hello")
    page.locator("#do-advance").click()
    confirm(page, "start over")
    expect(toast).to_contain_text("Advanced (it was")
    expect(page.locator("#advance-to")).to_have_value("")
    expect(page.locator("#do-advance")).to_be_focused()
    jump = page.locator('.flow-graph .jump[data-from="ask_topic"][data-to="hello"]')
    expect(jump).to_have_count(1)
    expect(jump.locator("title")).to_contain_text("no edge joins them")

    # cancel for real: every control turns off, the focus stays in the controls
    page.locator("#do-cancel").click()
    confirm(page)
    expect(toast).to_contain_text("Cancelled")
    expect(page.locator(".title-row .badge")).to_have_text(re.compile("cancelled"))
    expect(page.locator(".controls")).to_be_focused()
    assert page.evaluate("document.activeElement !== document.body")


def test_the_graph_zooms_and_shows_ids_and_whole_labels(
    serve_flow: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    """Zoom buttons change the drawing's scale and Fit brings it back; a labelled
    node shows its id too; an edge label cut in the drawing is whole on hover."""
    flow = json.loads(
        (Path(__file__).resolve().parents[2] / "examples" / "support_triage.json").read_text(
            encoding="utf-8"
        )
    )
    served = serve_flow(flow)
    execution_id = start(served, "support_triage", "conv-graph")
    page = open_page(width=1400)
    login(page, served.url, served.keys["acme_operator"])
    page.goto(f"{served.url}/debugger/executions/{execution_id}")
    graph = page.locator("svg.flow-graph")
    expect(graph).to_be_visible()
    # the cut label of a branch is whole in its title, from the flow's definition
    fraud = page.locator(".edge-label", has_text="contains(lower(problem), 'fra")
    expect(fraud.locator("title")).to_contain_text("contains(lower(problem), 'clonad')")
    # no two labels sit on each other
    boxes = [b for b in (el.bounding_box() for el in page.locator(".edge-label").all()) if b]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            overlap_x = min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"])
            overlap_y = min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"])
            assert overlap_x <= 1 or overlap_y <= 1, (a, b)

    def width() -> float:
        box = graph.bounding_box()
        assert box is not None
        return float(box["width"])

    # it opens fitted (its whole width in the card, its text readable: graph.js's
    # FIT_FLOOR; tests/browser/test_graph_layout.py measures that), saying the scale
    level = page.locator(".zoom-level")
    expect(level).to_have_text(re.compile(r"^fit \d+%$"))
    fitted = width()
    card = page.locator(".graph-scroll").bounding_box()
    assert card is not None and fitted <= card["width"] + 1
    fit = page.get_by_role("button", name="Fit the flow to the card's width")
    # zoom from the keyboard
    page.get_by_role("button", name="Zoom in").focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")
    expect(level).not_to_have_text(re.compile("fit"))
    assert width() > fitted * 1.5
    page.get_by_role("button", name="Zoom out").click()
    fit.click()
    expect(level).to_have_text(re.compile(r"^fit \d+%$"))
    assert abs(width() - fitted) < 2
    # every column of the timeline is inside its panel at laptop width
    page.locator("#tab-timeline").click()
    table = page.locator("#panel-timeline table").bounding_box()
    panel = page.locator("#panel-timeline").bounding_box()
    assert table is not None and panel is not None
    assert table["x"] + table["width"] <= panel["x"] + panel["width"] + 1
    expect(page.locator("#panel-timeline th").nth(2)).to_have_text("State after")


def test_a_stuck_execution_says_why_and_the_stuck_list_picks_it_up(
    serve_flow: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    """With no worker running, an execution due long ago is flagged on its page and
    shows in the stuck list; one held by a worker says which and until when."""
    served = serve_flow(GREET_FLOW, "--workers", "0")
    overdue = start(served, "greet", "conv-overdue")
    held = start(served, "greet", "conv-held", contact="5511900000001")
    later = start(served, "greet", "conv-later", contact="5511900000002")
    database = sqlite3.connect(served.store.removeprefix("sqlite:///"))

    def backdate(execution_id: str) -> None:
        with database:
            database.execute(
                "UPDATE executions SET wake_at = ? WHERE id = ?", (time.time() - 150, execution_id)
            )

    backdate(overdue)
    with database:
        database.execute(
            "UPDATE executions SET lease_owner = 'worker-7', lease_expires_at = ? WHERE id = ?",
            (time.time() + 600, held),
        )

    page = open_page()
    login(page, served.url, served.keys["acme_operator"])
    page.goto(f"{served.url}/debugger/executions/{overdue}")
    worker = fact(page, "worker")
    expect(worker).to_have_text(
        re.compile(r"^due for a worker since [\d:.]+ \(2m \d\ds ago\): no worker has taken it$")
    )
    expect(worker).to_have_class(re.compile("warn"))
    expect(page.locator(".exec-stuck")).to_be_visible()
    expect(page.locator(".exec-stuck")).to_contain_text("No worker has taken this execution")

    page.goto(f"{served.url}/debugger/executions/{held}")
    expect(fact(page, "worker")).to_have_text(
        re.compile(r"^held by worker worker-7 until [\d:.]+ \(\d+m \d\ds left\)$")
    )
    expect(page.locator(".exec-stuck")).to_be_hidden()

    page.goto(f"{served.url}/debugger/executions/{later}")
    expect(fact(page, "worker")).to_have_text(re.compile(r"^due for a worker since .* ago\)$"))

    # the stuck list: the overdue one now; another that becomes stuck while it is open
    # comes in at the next re-query (every 10 s), above it (it is newer)
    page.goto(f"{served.url}/debugger/?stuck=true")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_have_attribute("data-id", overdue)
    backdate(later)
    expect(rows(page)).to_have_count(2, timeout=15_000)
    expect(rows(page).first).to_have_attribute("data-id", later)
    database.close()


def test_at_a_phones_width_every_state_chip_and_tab_is_on_screen(
    serve_flow: Callable[..., Any], open_page: Callable[..., Page]
) -> None:
    """At 375 px the state and outcome chips and the tabs wrap instead of hiding off-screen;
    the contact filter says it wants the full id."""
    served = serve_flow(GREET_FLOW)
    execution_id = start(served, "greet", "conv-phone")
    page = open_page(width=375, height=812)
    login(page, served.url, served.keys["acme_operator"])
    expect(page.locator(f'tr[data-id="{execution_id}"]')).to_be_visible()
    contact = page.locator('input[name="contactId"]')
    expect(contact).to_have_attribute("placeholder", "the contact's full id")
    expect(contact).to_have_attribute("title", re.compile("not the masked one"))

    def off_screen(selector: str) -> list[str]:
        found = []
        for item in page.locator(selector).all():
            box = item.bounding_box()
            assert box is not None
            if box["x"] < 0 or box["x"] + box["width"] > 375:
                found.append(item.inner_text())
        return found

    # all, the 11 states, the 7 outcomes (expired among them: issue 16's session expiry)
    expect(page.locator("#counts .outcomes")).to_be_visible()
    expect(page.locator("#counts .count")).to_have_count(19)
    assert off_screen("#counts .count") == []
    page.goto(f"{served.url}/debugger/executions/{execution_id}")
    expect(page.locator("#tab-history")).to_be_visible()
    assert off_screen(".tablist .tab") == []
    page.locator("#tab-history").click()
    expect(page.locator("#panel-history")).to_be_visible()
