"""A real booking service on 127.0.0.1 that counts the bookings it APPLIES per idempotency
key, for the tests of calls that change things (issue 17 §1).

Each request to ``POST /bookings`` is applied (counted) before anything is answered, then
answered as the next entry of ``script`` says (``ok`` once the script is spent):

- ``ok``: 201 with the booking;
- ``slow``: the answer comes ``slow_seconds`` later, after the caller's timeout;
- ``cut``: the connection is closed without an answer (the request was read);
- ``503`` / ``429``: refused before anything is applied (not counted).

With ``dedupe`` the service honours the key: a key it has applied is answered with the
booking it made, without applying it again. The key is read from ``key_header``, else
from the body's ``ref`` (a flow that puts ``sys.idempotencyKey`` there).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class BookingService:
    url: str = ""
    port: int = 0
    script: list[str] = field(default_factory=list)
    dedupe: bool = False
    key_header: str = "Idempotency-Key"
    slow_seconds: float = 2.5
    #: every request received: method, path, headers (lower-cased names), body
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: bookings applied, per key (``None`` for a request without one)
    applied: dict[str | None, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def total_applied(self) -> int:
        with self.lock:
            return sum(self.applied.values())

    def sent_keys(self) -> list[str | None]:
        return [r["key"] for r in self.requests]

    def wait_applied(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.total_applied() < n and time.monotonic() < deadline:
            time.sleep(0.01)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a caller that gave up (timed out) is what these tests do


def _handler(service: BookingService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            key = self.headers.get(service.key_header)
            if key is None and isinstance(body, dict) and isinstance(body.get("ref"), str):
                key = body["ref"]
            with service.lock:
                service.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                        "key": key,
                    }
                )
                step = service.script.pop(0) if service.script else "ok"
                if step in ("503", "429"):
                    self._answer(int(step), {"error": "busy, not applied"})
                    return
                seen = service.dedupe and key is not None and key in service.applied
                if not seen:
                    service.applied[key] = service.applied.get(key, 0) + 1
                booking = {"booking": f"B-{key}", "replayed": seen}
            if step == "slow":
                time.sleep(service.slow_seconds)
            if step == "cut":
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self._answer(201, booking)

        do_PUT = do_PATCH = do_DELETE = do_GET = do_POST

        def _answer(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                # one request per connection: a pooled connection would outlive the test
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the caller is gone: its answer is lost, the booking stands

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def refused_port() -> Iterator[socket.socket]:
    """A port bound but not listening, held for the block: connections to it are refused,
    and no other socket can take it meanwhile (a port picked and closed could be), until
    :func:`booking_service` starts listening on it."""
    held = socket.socket()
    try:
        held.bind(("127.0.0.1", 0))
        yield held
    finally:
        held.close()


@contextmanager
def booking_service(held: socket.socket | None = None, **kwargs: Any) -> Iterator[BookingService]:
    """The service on a port of its own, or on ``held`` (a socket from
    :func:`refused_port`), which it starts listening on: no gap in which another
    socket could take the port."""
    service = BookingService(**kwargs)
    if held is None:
        httpd = _Server(("127.0.0.1", 0), _handler(service))
    else:
        httpd = _Server(held.getsockname(), _handler(service), bind_and_activate=False)
        httpd.socket.close()
        httpd.socket = held
        httpd.server_address = held.getsockname()
        httpd.server_activate()
    service.port = httpd.server_address[1]
    service.url = f"http://127.0.0.1:{service.port}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        httpd.shutdown()
        httpd.server_close()
