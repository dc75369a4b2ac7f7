"""What every stand-in shares: a JSON service on a threaded HTTP server, a health route,
a switch that takes it down and up, and a command line.

Standard library only. A stand-in is a :class:`StandIn` whose :meth:`StandIn.answer`
says what a request gets; :func:`make_server` serves it and answers for it:

- ``GET /health``: ``200 {"status": "ok", "down": false}``, even while it is down (the
  process is up; the service it plays is not);
- ``POST /down`` and ``POST /up``: from then on every other request answers ``503``
  (``/down``), or is served again (``/up``), so a flow's fallback can be seen without a
  restart;
- a body that is not JSON answers ``400``, one larger than :data:`MAX_BODY` ``413``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: a body larger than this is refused (413): a stand-in, but not an unbounded one
MAX_BODY = 64 * 1024
#: answers kept by idempotency key, at most: the oldest is forgotten past it
MAX_ANSWERS = 10_000

#: what a request gets: its status and its JSON body
Answer = tuple[int, Any]


class StandIn:
    """A service's state and its routes; subclasses answer in :meth:`answer`."""

    #: the service's name, as the configuration declares it (``[dependencies.NAME]``)
    name = "stand-in"

    def __init__(self) -> None:
        #: re-entrant: :meth:`once` holds it while the route it applies takes it again
        self.lock = threading.RLock()
        #: while set, every request but ``/health``, ``/down`` and ``/up`` answers 503
        self.down = False
        #: answers kept by ``Idempotency-Key``, so a repeated request is applied once
        self.answers: dict[str, Answer] = {}

    def answer(self, method: str, path: str, query: dict[str, str], body: Any) -> Answer:
        """The answer to one request (``body``: the parsed JSON, or ``None``)."""
        return 404, {"error": f"no route {method} {path}"}

    def once(self, key: str | None, apply: Callable[[], Answer]) -> Answer:
        """``apply()``'s answer, applied at most once per ``key`` (a request resent with
        the same ``Idempotency-Key`` gets the first answer again); a 5xx is not kept, so
        a retry after one is applied anew."""
        with self.lock:
            if key is not None and key in self.answers:
                return self.answers[key]
            answer = apply()
            if key is not None and answer[0] < 500:
                if len(self.answers) >= MAX_ANSWERS:  # the oldest goes: a long demo stays small
                    del self.answers[next(iter(self.answers))]
                self.answers[key] = answer
            return answer


def make_server(
    state: StandIn, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = False
) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (``0``: a free one) serving ``state``; each request
    is logged on stderr (``NAME: GET /path -> 200``) unless ``quiet``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = f"{state.name}-standin/1"
        #: seconds a client may take to send its request: a silent one never holds a thread
        timeout = 10

        def _send(self, status: int, body: Any) -> None:
            payload = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json; charset=utf-8")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _route(self) -> Answer:
            parts = urlsplit(self.path)
            path = parts.path
            if (self.command, path) == ("GET", "/health"):
                return 200, {"status": "ok", "down": state.down}
            if self.command == "POST" and path in ("/down", "/up"):
                state.down = path == "/down"
                return 200, {"down": state.down}
            if state.down:
                return 503, {"error": f"the {state.name} service is down (POST /up brings it back)"}
            declared = self.headers.get("content-length") or "0"
            if not declared.isdigit():  # "-1" would read until the client hangs up
                return 400, {"error": "content-length must be a number of bytes"}
            length = int(declared)
            if length > MAX_BODY:
                return 413, {"error": f"the body is larger than {MAX_BODY} bytes"}
            try:
                body = json.loads(self.rfile.read(length)) if length else None
            except ValueError:
                return 400, {"error": "the body is not JSON"}
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            key = self.headers.get("idempotency-key")
            if self.command in ("POST", "PUT", "PATCH") and key:
                return state.once(key, lambda: state.answer(self.command, path, query, body))
            return state.answer(self.command, path, query, body)

        def _handle(self) -> None:
            status, body = self._route()
            # the caller may have given up (a timeout): then there is no one to answer
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(status, body)
            if not quiet:
                sys.stderr.write(f"{state.name}: {self.command} {self.path} -> {status}\n")

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: :meth:`_handle` logs each request once, with its status."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(state: StandIn, description: str, default_port: int, argv: list[str] | None) -> None:
    """Run ``state`` from the command line (``--host``, ``--port``, ``--down``) until
    Ctrl-C; the first line printed says where (``NAME stand-in listening on URL``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port, help="0 picks a free port")
    parser.add_argument(
        "--down", action="store_true", help="start down: answer 503 (see the flow's fallback)"
    )
    args = parser.parse_args(argv)
    server = make_server(state, args.host, args.port)
    state.down = args.down
    port = server.server_address[1]
    print(f"{state.name} stand-in listening on http://{args.host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
