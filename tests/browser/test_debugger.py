"""The execution debugger in a real browser against a real ``trilha serve``.

What an operator does with it: log in, see an execution appear live, open it, watch
it move, pause it, fix a variable, resume it, send it to a chosen node and see it
end; what a viewer and another institution's key may not do; and that the page
fits a phone. Every expectation waits (the page is live) but asserts real text.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONTACT = "5511987654321"


def login(page: Page, url: str, key: str) -> None:
    """Open the debugger and log in with ``key``; returns once the header shows the key."""
    page.goto(f"{url}/debugger/")
    page.locator("#api-key").fill(key)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#identity")).to_be_visible()


def confirm(page: Page, reason: str | None = None) -> None:
    """Confirm the open confirmation dialog, typing ``reason`` when given."""
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    if reason is not None:
        dialog.locator("#confirm-reason").fill(reason)
    dialog.locator("#confirm-ok").click()
    expect(dialog).to_be_hidden()


def start(served: Any, key: str, conversation: str, contact: str = CONTACT) -> str:
    with served.client(key) as client:
        answer = client.post(
            "/v1/executions",
            json={"flowId": "greet", "conversationId": conversation, "contactId": contact},
        )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["executionId"])


def screenshot(page: Page, tmp_path: Path, name: str, *, full_page: bool = True) -> None:
    """Save ``name`` (a path under docs/, e.g. ``img/x.png``) in tmp_path, and in docs/
    with TRILHA_DOCS_SCREENSHOTS=1; ``full_page=False`` keeps to the viewport."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    toast = page.locator("#toast")
    if toast.is_visible():
        toast.click()  # dismissed: it floats over whatever is under it
        expect(toast).to_be_hidden()
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 0
    if os.environ.get("TRILHA_DOCS_SCREENSHOTS") == "1":
        (ROOT / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, ROOT / "docs" / name)


def fact(page: Page, name: str) -> Any:
    return page.locator(f'.fact[data-fact="{name}"] dd')


@pytest.fixture
def served(shared_served: Any) -> Any:
    """The module's server (the greet flow), with institutions of the test's own."""
    return shared_served.tenant()


