"""``/docs`` works with no network: every request for a host other than the server's
own is aborted by the test (Playwright's routing), and the API's reference still
renders its operations, under the page's real Content-Security-Policy (a refusal fails
the test, see conftest's ``open_page``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route, expect

pytestmark = pytest.mark.slow


def test_the_api_reference_renders_offline(
    shared_served: Any, open_page: Callable[..., Page]
) -> None:
    page = open_page()
    elsewhere: list[str] = []

    def offline(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:  # as if there were no network at all
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    page.route("**/*", offline)
    page.goto(f"{shared_served.url}/docs")
    listing = page.locator('.opblock-summary-path[data-path="/v1/executions"]')
    expect(listing.first).to_be_visible()
    expect(page.locator(".opblock-summary-method", has_text="POST").first).to_be_visible()
    expect(page.locator(".info .title")).to_contain_text("trilha")
    # one operation opens, with its parameters: the page works, not only shows
    page.locator('.opblock-summary-path[data-path="/v1/executions/{executionId}"]').first.click()
    expect(page.locator(".parameters-col_name", has_text="executionId").first).to_be_visible()
    assert elsewhere == [], elsewhere  # nothing was even asked of another host
