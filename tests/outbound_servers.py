"""Real servers and measures for the tests of outbound calls (http and ai nodes):
a server answering exact bytes (a gzip bomb, a Set-Cookie, a body that never comes),
optionally over TLS, recording what reached it; a certificate made with openssl; the
peak memory of a process while something runs."""

from __future__ import annotations

import functools
import os
import ssl
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: when set, the answer's headers go out and then nothing until it is set
    hold: threading.Event | None = None


@dataclass
class RawServer:
    """A real HTTP(S) server on ``host``; each path answers its :class:`Answer`, every
    request is recorded (method, path, headers, the TLS server name it asked for)."""

    host: str
    port: int
    scheme: str
    answers: dict[str, Answer] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def answer(self, path: str, **kwargs: Any) -> None:
        self.answers[path] = Answer(**kwargs)

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that hangs up (as one cutting off a bomb does) is no news


@contextmanager
def raw_server(
    host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
) -> Iterator[RawServer]:
    """Serve on ``host:port`` (``port`` 0 picks one) until the block ends."""
    state = RawServer(host, port, "https" if tls else "http")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            state.requests.append(
                {"method": self.command, "path": self.path, "headers": dict(self.headers)}
            )
            answer = state.answers.get(self.path.split("?")[0], Answer(404))
            try:
                self.send_response(answer.status)
                headers = {"content-length": str(len(answer.body)), **answer.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if answer.hold is not None:
                    self.wfile.flush()
                    answer.hold.wait(30)
                    self.close_connection = True
                    return
                self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                self.close_connection = True

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = _QuietServer((host, port), Handler)
    state.port = int(httpd.server_address[1])
    if tls is not None:

        def remember(sock: Any, server_name: str | None, context: Any) -> None:
            state.server_names.append(server_name)

        tls.sni_callback = remember
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        for answer in state.answers.values():
            if answer.hold is not None:
                answer.hold.set()
        httpd.shutdown()
        httpd.server_close()


@functools.cache
def gzip_bomb(inflated: int, *, wbits: int = zlib.MAX_WBITS | 16) -> bytes:
    """``inflated`` zero bytes compressed (gzip by default; ``zlib.MAX_WBITS`` for a
    zlib-wrapped deflate, ``-zlib.MAX_WBITS`` for raw deflate): about a thousandth of
    the size, made without ever holding the inflated bytes."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(1 << 20)
    parts = []
    for start in range(0, inflated, len(block)):
        parts.append(packer.compress(block[: min(len(block), inflated - start)]))
    parts.append(packer.flush())
    return b"".join(parts)


def certificate(folder: Path, *names: str) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for ``names``, made by openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={names[0]}",
            "-addext",
            "subjectAltName=" + ",".join(f"DNS:{n}" for n in names),
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@contextmanager
def peak_rss(pid: int | None = None, every: float = 0.002) -> Iterator[Callable[[], int]]:
    """Sample the resident memory of process ``pid`` (this one by default) while the
    block runs; the callable yielded gives the peak growth over the start, in bytes."""
    process = psutil.Process(pid or os.getpid())
    start = process.memory_info().rss
    peak = start
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield lambda: peak - start
    finally:
        done.set()
        sampler.join()