def test_an_operator_follows_and_steers_an_execution_to_its_end(
    served: Any, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    """Live list -> execution view -> reply, pause, edit, resume, advance -> completed;
    another institution's key sees nothing of it."""
    # a few executions already there, in other states
    start(served, "acme_operator", "conv-waiting", contact="5511900000001")
    with served.client("acme_operator") as client:
        for conversation, action in (("conv-paused", "pause"), ("conv-cancelled", "cancel")):
            other = start(served, "acme_operator", conversation, contact="5511900000002")
            moved = client.post(f"/v1/executions/{other}/{action}", json={"reason": "setup"})
            assert moved.status_code == 200, moved.text
    page = open_page()
    login(page, served.url, served.keys["acme_operator"])
    expect(page.locator("#who")).to_contain_text(served.institutions["acme"])
    expect(page.locator("#who .role")).to_have_text("operator")
    expect(page.locator("table.executions tbody tr")).to_have_count(3)
    expect(page.locator("#counts .count.s-waiting_input .n")).to_have_text("1")
    expect(page.locator("#counts .count.s-paused .n")).to_have_text("1")
    expect(page.locator("#counts .count.s-cancelled .n")).to_have_text("1")
    expect(page.locator(".live")).to_have_text("live")

    # started after the page is open: it appears through the event stream
    execution_id = start(served, "acme_operator", "conv-live")
    row = page.locator(f'tr[data-id="{execution_id}"]')
    expect(row).to_be_visible()
    expect(row.locator(".badge")).to_have_text(re.compile("waiting input"))
    expect(row.locator("td.node")).to_have_text("ask_name")
    expect(row).not_to_contain_text(CONTACT)  # the contact is masked
    expect(row).to_contain_text(CONTACT[-2:])
    expect(page.locator("#counts .count.s-waiting_input .n")).to_have_text("2")
    expect(page.locator("table.executions tbody tr").first).to_have_attribute(
        "data-id", execution_id
    )
    screenshot(page, tmp_path, "debugger-list.png")

    # open it from the keyboard: the row's link takes focus and Enter follows it
    row.locator("a").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/debugger/executions/{execution_id}$"))
    expect(page.locator(".exec-id")).to_have_text(execution_id)
    expect(fact(page, "node")).to_have_text("ask_name")
    expect(fact(page, "contact")).not_to_have_text(CONTACT)
    expect(page.locator('.flow-graph [data-node="ask_name"]')).to_have_class(re.compile("current"))
    expect(page.locator(".chat")).to_contain_text("What is your name?")

    # the contact answers (markup in it must stay text)
    page.locator("#contact-text").fill("<i>Ana</i>")
    page.locator("#do-message").click()
    confirm(page)
    expect(page.locator("#toast")).to_contain_text("Message sent")
    expect(fact(page, "node")).to_have_text("ask_topic")
    expect(page.locator('.flow-graph [data-node="ask_topic"]')).to_have_class(re.compile("current"))
    expect(page.locator('.flow-graph [data-node="greet"]')).to_have_class(re.compile("visited"))
    expect(page.locator(".flow-graph .edge.traversed")).to_have_count(3)
    expect(page.locator(".chat")).to_contain_text("Nice to meet you, <i>Ana</i>.")
    expect(page.locator(".chat i")).to_have_count(0)

    # pause, with a reason
    page.locator("#do-pause").click()
    confirm(page, "checking the name")
    expect(page.locator("#toast")).to_contain_text("Paused")
    expect(page.locator(".title-row .badge")).to_have_text(re.compile("paused"))
    expect(page.locator("#do-pause")).to_be_disabled()
    expect(page.locator("#why-pause")).to_have_text("it is paused")
    expect(page.locator("#do-resume")).to_be_enabled()

    # fix the variable: a reason is required, then the value and its history show
    page.locator("#tab-variables").click()
    name_row = page.locator('.vars tr[data-name="name"]')
    expect(name_row.locator("td.value")).to_have_text('"<i>Ana</i>"')
    page.locator("#var-path").fill("name")
    page.locator("#var-value").fill("Bia")
    page.locator("#var-set").click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_contain_text('name = "Bia"')
    dialog.locator("#confirm-ok").click()
    expect(dialog).to_be_visible()  # no reason given: still asking
    confirm(page, "the contact mistyped")
    expect(page.locator("#toast")).to_contain_text("Variable name set")
    expect(name_row.locator("td.value")).to_have_text('"Bia"')
    expect(name_row.locator("td.setby")).to_contain_text("operator")
    expect(name_row.locator(".var-history li.by-operator")).to_contain_text('"Bia"')
    expect(name_row.locator(".var-history li.by-step")).to_contain_text("ask_name")
    screenshot(page, tmp_path, "debugger-execution.png")

    # resume: back to waiting for the topic
    page.locator("#do-resume").click()
    confirm(page)
    expect(page.locator(".title-row .badge")).to_have_text(re.compile("waiting input"))
    expect(page.locator("#do-resume")).to_be_disabled()

    # advance to a chosen node: bye runs, then the end
    page.locator("#advance-to").select_option("bye")
    page.locator("#do-advance").click()
    expect(page.locator("dialog#confirm")).to_contain_text("to node bye")
    confirm(page, "skip the topic")
    expect(page.locator(".title-row .badge")).to_have_text(re.compile("completed"))
    expect(fact(page, "node")).to_have_text("done")
    expect(page.locator(".chat")).to_contain_text("Bye, Bia!")
    expect(page.locator(".live")).to_contain_text("ended")
    expect(page.locator("#do-advance")).to_be_disabled()
    expect(page.locator("#why-pause")).to_have_text("it is completed")
    page.locator("#tab-history").click()
    expect(page.locator("#panel-history")).to_contain_text(
        "paused by an operator: checking the name"
    )
    expect(page.locator("#panel-history")).to_contain_text("set_variables")
    expect(page.locator("#panel-history")).to_contain_text("the contact mistyped")
    page.locator("#tab-logs").click()
    expect(page.locator("#panel-logs .logs")).to_contain_text("execution.ended")
    page.locator("#log-level").select_option("WARN")
    expect(page.locator("#panel-logs .logs")).not_to_contain_text("node.entered")

    with served.client("acme_operator") as client:
        ended = client.get(f"/v1/executions/{execution_id}").json()
    assert ended["status"] == "completed"
    assert ended["variables"]["name"] == "Bia"

    # another institution's operator: not in its list, and its URL is "not found"
    beta_id = start(served, "beta_operator", "conv-beta", contact="5511900000000")
    page.locator("#logout").click()
    expect(page.locator("#api-key")).to_be_visible()
    page.locator("#api-key").fill(served.keys["beta_operator"])
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#who")).to_contain_text(served.institutions["beta"])
    page.goto(f"{served.url}/debugger/")
    expect(page.locator(f'tr[data-id="{beta_id}"]')).to_be_visible()
    expect(page.locator(f'tr[data-id="{execution_id}"]')).to_have_count(0)
    page.goto(f"{served.url}/debugger/executions/{execution_id}")
    expect(page.locator(".not-found h1")).to_have_text("Execution not found")
    expect(page.locator(".not-found")).to_contain_text("belongs to another institution")


def test_a_viewer_sees_the_controls_disabled_with_the_reason(
    served: Any, open_page: Callable[..., Page]
) -> None:
    """Every control is off for a viewer key, and the page says why."""
    execution_id = start(served, "acme_operator", "conv-viewer")
    page = open_page()
    login(page, served.url, served.keys["acme_viewer"])
    expect(page.locator("#who .role")).to_have_text("viewer")
    page.goto(f"{served.url}/debugger/executions/{execution_id}")
    expect(fact(page, "node")).to_have_text("ask_name")
    for control in ("pause", "resume", "retry", "advance", "cancel", "message"):
        button = page.locator(f"#do-{control}")
        expect(button).to_be_disabled()
        expect(button).to_have_attribute("title", re.compile("viewer keys may only read"))
    expect(page.locator(".controls .common")).to_have_text(
        "Controls are disabled: viewer keys may only read"
    )
    page.locator("#tab-variables").click()
    expect(page.locator("#var-set")).to_be_disabled()
    expect(page.locator(".var-form .disabled-reason")).to_contain_text("viewer keys may only read")
    # the history of what happened is still readable
    page.locator("#tab-history").click()
    expect(page.locator("#panel-history")).to_contain_text("waiting for a reply to 'ask_name'")


def test_the_pages_fit_a_phone_without_sideways_scrolling(
    served: Any, open_page: Callable[..., Page]
) -> None:
    """At 375 px the body never overflows: wide tables and the graph scroll in place, in
    the list, the Errors and Dependencies views and an execution; the header's long
    institution name (this server's tenants are ``acme-`` and a tag) wraps."""
    assert len(served.institutions["acme"]) > 10
    execution_id = start(served, "acme_operator", "conv-phone")
    page = open_page(width=375, height=812, scheme="dark")
    login(page, served.url, served.keys["acme_operator"])
    expect(page.locator(f'tr[data-id="{execution_id}"]')).to_be_visible()

    def overflow() -> int:
        return int(
            page.evaluate(
                "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
                " - document.documentElement.clientWidth"
            )
        )

    assert overflow() == 0
    for view, loaded in (("errors", ".errors-view .empty"), ("dependencies", ".deps-view .empty")):
        page.goto(f"{served.url}/debugger/{view}")
        expect(page.locator(loaded)).to_be_visible()
        assert overflow() == 0, f"the {view} view overflows sideways"
    page.goto(f"{served.url}/debugger/executions/{execution_id}")
    expect(page.locator(".flow-graph")).to_be_visible()
    for tab in ("conversation", "timeline", "variables", "logs", "history"):
        page.locator(f"#tab-{tab}").click()
        expect(page.locator(f"#panel-{tab}")).to_be_visible()
        assert overflow() == 0, f"the {tab} tab overflows sideways"
    # the panels stack: the details come below the graph, not beside it
    graph = page.locator(".graph-card").bounding_box()
    details = page.locator(".tabs-card").bounding_box()
    assert graph is not None and details is not None
    assert details["y"] >= graph["y"] + graph["height"]


def test_a_key_that_is_not_valid_is_refused_at_login(
    served: Any, open_page: Callable[..., Page]
) -> None:
    """The login form checks the key with GET /v1/me and keeps nothing on a 401."""
    page = open_page()
    page.goto(f"{served.url}/debugger/")
    page.locator("#api-key").fill("trk_nope_notakey")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".login .form-error")).to_have_text(
        "This key is not valid, or it was revoked."
    )
    assert page.evaluate("sessionStorage.length") == 0


