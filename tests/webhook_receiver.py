"""The platform's webhook, for the tests that send messages through the webhook channel:
a real HTTP server on 127.0.0.1 that records every message trilha POSTs and answers as
the test says (refusing some conversations or all of them, holding some answers back).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """Answers ``refuse_status`` to every message while ``refuse_all`` is set and to the
    conversations in ``refuse``, 200 to the others; waits ``hold_seconds`` before
    answering the conversations in ``hold``. Every body is kept with its answer."""

    def __init__(self, *, refuse_all: bool = False, refuse_status: int = 503) -> None:
        self.refuse_all = refuse_all
        self.refuse_status = refuse_status
        self.refuse: set[str] = set()
        self.hold: set[str] = set()
        self.hold_seconds = 0.0
        #: (body, status answered), in the order they came
        self.posts: list[tuple[dict[str, Any], int]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                conversation = body["conversationId"]
                with receiver._lock:
                    refused = receiver.refuse_all or conversation in receiver.refuse
                    status = receiver.refuse_status if refused else 200
                    receiver.posts.append((body, status))
                    held = conversation in receiver.hold
                if held:
                    time.sleep(receiver.hold_seconds)
                with contextlib.suppress(OSError):  # trilha may have given up waiting
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [body for body, _ in self.posts]

    def accepted(self) -> list[dict[str, Any]]:
        """The messages it answered 200."""
        with self._lock:
            return [body for body, status in self.posts if status == 200]

    def refused(self) -> int:
        with self._lock:
            return sum(status != 200 for _, status in self.posts)

    def key_of(self, conversation: str, text: str | None = None, wait: float = 0) -> str | None:
        """The idempotency key of the first message of ``conversation`` (saying ``text``,
        if given) that reached it, waiting up to ``wait`` seconds for one."""
        deadline = time.monotonic() + wait
        while True:
            for body in self.bodies():
                if body["conversationId"] == conversation and text in (None, body["text"]):
                    key: str = body["idempotencyKey"]
                    return key
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)


@contextlib.contextmanager
def webhook_receiver(**options: Any) -> Iterator[WebhookReceiver]:
    """A :class:`WebhookReceiver` serving until the block ends."""
    receiver = WebhookReceiver(**options)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
