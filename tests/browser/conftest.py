"""Browser fixtures: a real ``trilha serve`` (the acceptance suite's, reused as is) with
a small flow published, and Debian's Chromium driven by Playwright.

The acceptance ``conftest.py`` is loaded under its own module name rather than
imported as ``conftest`` (several folders have one; pytest swaps them in and out of
``sys.modules``), and its ``cli`` fixture is re-exported so ``start_api`` can use it.
Every page records uncaught errors and Content-Security-Policy refusals; a test
whose page hit one fails at teardown, so an inline style or a broken module cannot
hide behind a passing assertion.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]


def _load_acceptance() -> Any:
    name = "trilha_acceptance_fixtures"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "tests" / "acceptance" / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


_acceptance = _load_acceptance()
Api = _acceptance.Api
Cli = _acceptance.Cli
start_api = _acceptance.start_api
module_api = _acceptance.module_api
cli = _acceptance.cli  # the fixture, re-exported for this folder

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
#: how long an expect() waits for the page to catch up (live updates, refetches)
WAIT_MS = 10_000

#: hello -> ask_name (waits) -> greet -> ask_topic (waits) -> bye -> done
GREET_FLOW = {
    "id": "greet",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "Hello!", "next": "ask_name"},
        {
            "id": "ask_name",
            "type": "question",
            "text": "What is your name?",
            "variable": "name",
            "next": "greet",
        },
        {
            "id": "greet",
            "type": "message",
            "text": "Nice to meet you, {{name}}.",
            "next": "ask_topic",
        },
        {
            "id": "ask_topic",
            "type": "question",
            "text": "What can I help with?",
            "variable": "topic",
            "next": "bye",
        },
        {"id": "bye", "type": "message", "text": "Bye, {{name}}!", "next": "done"},
        {"id": "done", "type": "end"},
    ],
}


@pytest.fixture
def served(cli: Any, tmp_path: Path) -> Any:
    """``trilha serve`` with the greet flow and keys acme_operator, acme_viewer,
    beta_operator and admin."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "greet.json").write_text(json.dumps(GREET_FLOW), encoding="utf-8")
    return start_api(cli, tmp_path, "--flows", str(flows))


@contextmanager
def module_flow_api(
    tmp_path_factory: pytest.TempPathFactory,
    flow: dict[str, Any],
    *args: str,
    config: str = '[channel]\nkind = "memory"\n',
) -> Iterator[Any]:
    """``serve_flow``'s server once for a whole module (a module-scoped fixture's); each
    test takes keys of institutions of its own from it with ``tenant()``."""
    flows = tmp_path_factory.mktemp("flows")
    (flows / f"{flow['id']}.json").write_text(json.dumps(flow), encoding="utf-8")
    with module_api(tmp_path_factory, "served", "--flows", str(flows), *args, config=config) as api:
        yield api


@pytest.fixture(scope="module")
def shared_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``served``'s server (the greet flow) once for a whole module: a module whose tests
    only need that server takes ``shared_served.tenant()`` as its ``served``, keys of
    institutions no other test uses (``Api.tenant``)."""
    with module_flow_api(tmp_path_factory, GREET_FLOW) as api:
        yield api


@pytest.fixture
def serve_flow(cli: Any, tmp_path: Path) -> Callable[..., Any]:
    """serve_flow(flow, *args, config=...) -> ``trilha serve`` with that one flow
    published (``args``: more options, e.g. ``--workers 0``) and the same keys as
    ``served``."""

    def start(
        flow: dict[str, Any], *args: str, config: str = '[channel]\nkind = "memory"\n'
    ) -> Any:
        flows = tmp_path / "flows"
        flows.mkdir(exist_ok=True)
        (flows / f"{flow['id']}.json").write_text(json.dumps(flow), encoding="utf-8")
        return start_api(cli, tmp_path, "--flows", str(flows), *args, config=config)

    return start


#: the one customer id the CRM stand-in knows
GOOD_ID = "C-100"


class Crm(BaseHTTPRequestHandler):
    """The institution's CRM, standing in on 127.0.0.1: ``GET /customers/C-100`` is a
    customer; any other id is a 503 (it cannot find the shard for it), which trilha
    retries."""

    def do_GET(self) -> None:
        if self.path == f"/customers/{GOOD_ID}":
            body, status = json.dumps({"name": "Ana", "plan": "gold"}).encode(), 200
        else:
            body, status = b'{"error": "no shard for this customer"}', 503
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


@pytest.fixture
def crm() -> Iterator[str]:
    """The CRM stand-in's base URL (declare it as a dependency to call it)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Crm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per module, not per session: Playwright's sync API runs an event
    loop on the main thread while it is open, and every asyncio test collected after
    these would find that loop running ("Runner.run() cannot be called from a running
    event loop"); a module-scoped fixture is closed before the next module starts."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class PageProblems:
    """What went wrong inside the page: uncaught errors and CSP refusals."""

    errors: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            self.errors.append(f"CSP: {text}")

    def page_error(self, error: Any) -> None:
        self.errors.append(f"uncaught: {error}")


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """open_page(width=1280, height=900, scheme="light") -> a fresh page (own storage)."""
    contexts = []
    problems = PageProblems()

    def make(width: int = 1280, height: int = 900, scheme: str = "light") -> Page:
        context = browser.new_context(
            viewport={"width": width, "height": height}, color_scheme=scheme
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("console", problems.console)
        page.on("pageerror", problems.page_error)
        return page

    expect.set_options(timeout=WAIT_MS)
    yield make
    for context in contexts:
        context.close()
    assert not problems.errors, "\n".join(problems.errors)
