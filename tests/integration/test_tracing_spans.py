"""OpenTelemetry spans of turns, nodes and http calls, read from the SDK's in-memory
exporter; the traceparent a real HTTP service on 127.0.0.1 received; log lines'
trace ids; a collector that is away; starting without the ``otel`` extra."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from trilha.config import Config, DependencyConfig, TracingConfig
from trilha.core.states import ExecutionStatus
from trilha.errors import ConfigError
from trilha.observability import tracing

Harness = Any

#: what the contact is and says: none of it may reach a span
NAME = "Maria Aparecida"
PHONE = "+55 11 98765-4321"
CPF = "52998224725"
SECRET = "s3cr3t-t0ken-value"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every span kept in memory as it ends."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.shutdown()
        provider.shutdown()


def lookup_flow() -> dict[str, Any]:
    """Greet, ask the CPF, look the customer up (the CPF in the path, a token in the
    query), then a call that fails (500) and takes its fallback to the end."""
    return {
        "id": "lookup",
        "start": "hello",
        "nodes": [
            {"id": "hello", "type": "message", "text": "Oi {{contact.name}}!", "next": "ask"},
            {"id": "ask", "type": "question", "text": "CPF?", "variable": "cpf", "next": "find"},
            {
                "id": "find",
                "type": "http",
                "dependency": "crm",
                "url": "/customers/{{cpf}}?token=" + SECRET,
                "saveAs": "customer",
                "next": "broken",
            },
            {
                "id": "broken",
                "type": "http",
                "dependency": "crm",
                "url": "/broken",
                "retry": {"maxAttempts": 1},
                "fallback": {"next": "done"},
                "next": "done",
            },
            {"id": "done", "type": "end", "text": "Tchau"},
        ],
    }


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def text_of(span: ReadableSpan) -> str:
    """Everything a span carries that a person could read."""
    parts = [span.name, json.dumps(dict(span.attributes or {}), default=str)]
    parts.append(str(span.status.description))
    parts += [json.dumps(dict(e.attributes or {}), default=str) for e in span.events]
    return " ".join(parts)


async def run_lookup(make_harness: Any, url: str) -> tuple[Harness, str]:
    h = make_harness(Config(dependencies={"crm": DependencyConfig(base_url=url)}))
    await h.publish(lookup_flow())
    ex = await h.start(
        "lookup", contact_id=PHONE, variables={"contact": {"name": NAME, "phone": PHONE}}
    )
    await h.settle()
    assert (await h.get(ex.id)).status is ExecutionStatus.WAITING_INPUT
    ended = await h.reply(ex.id, CPF)
    assert ended.status is ExecutionStatus.COMPLETED
    return h, ex.id


async def test_turns_nodes_and_calls_are_spans_and_the_service_joins_the_trace(
    make_harness: Any, http_server: Any, spans: InMemorySpanExporter
) -> None:
    """Two turns, a span per node under its turn, an http span under its node whose
    traceparent the service received, the failed call's node in ERROR; no personal data."""
    http_server.route("GET", f"/customers/{CPF}", body={"vip": False})
    http_server.route("GET", "/broken", status=500, body={"error": "down"})
    _, execution_id = await run_lookup(make_harness, http_server.url)
    finished = spans.get_finished_spans()

    turns = by_name(finished, "trilha.turn")
    assert len(turns) == 2
    for turn in turns:
        assert turn.parent is None  # a turn is a trace of its own
        assert turn.attributes is not None
        assert turn.attributes["trilha.execution"] == execution_id
        assert turn.attributes["trilha.flow"] == "lookup"
        assert turn.attributes["trilha.flow.version"] == 1
        assert turn.attributes["trilha.institution"] == "inst-1"
    assert [t.attributes["trilha.outcome"] for t in turns if t.attributes] == [
        "waiting_input",
        "completed",
    ]
    nodes = [s for s in finished if s.name.startswith("trilha.node ")]
    assert [(s.name, s.attributes["trilha.node.id"]) for s in nodes if s.attributes] == [
        ("trilha.node message", "hello"),
        ("trilha.node question", "ask"),
        ("trilha.node question", "ask"),
        ("trilha.node http", "find"),
        ("trilha.node http", "broken"),
        ("trilha.node end", "done"),
    ]
    first, second = turns
    for node in nodes:
        turn = first if node.start_time < second.start_time else second
        assert node.parent is not None and node.parent.span_id == turn.context.span_id
        assert node.context.trace_id == turn.context.trace_id
        assert node.attributes is not None
        assert node.attributes["trilha.node.type"] == node.name.removeprefix("trilha.node ")
        assert node.attributes["trilha.flow"] == "lookup"
        assert node.attributes["trilha.execution"] == execution_id
    outcomes = {s.attributes["trilha.node.id"]: s.attributes["trilha.outcome"] for s in nodes[3:]}
    assert outcomes == {"find": "ok", "broken": "error", "done": "ok"}
    broken = nodes[4]
    assert broken.status.status_code is StatusCode.ERROR
    assert broken.attributes is not None and broken.attributes["error.type"] == "server"

    calls = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert [s.name for s in calls] == ["GET", "GET"]
    for call, node in zip(calls, nodes[3:5], strict=True):
        assert call.parent is not None and call.parent.span_id == node.context.span_id
        assert call.attributes is not None
        assert call.attributes["http.request.method"] == "GET"
        assert call.attributes["server.address"] == "127.0.0.1"
        assert call.attributes["trilha.dependency"] == "crm"
    assert [c.attributes["http.response.status_code"] for c in calls if c.attributes] == [200, 500]
    assert calls[1].status.status_code is StatusCode.ERROR
    found = calls[0].attributes or {}
    assert str(found["url.full"]).startswith(f"{http_server.url}/customers/")
    assert "token=[masked]" in str(found["url.full"])

    # the service saw each call's own span as its parent
    seen = [r["headers"].get("traceparent") for r in http_server.requests]
    expected = [
        f"00-{c.context.trace_id:032x}-{c.context.span_id:016x}-{c.context.trace_flags:02x}"
        for c in calls
    ]
    assert seen == expected

    for span in finished:
        said = text_of(span)
        for private in (NAME, "98765", CPF, SECRET, "Oi ", "Tchau"):
            assert private not in said, (span.name, private)


