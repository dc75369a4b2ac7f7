"""The execution debugger's list page with a thousand live executions.

    python bench/debugger.py [--executions 1000] [--rate 100] [--seconds 10] [--load-all]
                             [--query status=waiting_input] [--store-dir DIR]

Starts a real ``trilha serve`` (SQLite in a temporary folder) with an echo flow (a
question, then "You said: ..." and the question again, for ever), starts
``--executions`` executions through ``POST /v1/executions`` and keeps them moving:
a background loop sends ``--rate`` contact messages a second, round-robin over the
conversations (each reply is about eight trail lines, so eight SSE events). Then it
opens ``/debugger/`` in Chromium (Playwright) already logged in and prints:

- time to the first render of the list and until the per-state counts show
  (``window.trilhaDebugger``, ms since navigation start);
- events received and applied per second by the page over ``--seconds`` (applied:
  to a row on the page; ``--load-all`` presses "Load more" until all are), and
  how many animation-frame flushes applied them;
- the main thread's long tasks (``PerformanceObserver('longtask')``: > 50 ms)
  during the measurement, count and longest, and the frame rate.

It prints figures and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from _report import add_store_dir, drop_store_folder, fmt, print_table, store_folder

TRILHA = Path(sys.executable).parent / "trilha"
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
ECHO = {
    "id": "echo",
    "start": "ask",
    "nodes": [
        {"id": "ask", "type": "question", "text": "Say something", "variable": "said",
         "next": "reply"},
        {"id": "reply", "type": "message", "text": "You said: {{said}}", "next": "ask"},
    ],
}  # fmt: skip

#: installed before the page's own scripts: long tasks and frames, counted from the start
PROBE = """
window.__bench = {longtasks: [], frames: 0};
new PerformanceObserver((list) => {
  for (const entry of list.getEntries())
    window.__bench.longtasks.push([entry.startTime, entry.duration]);
}).observe({type: "longtask", buffered: true});
(function frame() { window.__bench.frames += 1; requestAnimationFrame(frame); })();
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(folder: Path, workers: int) -> tuple[subprocess.Popen[str], str, str]:
    """``trilha serve`` on a free port, the echo flow published; (process, url, key)."""
    port = free_port()
    store = f"sqlite:///{folder / 'bench-debugger.db'}"
    flows = folder / "flows"
    flows.mkdir(exist_ok=True)
    (flows / "echo.json").write_text(json.dumps(ECHO), encoding="utf-8")
    (folder / "trilha.toml").write_text(
        '[channel]\nkind = "memory"\n'
        "[api]\nrate_limit_per_second = 100000\nrate_limit_burst = 100000\n"
        '[logging]\nlevel = "warn"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRILHA_")}
    made = subprocess.run(
        [str(TRILHA), "keys", "create", "--institution", "bench", "--role", "operator",
         "--store", store],
        capture_output=True, text=True, check=True, env=env, cwd=folder,
    )  # fmt: skip
    key = made.stdout.strip().splitlines()[-1]
    server = subprocess.Popen(
        [str(TRILHA), "serve", "--port", str(port), "--store", store, "--flows", str(flows),
         "--workers", str(workers)],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return server, url, key
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise SystemExit(f"trilha serve did not start: {server.communicate()[1][-2000:]}")
        time.sleep(0.05)


async def start_executions(url: str, key: str, count: int) -> tuple[float, list[str]]:
    """Start ``count`` echo executions, 50 at a time; (seconds taken, failures)."""
    failures: list[str] = []
    limit = asyncio.Semaphore(50)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:

        async def one(i: int) -> None:
            async with limit:
                answer = await client.post(
                    "/v1/executions",
                    json={
                        "flowId": "echo",
                        "conversationId": f"c{i}",
                        "contactId": f"55119{i:08d}",
                    },
                )
                if answer.status_code != 201:
                    failures.append(f"start {answer.status_code}: {answer.text[:200]}")

        begin = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return time.perf_counter() - begin, failures


class Mover:
    """Sends ``rate`` contact messages a second in a background thread until stopped."""

    def __init__(self, url: str, key: str, conversations: int, rate: float) -> None:
        self.url, self.key, self.conversations, self.rate = url, key, conversations, rate
        self.sent = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    async def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=30, limits=limits
        ) as client:
            pending: set[asyncio.Task[None]] = set()
            n = 0
            begin = time.perf_counter()
            while not self._stop.is_set():
                due = begin + n / self.rate
                wait = due - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                i = n % self.conversations
                n += 1
                task = asyncio.create_task(self._send(client, i, n))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.gather(*pending)

    async def _send(self, client: httpx.AsyncClient, i: int, n: int) -> None:
        try:
            answer = await client.post(
                f"/v1/conversations/c{i}/messages",
                json={"messageId": f"bench-{n}", "contactId": f"55119{i:08d}", "text": f"hi {n}"},
            )
        except httpx.HTTPError as exc:
            self.failures.append(f"message: {exc!r}")
            return
        if answer.status_code == 202:
            self.sent += 1
        else:
            self.failures.append(f"message {answer.status_code}: {answer.text[:200]}")


def poll(page: Page, expression: str, timeout: float = 60.0) -> None:
    """Wait until ``expression`` is true in the page. (wait_for_function evaluates a
    string inside the page, which the debugger's CSP rightly refuses.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true after {timeout}s: {expression}")
        time.sleep(0.01)


def measure_page(
    url: str, key: str, seconds: float, load_all: bool, query: str = ""
) -> dict[str, Any]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.add_init_script(PROBE)
            page.add_init_script(
                f"sessionStorage.setItem('trilha.debugger.key', {json.dumps(key)})"
            )
            begin = time.perf_counter()
            page.goto(f"{url}/debugger/" + (f"?{query}" if query else ""))
            poll(page, "window.trilhaDebugger && window.trilhaDebugger.firstRenderMs !== null")
            seen_ms = (time.perf_counter() - begin) * 1000
            poll(page, "window.trilhaDebugger.countsShownMs !== null")
            more = page.get_by_role("button", name="Load more")
            while load_all and more.is_visible():
                rows = page.evaluate("window.trilhaDebugger.rows")
                more.click()
                poll(page, f"window.trilhaDebugger.rows > {rows}")
            snapshot = "() => ({...window.trilhaDebugger, frames: window.__bench.frames, now: performance.now(), longtasks: window.__bench.longtasks.length})"  # noqa: E501
            before = page.evaluate(snapshot)
            page.wait_for_timeout(seconds * 1000)
            after = page.evaluate(snapshot)
            tasks = page.evaluate("window.__bench.longtasks")
            window = [d for start, d in tasks if start >= before["now"]]
            load = [d for start, d in tasks if start < before["now"]]
            probe_begin = time.perf_counter()
            page.evaluate("1")
            round_trip = (time.perf_counter() - probe_begin) * 1000
        finally:
            browser.close()
    elapsed = (after["now"] - before["now"]) / 1000
    return {
        "first_render_ms": before["firstRenderMs"],
        "counts_ms": before["countsShownMs"],
        "seen_ms": seen_ms,
        "rows": after["rows"],
        "received_per_s": (after["eventsReceived"] - before["eventsReceived"]) / elapsed,
        "applied_per_s": (after["eventsApplied"] - before["eventsApplied"]) / elapsed,
        "renders_per_s": (after["renders"] - before["renders"]) / elapsed,
        "fps": (after["frames"] - before["frames"]) / elapsed,
        "long_tasks": len(window),
        "long_max": max(window, default=0.0),
        "load_long_tasks": len(load),
        "load_long_max": max(load, default=0.0),
        "round_trip_ms": round_trip,
        "elapsed": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="contact messages a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    parser.add_argument("--workers", type=int, default=2, help="worker loops in trilha serve")
    parser.add_argument(
        "--load-all", action="store_true", help="press 'Load more' until every row is on the page"
    )
    parser.add_argument(
        "--query",
        default="",
        help="the list's filters, as in its address (e.g. status=waiting_input or withErrors=true)",
    )
    add_store_dir(parser)
    args = parser.parse_args()
    folder = store_folder(args.store_dir)
    server = None
    try:
        server, url, key = start_server(folder, args.workers)
        took, failures = asyncio.run(start_executions(url, key, args.executions))
        print(f"{args.executions} executions started in {took:.1f}s ({len(failures)} failed)")
        mover = Mover(url, key, args.executions, args.rate)
        mover.start()
        try:
            time.sleep(1)  # the stream is busy before the page opens
            page = measure_page(url, key, args.seconds, args.load_all, args.query)
        finally:
            mover.stop()
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.communicate(timeout=60)
        drop_store_folder(folder, args.store_dir)
    print_table(
        f"debugger list: {args.executions} live executions, {args.rate:g} contact messages/s"
        + (f", ?{args.query}" if args.query else ""),
        [
            ("first render of the list (since navigation)", fmt(page["first_render_ms"], "ms")),
            ("counts shown (since navigation)", fmt(page["counts_ms"], "ms")),
            ("first render, as seen by the test driver", fmt(page["seen_ms"], "ms")),
            ("rows in the table at the end", fmt(page["rows"])),
            (f"events received by the page /s ({args.seconds:g}s)", fmt(page["received_per_s"])),
            ("events applied to rows /s", fmt(page["applied_per_s"])),
            ("table flushes (animation frames) /s", fmt(page["renders_per_s"], digits=1)),
            ("frames painted /s", fmt(page["fps"], digits=1)),
            ("long tasks (>50 ms) while live: count", fmt(page["long_tasks"])),
            ("long tasks while live: longest", fmt(page["long_max"], "ms")),
            ("long tasks while loading: count", fmt(page["load_long_tasks"])),
            ("long tasks while loading: longest", fmt(page["load_long_max"], "ms")),
            ("page.evaluate round trip after the window", fmt(page["round_trip_ms"], "ms", 1)),
            ("contact messages sent (202)", fmt(mover.sent)),
            ("failed requests", fmt(len(failures) + len(mover.failures))),
        ],
    )
    for failure in (failures + mover.failures)[:5]:
        print("  ", failure)


if __name__ == "__main__":
    main()