def test_a_revoked_key_sends_the_page_back_to_the_login_form(
    served: Any, cli: Any, open_page: Callable[..., Page]
) -> None:
    """A 401 in the middle of a session (the key was revoked) logs the page out."""
    page = open_page()
    login(page, served.url, served.keys["acme_operator"])
    expect(page.locator(".live")).to_have_text("live")
    key_id = served.keys["acme_operator"].split("_")[1]
    revoked = cli("keys", "revoke", key_id, "--store", served.store)
    assert revoked.returncode == 0, revoked.stderr
    # the page calls the API again when something happens (an execution starts: the
    # counts are refetched); the server may honour a revoked key for up to 5 s, so
    # keep something happening until the page notices
    form_error = page.locator(".login .form-error")
    with served.client("admin") as client:
        for attempt in range(30):
            answer = client.post(
                "/v1/executions",
                json={
                    "flowId": "greet",
                    "institutionId": served.institutions["acme"],
                    "conversationId": f"conv-revoked-{attempt}",
                    "contactId": CONTACT,
                },
            )
            assert answer.status_code == 201, answer.text
            try:
                form_error.wait_for(timeout=1000)
                break
            except PlaywrightTimeout:
                continue
    expect(page.locator(".login .form-error")).to_have_text(
        "Your key is invalid or was revoked: log in again."
    )
    expect(page.locator("#identity")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0
