"""Meta's Graph API as the WhatsApp channel's tests meet it: a real HTTP server on
127.0.0.1 that answers ``POST /{phone_number_id}/messages`` (a send, or a mark-read)
and ``GET /{media-id}`` in the shapes Meta documents, records every request with its
time and headers, and refuses as a test says (an error code per recipient, or the
next N sends).

Documented shapes (developers.facebook.com/docs/whatsapp/cloud-api):

* a send answers ``{"messaging_product": "whatsapp", "contacts": [{"input": TO,
  "wa_id": TO}], "messages": [{"id": "wamid.…"}]}``;
* a mark-read answers ``{"success": true}``;
* a media lookup answers ``{"messaging_product": "whatsapp", "url": …, "mime_type": …,
  "sha256": …, "file_size": …, "id": MEDIA_ID}``;
* a refusal answers 400 (or 429, 5xx) with ``{"error": {"message": …, "type":
  "OAuthException", "code": CODE, "error_data": {"messaging_product": "whatsapp",
  "details": …}, "fbtrace_id": …}}``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: the Graph API version in the stand-in's URL, as Meta's own carry one
VERSION = "v21.0"

#: Meta's titles for the codes the channel handles (from the error-codes page)
TITLES = {
    130429: "Rate limit hit",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    131047: "Re-engagement message",
    131026: "Message Undeliverable",
    131000: "Something went wrong",
    131009: "Parameter value is not valid",
    132001: "Template does not exist",
}


@dataclass
class Refusal:
    """An error answer: Meta's ``code`` with the HTTP ``status`` it comes with."""

    code: int
    status: int = 400

    def body(self) -> dict[str, Any]:
        title = TITLES.get(self.code, "Error")
        return {
            "error": {
                "message": f"(#{self.code}) {title}",
                "type": "OAuthException",
                "code": self.code,
                "error_data": {"messaging_product": "whatsapp", "details": title},
                "fbtrace_id": "AazT3sT1d",
            }
        }


@dataclass
class GraphRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: dict[str, Any] | None
    at: float  # time.monotonic() when it arrived


@dataclass
class GraphStandIn:
    """The stand-in's state: what it received and how it answers."""

    url: str = ""
    requests: list[GraphRequest] = field(default_factory=list)
    #: recipient ``to`` -> the refusal every send to them gets
    refuse_to: dict[str, Refusal] = field(default_factory=dict)
    #: refusals for the next sends, whoever they go to (popped one per send)
    refuse_next: list[Refusal] = field(default_factory=list)
    #: the refusal every mark-read gets (``None``: they succeed)
    refuse_reads: Refusal | None = None
    #: media id -> its lookup answer's fields (``url``, ``mime_type``...)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: media id -> the refusal its lookups get (until the test removes it)
    refuse_media: dict[str, Refusal] = field(default_factory=dict)
    #: seconds every answer waits
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _count: int = 0

    def sends(self) -> list[GraphRequest]:
        """The message sends (not the mark-reads), in the order they came."""
        with self.lock:
            return [
                r
                for r in self.requests
                if r.method == "POST"
                and r.path.endswith("/messages")
                and r.body is not None
                and r.body.get("status") != "read"
            ]

    def reads(self) -> list[str]:
        """The wamids marked read, in order."""
        with self.lock:
            return [
                str(r.body["message_id"])
                for r in self.requests
                if r.method == "POST" and r.body is not None and r.body.get("status") == "read"
            ]

    def wait_sends(self, count: int, timeout: float = 15.0) -> list[GraphRequest]:
        """At least ``count`` sends, waiting up to ``timeout`` seconds for them."""
        deadline = time.monotonic() + timeout
        while True:
            sends = self.sends()
            if len(sends) >= count or time.monotonic() >= deadline:
                return sends
            time.sleep(0.02)

    def answer(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] == VERSION:
            parts = parts[1:]
        with self.lock:
            if method == "GET" and len(parts) == 1:
                refused = self.refuse_media.get(parts[0])
                if refused is not None:
                    return refused.status, refused.body()
                info = self.media.get(parts[0])
                if info is None:
                    return 404, Refusal(100, 404).body()
                return 200, {"messaging_product": "whatsapp", "id": parts[0], **info}
            if method == "POST" and len(parts) == 2 and parts[1] == "messages" and body:
                if body.get("status") == "read":
                    if self.refuse_reads is not None:
                        return self.refuse_reads.status, self.refuse_reads.body()
                    return 200, {"success": True}
                to = str(body.get("to", ""))
                refusal = self.refuse_to.get(to) or (
                    self.refuse_next.pop(0) if self.refuse_next else None
                )
                if refusal is not None:
                    return refusal.status, refusal.body()
                self._count += 1
                wamid = f"wamid.standin{self._count:06d}"
                return 200, {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": wamid}],
                }
        return 404, Refusal(100, 404).body()


@contextlib.contextmanager
def graph_standin() -> Iterator[GraphStandIn]:
    """A :class:`GraphStandIn` serving on 127.0.0.1 until the block ends; its ``url`` is
    what ``[channel.whatsapp] api_base_url`` names."""
    state = GraphStandIn()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            split = urlsplit(self.path)
            body = json.loads(raw) if raw else None
            request = GraphRequest(
                self.command,
                split.path,
                parse_qs(split.query),
                {k.lower(): v for k, v in self.headers.items()},
                body,
                time.monotonic(),
            )
            with state.lock:
                state.requests.append(request)
            if state.delay:
                time.sleep(state.delay)
            status, answer = state.answer(self.command, split.path, body)
            payload = json.dumps(answer).encode()
            with contextlib.suppress(OSError):
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        do_GET = _handle
        do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/{VERSION}"
    # a short poll: the block ends without waiting half a second for the loop to notice
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
