"""Outbound calls of http and ai nodes keep tenants apart and stay bounded, against real
servers on 127.0.0.1: no cookie of one call reaches another, an answer is cut off while
read once it passes ``max_response_bytes`` (after decompression), and the connection goes
to the address the address policy checked, with the host's name in ``Host`` and TLS."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, aclosing
from pathlib import Path
from typing import Any

import pytest

from outbound_servers import RawServer, certificate, gzip_bomb, peak_rss, raw_server
from trilha.config import Config, DependencyConfig, HttpConfig
from trilha.core.states import ExecutionStatus
from trilha.errors import NodeError
from trilha.resilience.breaker import BreakerState
from trilha.resilience.dependencies import DependencyClient, Target

S = ExecutionStatus
MB = 1 << 20


def call_flow(url: str, *, dependency: str | None = "crm", **node: Any) -> dict[str, Any]:
    """One http call, no retries: success ends with 'ok', the fallback with 'sorry'."""
    call = {
        "id": "call",
        "type": "http",
        "url": url,
        "saveAs": "reply",
        "retry": {"maxAttempts": 1},
        "fallback": {"next": "sorry"},
        "next": "ok",
        **node,
    }
    if dependency is not None:
        call["dependency"] = dependency
    return {
        "id": "call",
        "start": "call",
        "nodes": [
            call,
            {"id": "ok", "type": "end", "text": "ok"},
            {"id": "sorry", "type": "end", "text": "sorry"},
        ],
    }


def crm(url: str, **http: Any) -> Config:
    return Config(http=HttpConfig(**http), dependencies={"crm": DependencyConfig(base_url=url)})


async def run(h: Any, conversation: str, institution: str = "inst-1") -> tuple[Any, list[Any]]:
    """Start the flow for ``institution``, run it; the execution and its steps' errors."""
    ex = await h.start("call", conversation=conversation, institution_id=institution)
    await h.settle()
    errors = [c.error for c in await h.store.checkpoints(ex.id) if c.error]
    return await h.get(ex.id), errors


@pytest.fixture
def server() -> Iterator[RawServer]:
    with raw_server() as running:
        yield running


@pytest.fixture
async def make_harness(
    make_harness: Callable[..., Any],
) -> AsyncIterator[Callable[..., Any]]:
    """The shared harness, with the processors' clients closed afterwards: these servers
    keep connections alive, and a client left to the garbage collector warns."""
    made: list[Any] = []

    def make(*args: Any, **kwargs: Any) -> Any:
        made.append(make_harness(*args, **kwargs))
        return made[-1]

    yield make
    for h in made:
        await h.engine.processors.aclose()


# ----------------------------------------------------------------------------- cookies


async def test_a_cookie_set_for_one_institution_is_not_sent_for_another(
    make_harness: Callable[..., Any], server: RawServer
) -> None:
    """B's call is answered with Set-Cookie; A's next call to the same host carries no
    Cookie, while a flow's own Cookie header still goes out as written."""
    server.answer("/login", body=b"{}", headers={"set-cookie": "session=b-secret; Path=/"})
    server.answer("/profile", body=b"{}")
    h = make_harness(crm(server.url))
    await h.publish(call_flow("/login") | {"id": "login"})
    await h.publish(call_flow("/profile"))
    b = await h.start("login", conversation="b-conv", institution_id="inst-b")
    await h.settle()
    assert (await h.get(b.id)).status is S.COMPLETED
    a, errors = await run(h, "a-conv", institution="inst-a")
    assert a.status is S.COMPLETED and errors == []
    await h.publish(call_flow("/profile", headers={"Cookie": "mine=1"}))
    await run(h, "a-conv-2", institution="inst-a")
    assert server.paths() == ["/login", "/profile", "/profile"]
    headers = [{k.lower(): v for k, v in r["headers"].items()} for r in server.requests]
    assert "cookie" not in headers[1]
    assert headers[2]["cookie"] == "mine=1"


# ----------------------------------------------------------------------------- response cap


