"""A real ``trilha serve`` exporting its spans over OTLP/HTTP to a receiver on 127.0.0.1:
an API request with a ``traceparent`` joins the caller's trace, the turn it started
links to it, and the process log's lines carry the trace id."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from conftest import Cli, start_api

#: the caller's trace and span, as a W3C traceparent carries them
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"

FLOW = {
    "id": "greet",
    "start": "hello",
    "nodes": [
        {"id": "hello", "type": "message", "text": "Oi!", "next": "ask"},
        {"id": "ask", "type": "question", "text": "Seu nome?", "variable": "name", "next": "done"},
        {"id": "done", "type": "end"},
    ],
}


@dataclass
class Receiver:
    """An OTLP/HTTP traces receiver: every span of every export, decoded, with the
    ``service.name`` of its resource."""

    url: str = ""
    spans: list[tuple[str, Span]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def named(self, name: str) -> list[Span]:
        with self.lock:
            return [s for _, s in self.spans if s.name == name]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with state.lock:
                for resource in request.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in resource.resource.attributes
                        if a.key == "service.name"
                    )
                    for scope in resource.scope_spans:
                        state.spans += [(service, s) for s in scope.spans]
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200 if self.path == "/v1/traces" else 404)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def until(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def attributes(span: Span) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        values[a.key] = getattr(a.value, kind) if kind else None
    return values


def test_a_served_request_joins_the_callers_trace_and_its_turn_links_to_it(
    cli: Cli, tmp_path: Path, receiver: Receiver
) -> None:
    """POST /v1/executions with a traceparent: its SERVER span is in the caller's trace
    under the caller's span; the turn it started is a trace of its own linked to it, with
    its nodes under it; the lines printed in the request carry the trace id; SIGTERM
    flushes every span to the collector."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "greet.json").write_text(json.dumps(FLOW), encoding="utf-8")
    config = (
        '[channel]\nkind = "memory"\n[logging]\nformat = "json"\n'
        f'[tracing]\nendpoint = "{receiver.url}"\nservice_name = "trilha-test"\n'
    )
    api = start_api(cli, tmp_path, "--flows", str(flows), config=config)
    with api.client() as acme:
        started = acme.post(
            "/v1/executions",
            json={"flowId": "greet", "conversationId": "conv-t", "contactId": "contact-t"},
            headers={"traceparent": TRACEPARENT},
        )
        assert started.status_code == 201, started.text
        execution_id = started.json()["executionId"]
        until(
            lambda: acme.get(f"/v1/executions/{execution_id}").json()["status"] == "waiting_input",
            "the question",
        )
    code, output = api.stop()
    assert code == 0, output

    with receiver.lock:
        assert {service for service, _ in receiver.spans} == {"trilha-test"}
    server = next(s for s in receiver.named("POST /v1/executions"))
    assert server.trace_id.hex() == TRACE_ID
    assert server.parent_span_id.hex() == PARENT_ID
    assert server.kind == Span.SpanKind.SPAN_KIND_SERVER
    found = attributes(server)
    assert found["http.route"] == "/v1/executions"
    assert found["http.request.method"] == "POST"
    assert found["http.response.status_code"] == 201

    # a route with an id is named by its template, never the id
    polled = receiver.named("GET /v1/executions/{executionId}")
    assert polled and execution_id not in str(attributes(polled[0])["http.route"])

    (turn,) = receiver.named("trilha.turn")
    assert turn.trace_id.hex() != TRACE_ID  # a turn is a trace of its own...
    assert [link.trace_id.hex() for link in turn.links] == [TRACE_ID]  # ...linked to its start
    assert [link.span_id for link in turn.links] == [server.span_id]
    assert attributes(turn)["trilha.execution"] == execution_id
    assert attributes(turn)["trilha.outcome"] == "waiting_input"
    nodes = receiver.named("trilha.node message") + receiver.named("trilha.node question")
    assert len(nodes) == 2
    assert all(n.parent_span_id == turn.span_id for n in nodes)

    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    in_request = [line for line in lines if line.get("trace_id") == TRACE_ID]
    assert "execution.started" in [line["message"] for line in in_request]
    assert {line["span_id"] for line in in_request} == {server.span_id.hex()}
    in_turn = [line for line in lines if line.get("trace_id") == turn.trace_id.hex()]
    assert "execution.state_changed" in [line["message"] for line in in_turn]


#: a ``sitecustomize`` that makes the ``otel`` extra's packages not importable, as in an
#: installation without it (FastAPI brings the OpenTelemetry API, not the SDK)
WITHOUT_EXTRA = """
import sys

class _Without:
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter")):
            raise ModuleNotFoundError(name)

sys.meta_path.insert(0, _Without())
"""


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_endpoint_without_the_extra_stops_the_start(
    cli: Cli, tmp_path: Path, command: str
) -> None:
    """``[tracing] endpoint`` set and the SDK not installed: the process does not start,
    and says which setting needs which extra."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(WITHOUT_EXTRA, encoding="utf-8")
    (tmp_path / "trilha.toml").write_text(
        '[tracing]\nendpoint = "http://127.0.0.1:4318/v1/traces"\n', encoding="utf-8"
    )
    args = ["serve", "--port", "0"] if command == "serve" else ["worker", "--until-idle"]
    done = cli(*args, "--store", f"sqlite:///{tmp_path / 't.db'}", env={"PYTHONPATH": str(site)})
    assert done.returncode == 1, done.stderr
    assert "tracing.endpoint" in done.stderr
    assert "pip install 'trilha[otel]'" in done.stderr
