"""The staged incident of issue 22, shared by the tests that replay it: a CRM stand-in
that fails ``500`` for one class of inputs (customer codes starting with 9) and answers
the rest, the flow that asks for the code and calls it, and the ``trilha.toml`` that
declares it with the product defaults.

A partial, input-dependent failure: the CRM is up, only some requests fail. The flow
must greet every good code by name and send every bad one down the node's fallback,
without a person."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: codes starting with this fail at the CRM
BAD_PREFIX = "9"
#: what the fallback tells a contact whose code the CRM could not look up
FALLBACK_TEXT = "We could not find your code right now; please try again later."


def customer_name(code: str) -> str:
    """The name the stand-in answers for a good ``code``."""
    return f"Customer {code}"


def greeting(code: str) -> str:
    """The success path's last message for a good ``code``."""
    return f"Hello, {customer_name(code)}! Your registration is up to date."


INCIDENT_FLOW: dict[str, Any] = {
    "id": "incident",
    "version": 1,
    "name": "Customer lookup",
    "description": "Asks the customer code and looks it up in the CRM (issue 22's incident).",
    "start": "ask_code",
    "nodes": [
        {
            "id": "ask_code",
            "type": "question",
            "text": "What is your customer code?",
            "variable": "code",
            "validate": {"kind": "regex", "pattern": "^[0-9]{5}$"},
            "invalidText": "The code has five digits.",
            "next": "lookup",
        },
        {
            "id": "lookup",
            "type": "http",
            "label": "look the customer up in the CRM",
            "dependency": "crm",
            "method": "GET",
            "url": "/customers/{{code}}",
            "saveAs": "customer",
            "fallback": {"next": "not_found"},
            "next": "greet",
        },
        {
            "id": "greet",
            "type": "end",
            "text": "Hello, {{customer.name}}! Your registration is up to date.",
        },
        {"id": "not_found", "type": "message", "text": FALLBACK_TEXT, "next": "bye"},
        {"id": "bye", "type": "end", "text": "Goodbye."},
    ],
}


def incident_toml(crm_url: str) -> str:
    """A ``trilha.toml`` declaring ``crm`` at ``crm_url`` with the product defaults (its
    breaker and retry unset) and the memory channel."""
    return (
        f'[dependencies.crm]\nbase_url = "{crm_url}"\n'
        'institutions = ["*"]\n\n[channel]\nkind = "memory"\n'
    )


@dataclass
class CrmStandIn:
    """The running stand-in: its base URL and what reached it."""

    url: str
    #: answers given: "ok" (200) and "failed" (500)
    answers: Counter[str] = field(default_factory=Counter)
    #: the customer codes asked for, in order
    codes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that hangs up mid-answer is no news here


@contextmanager
def crm_stand_in(host: str = "127.0.0.1") -> Iterator[CrmStandIn]:
    """A real CRM stand-in on ``host`` (a free port) until the block ends:
    ``GET /customers/{code}`` answers 500 when ``code`` starts with :data:`BAD_PREFIX`,
    else 200 ``{"name": ...}``; anything else is 404."""
    state = CrmStandIn("")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            prefix = "/customers/"
            if not path.startswith(prefix):
                self._send(404, {"error": "not found"})
                return
            code = path[len(prefix) :]
            failed = code.startswith(BAD_PREFIX)
            with state.lock:
                state.codes.append(code)
                state.answers["failed" if failed else "ok"] += 1
            if failed:
                self._send(500, {"error": "internal error"})
            else:
                self._send(200, {"code": code, "name": customer_name(code)})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = _QuietServer((host, 0), Handler)
    state.url = f"http://{host}:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