@pytest.mark.parametrize(
    ("coding", "wbits"),
    [("gzip", zlib.MAX_WBITS | 16), ("deflate", zlib.MAX_WBITS), ("deflate", -zlib.MAX_WBITS)],
)
async def test_a_compression_bomb_is_cut_off_while_read(
    make_harness: Callable[..., Any], server: RawServer, coding: str, wbits: int
) -> None:
    """A ~130 KB body that inflates to 128 MB fails the node with kind limit at once,
    the process's memory barely moves (a whole read grows it by ~260 MB), and the
    breaker is not charged for it."""
    bomb = gzip_bomb(128 * MB, wbits=wbits)
    assert len(bomb) < 200_000
    server.answer("/bomb", body=bomb, headers={"content-encoding": coding})
    h = make_harness(crm(server.url))
    await h.publish(call_flow("/bomb"))
    started = time.monotonic()
    with peak_rss() as growth:
        ex, errors = await run(h, "c1")
    assert time.monotonic() - started < 5
    assert growth() < 50 * MB, f"memory grew by {growth() / MB:.0f} MB"
    assert ex.status is S.COMPLETED and ex.variables.get("reply") is None
    (error,) = errors
    assert error["type"] == "LimitExceeded" and error["details"]["kind"] == "limit"
    assert "larger than 1048576 bytes" in error["message"]
    breaker = h.engine.breakers.get("crm")
    assert breaker.state is BreakerState.CLOSED and breaker.snapshot().failures == 0


@pytest.mark.parametrize("encoded", [False, True])
async def test_the_cap_counts_decoded_bytes_exactly(
    make_harness: Callable[..., Any], server: RawServer, encoded: bool
) -> None:
    """With max_response_bytes 1000 an answer of 1000 bytes (after decoding) is saved and
    one of 1001 fails with kind limit, sent plain or gzipped."""

    def body(size: int) -> bytes:
        text = b'"' + b"a" * (size - 2) + b'"'
        return _gzip(text) if encoded else text

    headers = {"content-encoding": "gzip"} if encoded else {}
    server.answer("/fits", body=body(1000), headers=headers)
    server.answer("/over", body=body(1001), headers=headers)
    h = make_harness(crm(server.url, max_response_bytes=1000))
    await h.publish(call_flow("/fits"))
    ex, errors = await run(h, "c1")
    assert errors == [] and ex.variables["reply"] == "a" * 998
    await h.publish(call_flow("/over"))
    ex, errors = await run(h, "c2")
    assert [e["details"]["kind"] for e in errors] == ["limit"]


def _gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return packer.compress(data) + packer.flush()


async def test_a_declared_length_over_the_cap_fails_before_the_body(
    make_harness: Callable[..., Any], server: RawServer
) -> None:
    """An answer whose Content-Length passes the cap fails at once, without waiting for
    a body that is not coming (the server holds it back past the node's timeout)."""
    hold = threading.Event()
    server.answer("/huge", headers={"content-length": str(50 * MB)}, hold=hold)
    h = make_harness(crm(server.url))
    await h.publish(call_flow("/huge", timeoutSeconds=30))
    started = time.monotonic()
    _, errors = await run(h, "c1")
    hold.set()
    assert time.monotonic() - started < 10  # far from the 30 s a wait for the body takes
    assert [e["details"]["kind"] for e in errors] == ["limit"]


async def test_an_ai_answer_too_large_degrades_to_keywords(
    make_harness: Callable[..., Any], server: RawServer
) -> None:
    """An NLP answer past the cap is not read whole: the ai node classifies with its
    keywords and the step is degraded, naming the bound."""
    server.answer("/classify", body=gzip_bomb(16 * MB), headers={"content-encoding": "gzip"})
    h = make_harness(Config(dependencies={"nlp": DependencyConfig(base_url=server.url)}))
    await h.publish(
        {
            "id": "call",
            "start": "classify",
            "nodes": [
                {
                    "id": "classify",
                    "type": "ai",
                    "dependency": "nlp",
                    "text": "segunda via do boleto",
                    "intents": [{"name": "billing", "keywords": ["boleto"], "next": "bill"}],
                    "next": "other",
                },
                {"id": "bill", "type": "end", "text": "billing"},
                {"id": "other", "type": "end", "text": "other"},
            ],
        }
    )
    ex, errors = await run(h, "c1")
    assert errors == []
    assert ex.variables["intent"] == {"intent": "billing", "source": "keywords", "confidence": None}
    (step,) = [c for c in await h.store.checkpoints(ex.id) if c.node_id == "classify"]
    assert "larger than" in step.output["degraded"]


# ----------------------------------------------------------------------------- DNS rebinding


