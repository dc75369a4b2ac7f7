"""Shared fixtures: a real SQLite store in a temporary folder, a fake clock, an
engine wired to an in-memory channel, and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from pgcluster import PgCluster  # tests/ is on sys.path (rootdir mode)
from trilha.channels.memory import MemoryChannel
from trilha.config import Config, LoggingConfig
from trilha.core.execution import Execution
from trilha.core.flow import Flow, load_flow
from trilha.engine.clock import FakeClock
from trilha.engine.dispatcher import Dispatcher
from trilha.engine.engine import Engine
from trilha.engine.worker import Worker
from trilha.observability.logging import configure as configure_logging
from trilha.observability.logging import reset as reset_logging
from trilha.processors.registry import Processors
from trilha.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Hypothesis in CI (.ci/run sets HYPOTHESIS_PROFILE=ci; so does CI=...): the examples are
# derived from each test's name, not drawn at random, so a failure on one machine is the
# same failure on any other; it is printed, with the blob that replays it
# (@reproduce_failure); and a loaded machine's slow example is no failure (deadline).
settings.register_profile("ci", derandomize=True, print_blob=True, deadline=None)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
elif os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "trilha.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@dataclass
class Harness:
    """An engine over a real store, a fake clock and a memory channel, driven by hand."""

    store: SQLiteStore
    engine: Engine
    worker: Worker
    channel: MemoryChannel
    clock: FakeClock

    async def publish(self, flow: dict[str, Any] | Flow) -> Flow:
        model = (
            flow if isinstance(flow, Flow) else load_flow(flow, self.engine.processors.node_types)
        )
        await self.engine.publish(model)
        return model

    async def start(self, flow_id: str, conversation: str = "conv-1", **kwargs: Any) -> Execution:
        kwargs.setdefault("institution_id", "inst-1")
        kwargs.setdefault("contact_id", "contact-1")
        return await self.engine.start(flow_id, conversation_id=conversation, **kwargs)

    async def settle(self, execution_id: str | None = None) -> None:
        await self.worker.run_until_idle(execution_id)

    async def reply(self, execution_id: str, text: str) -> Execution:
        await self.engine.send(execution_id, text)
        await self.settle(execution_id)
        return await self.store.get_execution(execution_id)

    async def get(self, execution_id: str) -> Execution:
        return await self.store.get_execution(execution_id)


@pytest.fixture
def make_harness(sqlite_store: SQLiteStore, clock: FakeClock) -> Callable[..., Harness]:
    def make(config: Config | None = None, worker_id: str = "w1") -> Harness:
        channel = MemoryChannel()
        engine = Engine(
            sqlite_store,
            processors=Processors.from_entry_points(),
            config=config or Config(),
            clock=clock,
            worker_id=worker_id,
        )
        dispatcher = Dispatcher(sqlite_store, channel, clock=clock)
        return Harness(sqlite_store, engine, Worker(engine, dispatcher), channel, clock)

    return make


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


# --------------------------------------------------------------------------- HTTP server


@dataclass
class Route:
    status: int = 200
    body: Any = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LocalServer:
    """A real HTTP server on 127.0.0.1; tests set routes and read the requests made."""

    url: str
    routes: dict[tuple[str, str], Route] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    #: answers given before the route's own, in order (e.g. fail twice, then succeed)
    scripts: dict[tuple[str, str], list[Route]] = field(default_factory=dict)

    def route(self, method: str, path: str, **kwargs: Any) -> None:
        self.routes[(method.upper(), path)] = Route(**kwargs)

    def fail_first(self, method: str, path: str, times: int, **kwargs: Any) -> None:
        """The next ``times`` requests get this answer (default 503), then the route's own."""
        kwargs.setdefault("status", 503)
        self.scripts.setdefault((method.upper(), path), []).extend(
            Route(**kwargs) for _ in range(times)
        )

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r["method"] == method and r["path"] == path)


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    server_state = LocalServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            server_state.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": json.loads(raw) if raw else None,
                    "raw": raw,
                }
            )
            key = (self.command, self.path.split("?")[0])
            script = server_state.scripts.get(key)
            route = script.pop(0) if script else server_state.routes.get(key)
            if route is None:
                route = Route(status=404, body={"error": "no route"})
            if route.delay:
                time.sleep(route.delay)
            payload = json.dumps(route.body).encode() if route.body is not None else b""
            try:
                self.send_response(route.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for k, v in route.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()


# --------------------------------------------------------------------------- process log


@dataclass
class ProcessLog:
    """The process log pipeline configured onto a string buffer, read back as JSON."""

    stream: io.StringIO

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line.strip()]

    def messages(self) -> list[str]:
        return [line["message"] for line in self.lines()]


@pytest.fixture
def process_log() -> Iterator[ProcessLog]:
    """JSON process lines at DEBUG into a buffer; the pipeline is reset afterwards.
    Reconfigure with ``configure(LoggingConfig(...), stream=process_log.stream)``."""
    stream = io.StringIO()
    configure_logging(LoggingConfig(level="DEBUG", format="json"), stream=stream)
    try:
        yield ProcessLog(stream)
    finally:
        reset_logging()


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL server (fsync off, in /dev/shm when it has room) for the session.

    Started only when a test first asks for it, so a run without PostgreSQL
    tests never needs the server binaries; stopped and removed at session end.
    Tests make their own databases on it (``create_database``), never use
    ``postgres`` for data.
    """
    with PgCluster() as cluster:
        yield cluster
