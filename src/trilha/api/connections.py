"""The HTTP connections ``trilha serve`` accepts: uvicorn's h11 protocol, bounded.

uvicorn times out an idle keep-alive connection (``timeout_keep_alive``) and nothing
else: a client that opens a connection and sends its headers a byte at a time holds
the connection, and its file descriptor, for as long as it likes, and enough of them
take every descriptor the process has. Its ``limit_concurrency`` answers 503 beyond a
count, but in plain text, and counting in-flight requests with connections.

:func:`protocol` makes the h11 protocol with two bounds of ``[api]``:

* ``header_timeout_seconds``: a connection that runs no request has this long to send
  a request's complete headers, counted from when it opened, or after an answer from
  the first byte it sends (an idle connection between requests is closed by the
  keep-alive timeout instead); more bytes do not extend it. Bytes that follow an early
  answer (a body no one reads) count the same. Past it the connection is closed, with
  a 408 problem when part of a request had arrived.
* ``max_connections``: a connection opened while that many are open is answered 503
  (a problem document with Retry-After) on its request, then closed. It is counted
  when accepted, so the connections being served are never cut.

The body's own deadline (``body_timeout_seconds``) is the app's: see
:class:`trilha.api.app.Guard`, which reads every body within it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import h11
import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol

from trilha.api.problems import MEDIA_TYPE
from trilha.observability.logging import get_logger

log = get_logger("trilha.api")

#: how long a client refused for capacity is asked to wait
FULL_RETRY_AFTER = 1
#: at most one log line per this many seconds about refused or cut connections
LOG_EVERY_SECONDS = 10.0


def _problem(status: int, title: str, detail: str, kind: str) -> bytes:
    return orjson.dumps(
        {"type": f"urn:trilha:problem:{kind}", "title": title, "status": status, "detail": detail}
    )


class _Throttled:
    """Counts an event and logs it at most once per :data:`LOG_EVERY_SECONDS`, with how
    many happened since the last line: a flood of slow clients is one line, not many."""

    def __init__(self, event: str) -> None:
        self.event = event
        self.count = 0
        self.logged_at = -float("inf")

    def __call__(self, **fields: Any) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged_at >= LOG_EVERY_SECONDS:
            log.warning(self.event, count=self.count, **fields)
            self.count = 0
            self.logged_at = now


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a cap on open connections
    (the class attributes; :func:`protocol` makes one with the configured values)."""

    header_seconds: ClassVar[float] = 10.0
    max_connections: ClassVar[int] = 1_000
    refused: ClassVar[_Throttled] = _Throttled("api.connections_full")
    cut: ClassVar[_Throttled] = _Throttled("api.slow_client_cut")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self.max_connections:
            # every request on this connection is answered 503, then it is closed
            self.app = _Full(self.max_connections)
            self.refused(maxConnections=self.max_connections)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Start the header deadline when the connection opens or bytes come while no
        request is being answered; a request's headers (a cycle begun) stop it."""
        serving = self.cycle is not None and not self.cycle.response_complete
        if serving or self.transport.is_closing():
            self._disarm()
        elif self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        started, _ = self.conn.trailing_data
        if started and self.conn.their_state is h11.IDLE:
            # part of a request's headers arrived: say why it ends (h11 cannot answer a
            # request it has not parsed yet, so the answer is written as it is); a body
            # still coming after an early answer has had its answer
            body = _problem(
                408,
                "Request timeout",
                f"the request's headers did not arrive within {self.header_seconds:g} s",
                "timeout",
            )
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: "
                + MEDIA_TYPE.encode()
                + b"\r\nconnection: close\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            self.cut(headerTimeoutSeconds=self.header_seconds)
        self.transport.close()


class _Full:
    """The answer on a connection over ``api.max_connections``."""

    def __init__(self, bound: int) -> None:
        self.body = _problem(
            503,
            "Service unavailable",
            f"the server has {bound} connections open, its bound; retry in {FULL_RETRY_AFTER} s",
            "overloaded",
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", MEDIA_TYPE.encode()),
                    (b"content-length", str(len(self.body)).encode()),
                    (b"retry-after", str(FULL_RETRY_AFTER).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def protocol(header_seconds: float, max_connections: int) -> type[BoundedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, with these bounds."""
    return type(
        "BoundedH11Protocol",
        (BoundedH11Protocol,),
        {"header_seconds": header_seconds, "max_connections": max_connections},
    )
