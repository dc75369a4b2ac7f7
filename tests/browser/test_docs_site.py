"""The documentation site (mkdocs.yml, docs/) as a reader meets it: built strictly, served
over HTTP, opened in Chromium: the home page with its title and the nav's sections,
search that finds a page, and a link followed into Writing flows.

``TRILHA_DOCS_SCREENSHOTS=1`` writes docs/img/docs-home.png (1280x800).
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from test_debugger import screenshot

ROOT = Path(__file__).resolve().parents[2]

#: the top of the nav, in order (issue 20's outline)
SECTIONS = [
    "Getting started",
    "Writing flows",
    "Recipes",
    "HTTP API",
    "The debugger",
    "Operating",
    "Security model",
    "Performance",
    "Reference",
]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The site built once for the module (``mkdocs build --strict``, as the test command
    does), served on 127.0.0.1; its base URL."""
    out = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=True,
        timeout=300,
    )
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(out))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_home_page_shows_the_title_the_nav_and_the_debugger(
    site: str, open_page: Callable[..., Page], tmp_path: Path
) -> None:
    page = open_page(width=1280, height=800)
    page.goto(f"{site}/")
    expect(page).to_have_title(re.compile(r"\btrilha\b"))
    expect(page.locator("article h1")).to_have_text(re.compile(r"^trilha"))
    tops = page.locator("nav.md-nav--primary > ul > li").evaluate_all(
        "items => items.map(li => li.querySelector(':scope > .md-nav__link').textContent.trim())"
    )
    assert tops == ["Home", *SECTIONS, "Development"]
    nav = page.locator("nav.md-nav--primary")
    for section in SECTIONS:
        expect(nav.get_by_text(section, exact=True).first).to_be_visible()
    image = page.locator('article img[src$="debugger-execution.png"]')
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth") > 0
    # the quick start's two commands, as the README gives them
    code = page.locator("article pre").first.inner_text()
    assert ".venv/bin/trilha demo" in code and "bash .ci/run" in code
    screenshot(page, tmp_path, "img/docs-home.png", full_page=False)


def test_search_finds_a_page(site: str, open_page: Callable[..., Page]) -> None:
    page = open_page(width=1280, height=800)
    page.goto(f"{site}/")
    query = page.locator('input[data-md-component="search-query"]')
    query.click()
    query.fill("sweeper")
    result = page.locator(".md-search-result__item a[href*='operating/sweeper']").first
    expect(result).to_be_visible()
    result.click()
    expect(page).to_have_url(re.compile(r"/operating/sweeper/"))
    expect(page.locator("article h1")).to_have_text(re.compile(r"^The sweeper"))


def test_a_link_leads_into_writing_flows(site: str, open_page: Callable[..., Page]) -> None:
    page = open_page(width=1280, height=800)
    page.goto(f"{site}/")
    page.locator("article").get_by_role("link", name="Writing flows", exact=True).click()
    expect(page).to_have_url(re.compile(r"/flows/$"))
    expect(page.locator("article h1")).to_have_text(re.compile(r"^Flows"))
    # and on, through the nav, to a page moved out of the README with its links
    page.locator("nav.md-nav--primary").get_by_role(
        "link", name="Templates and expressions", exact=True
    ).click()
    expect(page.locator("article h1")).to_have_text(re.compile(r"^Templates and expressions"))
    page.locator("article").get_by_role("link", name="Business hours").first.click()
    expect(page).to_have_url(re.compile(r"/flows/humans/#business-hours-"))
    expect(page.locator("h2#business-hours-calendars-is_open-wait_until_open")).to_be_in_viewport()