class Dns:
    """The system resolver, except for the names given: each answers its addresses in
    turn, the last one ever after, as a name under an attacker's control can."""

    def __init__(self, **answers: list[str]) -> None:
        self.answers = {name.replace("_", "."): list(a) for name, a in answers.items()}
        self.asked: dict[str, int] = dict.fromkeys(self.answers, 0)
        self._real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.answers:
            return self._real(host, port, *args, **kwargs)
        turn = min(self.asked[name], len(self.answers[name]) - 1)
        self.asked[name] += 1
        return self._real(self.answers[name][turn], port, *args, **kwargs)


def twin_servers() -> tuple[ExitStack, RawServer, RawServer]:
    """Servers on 127.0.0.2 and 127.0.0.1 with the same port."""
    for _ in range(20):
        stack = ExitStack()
        checked = stack.enter_context(raw_server("127.0.0.2"))
        try:
            loopback = stack.enter_context(raw_server("127.0.0.1", checked.port))
        except OSError:  # the port is taken on 127.0.0.1: try another
            stack.close()
            continue
        return stack, checked, loopback
    raise AssertionError("no port free on both 127.0.0.1 and 127.0.0.2")


async def test_a_rebinding_name_reaches_the_address_that_was_checked(
    make_harness: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that resolves to an accepted address for the check and to 127.0.0.1 for the
    connection reaches the accepted one, asked once, with the name in the Host header;
    nothing reaches loopback. (127.0.0.2 stands for a public address: it is accepted by
    [http] allow_private, while 127.0.0.1 is not.)"""
    stack, checked, loopback = twin_servers()
    with stack:
        checked.answer("/data", body=b'{"from": "checked"}')
        loopback.answer("/data", body=b'{"from": "loopback"}')
        dns = Dns(rebind_test=["127.0.0.2", "127.0.0.1"])
        monkeypatch.setattr(socket, "getaddrinfo", dns)
        h = make_harness(Config(http=HttpConfig(allow_private=["127.0.0.2"])))
        url = f"http://rebind.test:{checked.port}/data"
        await h.publish(call_flow(url, dependency=None))
        ex, errors = await run(h, "c1")
        assert errors == [] and ex.variables["reply"] == {"from": "checked"}
        assert loopback.requests == []
        (request,) = checked.requests
        assert request["headers"]["Host"] == f"rebind.test:{checked.port}"
        assert dns.asked == {"rebind.test": 1}


async def test_a_name_resolving_inside_is_refused_without_a_connection(
    make_harness: Callable[..., Any], server: RawServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name whose one answer is loopback is refused (BlockedAddress) and nothing is
    sent."""
    server.answer("/data", body=b"{}")
    monkeypatch.setattr(socket, "getaddrinfo", Dns(inside_test=["127.0.0.1"]))
    h = make_harness(Config())
    await h.publish(call_flow(f"http://inside.test:{server.port}/data", dependency=None))
    _, errors = await run(h, "c1")
    assert [e["type"] for e in errors] == ["BlockedAddress"]
    assert server.requests == []


# ----------------------------------------------------------------------------- TLS


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for secure.test only, and a client context
    that trusts it."""
    cert, key = certificate(tmp_path, "secure.test")
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    client_side = ssl.create_default_context(cafile=str(cert))
    return server_side, client_side


async def test_tls_carries_the_name_and_is_not_shared_across_names(
    tls: tuple[ssl.SSLContext, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call to a pinned name sends that name as the TLS server name and Host, and the
    certificate is verified for it; another name at the same address does not ride on
    that verified connection: its certificate is checked anew, and refused."""
    server_side, client_side = tls
    with raw_server(tls=server_side) as server:
        server.answer("/h", body=b'{"ok": true}')
        dns = Dns(secure_test=["127.0.0.1"], other_test=["127.0.0.1"])
        monkeypatch.setattr(socket, "getaddrinfo", dns)

        def target(name: str) -> Target:
            url = f"https://{name}:{server.port}/h"
            return Target(url, timeout=5, max_bytes=MB, allowed_hosts=(name,))

        async with aclosing(DependencyClient(verify=client_side)) as client:
            reply = await client.send(target("secure.test"), "GET")
            assert reply.json() == {"ok": True}
            with pytest.raises(NodeError, match=r"certificate|hostname|match") as refused:
                await client.send(target("other.test"), "GET")
        assert refused.value.details["kind"] == "connection"
        assert server.server_names[0] == "secure.test"
        assert "other.test" in server.server_names
        (request,) = server.requests
        assert request["headers"]["Host"] == f"secure.test:{server.port}"