async def test_log_lines_carry_the_current_span(
    make_harness: Any, http_server: Any, spans: InMemorySpanExporter, process_log: Any
) -> None:
    """Lines printed inside a turn carry its trace and span ids; one outside carries none."""
    http_server.route("GET", f"/customers/{CPF}", body={"vip": False})
    http_server.route("GET", "/broken", status=500)
    await run_lookup(make_harness, http_server.url)
    turns = {
        (f"{t.context.trace_id:032x}", f"{t.context.span_id:016x}")
        for t in by_name(spans.get_finished_spans(), "trilha.turn")
    }
    lines = process_log.lines()
    inside = [line for line in lines if line["message"] == "node.left"]
    assert inside
    assert {(line["trace_id"], line["span_id"]) for line in inside} <= turns
    started = next(line for line in lines if line["message"] == "execution.started")
    assert "trace_id" not in started  # the start ran under no span


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_collector_that_is_away_fails_no_turn(make_harness: Any, http_server: Any) -> None:
    """Exporting to a closed port: the conversation runs to its end as without tracing,
    and stopping returns once the export timeout is spent."""
    http_server.route("GET", f"/customers/{CPF}", body={"vip": False})
    http_server.route("GET", "/broken", status=500)
    endpoint = f"http://127.0.0.1:{closed_port()}/v1/traces"
    assert tracing.start(TracingConfig(endpoint=endpoint, timeout_seconds=0.5))
    try:
        assert tracing.active
        h, execution_id = await run_lookup(make_harness, http_server.url)
        assert (await h.get(execution_id)).outcome is not None
    finally:
        tracing.shutdown()
    assert not tracing.active


def test_no_endpoint_starts_nothing() -> None:
    """Without an endpoint nothing is imported or made: the cheap check stays false."""
    assert tracing.start(TracingConfig()) is False
    assert not tracing.active
    assert tracing.current_ids() is None


def test_an_endpoint_without_the_extra_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The error names the setting and how to install the extra."""
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError) as caught:
        tracing.start(TracingConfig(endpoint="http://127.0.0.1:4318/v1/traces"))
    assert "tracing.endpoint" in str(caught.value)
    assert "pip install 'trilha[otel]'" in str(caught.value)
    assert not tracing.active


def test_trilha_runs_without_opentelemetry() -> None:
    """Without the extra's packages (the SDK and the exporter; FastAPI brings the API),
    the engine, the API and the CLI load and a flow runs to its end: nothing imports
    them unless tracing starts."""
    script = """
import asyncio, sys, tempfile
from pathlib import Path

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter")):
            raise ImportError(name)

sys.meta_path.insert(0, Block())
import trilha.api.app, trilha.cli
from trilha import Engine, Processors, load_flow
from trilha.store.sqlite import SQLiteStore

async def main():
    store = SQLiteStore(Path(tempfile.mkdtemp()) / "t.db")
    await store.open()
    engine = Engine(store, processors=Processors.from_entry_points())
    flow = {"id": "f", "start": "a", "nodes": [
        {"id": "a", "type": "message", "text": "hi", "next": "b"}, {"id": "b", "type": "end"}]}
    await engine.publish(load_flow(flow, engine.processors.node_types))
    ex = await engine.start("f", institution_id="i", conversation_id="c", contact_id="k")
    await engine.run_once()
    print((await store.get_execution(ex.id)).status.value)
    await store.close()

asyncio.run(main())
extra = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.proto")
assert not any(m.startswith(extra) for m in sys.modules), "imported"
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "completed"


def test_an_api_request_joins_its_callers_trace_with_its_path_masked(
    spans: InMemorySpanExporter,
) -> None:
    """A SERVER span under the caller's span, named by its route; a phone number in the
    path is masked; a 4xx is the caller's error, a 5xx the server's."""
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for status in (404, 503):
        traced = tracing.begin_server(
            "DELETE", "/v1/contacts/+5511987654321", "http", {"traceparent": caller}
        )
        tracing.end_server(traced, "DELETE", "/v1/contacts/{contactId}", status)
    found, failed = spans.get_finished_spans()
    for span in (found, failed):
        assert span.kind is SpanKind.SERVER
        assert span.name == "DELETE /v1/contacts/{contactId}"
        assert f"{span.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert span.parent is not None and f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
        assert span.attributes is not None
        assert "98765" not in str(span.attributes["url.path"])
        assert span.attributes["http.route"] == "/v1/contacts/{contactId}"
    assert found.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR
