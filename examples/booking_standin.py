"""A stand-in for a dental clinic's booking service, for examples/clinic.json.

Standard library only, so it runs anywhere Python does::

    python examples/booking_standin.py --port 8766

``examples/trilha.toml`` declares it as the ``booking`` dependency. It serves:

- ``GET /slots``: the free slots, a JSON list of ``{id, label, doctor, at}``
  (``label`` is Portuguese, ``at`` a wall-clock time in São Paulo);
- ``POST /bookings`` with ``{"slotId", "name", ...}``: books the slot and answers
  ``201 {id, protocol, slot, name, phone, insuranceCard, language}``; a slot that is
  not free answers ``409``, a body without ``slotId`` or ``name`` ``422``. A request
  repeated with the same ``Idempotency-Key`` gets the first answer again and books
  nothing twice (so trilha may resend it: ``idempotent = true`` in the config);
- ``GET /bookings``: what was booked, to check a run;
- ``GET /health``: ``200 {"status": "ok"}``.

``--down`` answers ``503`` to everything but ``/health``, to see the flow's fallback.
Port ``0`` picks a free port; the first line printed says which
(``booking stand-in listening on http://127.0.0.1:PORT``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: the clinic's free slots when the stand-in starts (fixed, so a run can be checked)
SLOTS: tuple[dict[str, str], ...] = (
    {
        "id": "s-0910-0900",
        "label": "ter 10/06 09:00",
        "doctor": "Dra. Ana Lima",
        "at": "2025-06-10T09:00:00-03:00",
    },
    {
        "id": "s-0910-1430",
        "label": "ter 10/06 14:30",
        "doctor": "Dr. Bruno Reis",
        "at": "2025-06-10T14:30:00-03:00",
    },
    {
        "id": "s-0911-0800",
        "label": "qua 11/06 08:00",
        "doctor": "Dra. Ana Lima",
        "at": "2025-06-11T08:00:00-03:00",
    },
    {
        "id": "s-0912-1600",
        "label": "qui 12/06 16:00",
        "doctor": "Dra. Carla Souza",
        "at": "2025-06-12T16:00:00-03:00",
    },
)
#: a body larger than this is refused (413): a stand-in, but not an unbounded one
MAX_BODY = 64 * 1024
#: bookings kept at most, so a long-running demo cannot grow without bound
MAX_BOOKINGS = 10_000


class Booking:
    """The service's state: free slots, bookings, answers by idempotency key."""

    def __init__(self, slots: tuple[dict[str, str], ...] = SLOTS) -> None:
        self.lock = threading.Lock()
        self.free: dict[str, dict[str, str]] = {s["id"]: dict(s) for s in slots}
        self.bookings: list[dict[str, Any]] = []
        self.answers: dict[str, tuple[int, Any]] = {}
        self.down = False

    def book(self, body: Any, key: str | None) -> tuple[int, Any]:
        with self.lock:
            if key is not None and key in self.answers:
                return self.answers[key]
            answer = self._book(body)
            if key is not None and answer[0] < 500:
                self.answers[key] = answer
            return answer

    def _book(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return 422, {"error": "the body must be a JSON object"}
        slot_id, name = body.get("slotId"), body.get("name")
        if not isinstance(slot_id, str) or not slot_id:
            return 422, {"error": "slotId: missing"}
        if not isinstance(name, str) or not name.strip():
            return 422, {"error": "name: missing"}
        if len(self.bookings) >= MAX_BOOKINGS:
            return 507, {"error": f"the stand-in keeps at most {MAX_BOOKINGS} bookings"}
        slot = self.free.pop(slot_id, None)
        if slot is None:
            return 409, {"error": f"slot {slot_id} is not free"}
        number = len(self.bookings) + 1
        booking = {
            "id": f"bk-{number:04d}",
            "protocol": f"CLN-{1000 + number}",
            "slot": slot,
            "name": name.strip(),
            "phone": body.get("phone"),
            "insuranceCard": body.get("insuranceCard"),
            "language": body.get("language"),
        }
        self.bookings.append(booking)
        return 201, booking


def make_server(host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, Booking]:
    """A server bound to ``host:port`` (``0``: a free one) and the state it serves."""
    state = Booking()

    class Handler(BaseHTTPRequestHandler):
        server_version = "booking-standin/1"

        def _answer(self, status: int, body: Any) -> None:
            payload = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json; charset=utf-8")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _route(self) -> tuple[int, Any]:
            path = self.path.split("?", 1)[0]
            if (self.command, path) == ("GET", "/health"):
                return 200, {"status": "ok"}
            if state.down:
                return 503, {"error": "the booking service is down (--down)"}
            if (self.command, path) == ("GET", "/slots"):
                with state.lock:
                    return 200, list(state.free.values())
            if (self.command, path) == ("GET", "/bookings"):
                with state.lock:
                    return 200, list(state.bookings)
            if (self.command, path) == ("POST", "/bookings"):
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_BODY:
                    return 413, {"error": f"the body is larger than {MAX_BODY} bytes"}
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    return 400, {"error": "the body is not JSON"}
                return state.book(body, self.headers.get("idempotency-key"))
            return 404, {"error": f"no route {self.command} {path}"}

        def _handle(self) -> None:
            # the caller may have given up (a timeout): then there is no one to answer
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._answer(*self._route())

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"booking-standin: {self.command} {self.path}\n")

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server, state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766, help="0 picks a free port")
    parser.add_argument("--down", action="store_true", help="answer 503 (see the fallback)")
    args = parser.parse_args(argv)
    server, state = make_server(args.host, args.port)
    state.down = args.down
    port = server.server_address[1]
    print(f"booking stand-in listening on http://{args.host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
