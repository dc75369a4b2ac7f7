"""Declared dependencies: where a node's request goes and the breaker guarding it.

The ``http`` and ``ai`` nodes both call services declared in ``trilha.toml``
(``[dependencies.NAME]``), so the glue lives here once: :func:`resolve`
joins the node's path to the base URL (a request may not leave the
dependency's host), adds the configured headers (``${ENV}`` expanded), picks
the timeout, lets the dependency's host through the address policy (a declared
dependency may be private or loopback; a plain URL may not) and fetches the
dependency's circuit breaker with its settings. :meth:`DependencyClient.send`
makes the call under that breaker:

- an open breaker fails fast with :class:`~trilha.errors.DependencyUnavailable`
  (carrying ``dependency`` and ``retry_at``) and no request goes out;
- every call that went out is told to the breaker (:class:`~trilha.resilience.breaker.Call`:
  its kind, status, request and latency), which decides by the dependency's
  ``breaker.count`` whether it counts against the dependency (by default timeouts,
  connection errors, 429, 502, 503 and 504) or only against the request;
- failures raise :class:`~trilha.errors.NodeError` with the details the
  engine's classifier reads: ``status`` and ``retry_after`` for an HTTP answer,
  ``kind`` (``timeout`` / ``connection``) otherwise, and always ``request``
  (``"METHOD URL"``), so a failed step says which request failed;
- a failure without an answer says whether the request may have reached the
  service (``sent``): false when it failed before a byte of it was written
  (resolving the name, connecting, the TLS handshake, a refused connection),
  true once its headers began to go out (a timeout waiting for the answer, a
  connection cut mid-exchange), which httpx's ``trace`` extension tells us; a
  ``POST`` with ``sent`` may have been applied (see :mod:`trilha.processors.http`);
- a step's idempotency key, when given, goes in the dependency's
  ``idempotency_header`` (``Idempotency-Key`` unless renamed; ``""`` sends none);
- the answer is streamed and the call aborted with
  :class:`~trilha.errors.LimitExceeded` (``kind = "limit"``: not retried, not
  held against the dependency) once it passes ``max_bytes``, as sent or after
  decompression, which is undone a piece at a time; one timeout covers resolving,
  connecting and reading every byte.

The request goes out through :func:`trilha.netguard.guarded_client` to the address
:func:`~trilha.netguard.check_url` resolved and checked for it, with nothing kept
from one call for the next (see :mod:`trilha.netguard`).

:func:`probe` asks a dependency's health URL whether it is back, for an
execution waiting for it (``waitForDependency``).
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import ssl
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import urlsplit

import httpx

from trilha.config import Config, DependencyConfig
from trilha.core.templates import render_url
from trilha.core.tenancy import dependency_denial
from trilha.errors import (
    AccessDenied,
    DependencyUnavailable,
    LimitExceeded,
    NodeError,
    NodeTimeout,
    TrilhaError,
)
from trilha.netguard import check_url, guarded_client, pinned
from trilha.observability import tracing
from trilha.resilience.breaker import BreakerRegistry, CircuitBreaker, call_of

if TYPE_CHECKING:
    from trilha.processors.base import StepContext

#: the node-state key in which the engine keeps when an execution began waiting for
#: a dependency (``waitForDependency``), read by nodes that degrade once it is spent
WAIT_STARTED_KEY: Final = "dependencyWaitStartedAt"
#: where a step's idempotency key goes unless its dependency renames it
DEFAULT_IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
#: the node-state key keeping a calling step's idempotency key across its retries
IDEMPOTENCY_KEY: Final = "idempotencyKey"
#: the node-state key marking the attempt whose call is under way (see :func:`begin_call`)
CALL_STARTED_KEY: Final = "callStartedAttempt"


def step_key(execution_id: str, step_seq: int, node_state: Mapping[str, Any]) -> str:
    """The idempotency key of the call a node is about to make: the same on every
    attempt of the step and after a crash.

    The first attempt names it after the step it runs as (``<execution>:<seq>``, the
    scheme of the outbox's message keys, whose ``seq`` is the step's number): the
    engine commits what came before an effectful node, so a worker taking the
    execution over after a crash runs it as the same step and derives the same key.
    A retry is a later step, so the key is then read from the node state, which keeps
    it (the engine stores it there, see :data:`IDEMPOTENCY_KEY`) until the execution
    leaves the node; entering the node again later is a new call with a new key."""
    kept = node_state.get(IDEMPOTENCY_KEY)
    return kept if isinstance(kept, str) and kept else f"{execution_id}:{step_seq + 1}"


def begin_call(
    execution_id: str, step_seq: int, attempts: int, node_state: Mapping[str, Any]
) -> tuple[str, bool, dict[str, Any]]:
    """What the engine records, and commits, before an effectful node runs: the step's
    key (:func:`step_key`) and that attempt ``attempts + 1`` began. Returns the key,
    whether that same attempt had already begun (a worker died or lost the execution
    during it, so its call may have gone out: the node is *interrupted*), and the node
    state to keep. :func:`call_ended` removes the mark when the attempt ends in the
    process, whatever its result, so only an attempt cut short leaves it behind."""
    key = step_key(execution_id, step_seq, node_state)
    attempt = attempts + 1
    interrupted = node_state.get(CALL_STARTED_KEY) == attempt
    return key, interrupted, {**node_state, IDEMPOTENCY_KEY: key, CALL_STARTED_KEY: attempt}


def call_ended(node_state: Mapping[str, Any]) -> dict[str, Any]:
    """The node state without the mark of an attempt under way (see :func:`begin_call`)."""
    return {k: v for k, v in node_state.items() if k != CALL_STARTED_KEY}


@dataclass(frozen=True, slots=True)
class Target:
    """A request's destination, resolved against the configuration."""

    url: str
    timeout: float
    max_bytes: int
    #: hosts the address policy lets through although private (declared ones)
    allowed_hosts: tuple[str, ...]
    headers: dict[str, str] = field(default_factory=dict)
    #: the declared dependency, ``None`` for a plain URL
    dependency: str | None = None
    breaker: CircuitBreaker | None = None
    #: whose call this is (the breaker keeps it with the call that trips it)
    institution_id: str | None = None
    #: the header carrying a step's idempotency key; ``""`` for none
    idempotency_header: str = DEFAULT_IDEMPOTENCY_HEADER
    #: the service applies a request once per key (``idempotent = true``)
    idempotent: bool = False


def declared(config: Config, name: str) -> DependencyConfig:
    """The configuration of dependency ``name``, or a NodeError saying it is undeclared."""
    dep = config.dependencies.get(name)
    if dep is None:
        raise NodeError(
            f"dependency '{name}' is not declared in the configuration",
            kind="configuration",
            dependency=name,
        )
    return dep


def join_url(dep: DependencyConfig, name: str, path: str) -> str:
    """``path`` relative to the dependency's base URL (or absolute on its host)."""
    url = path if urlsplit(path).scheme else f"{dep.base_url.rstrip('/')}/{path.lstrip('/')}"
    if urlsplit(url).netloc != urlsplit(dep.base_url).netloc:
        raise NodeError(f"url {url!r} leaves dependency '{name}'", kind="configuration")
    return url


def resolve(
    config: Config,
    breakers: BreakerRegistry | None,
    dependency: str | None,
    path: str,
    *,
    flow_id: str,
    institution_id: str,
    timeout: float | None = None,
) -> Target:
    """Where a node's request for ``path`` goes: on ``dependency`` when named, else
    ``path`` is a plain URL. ``timeout`` is the node's own, if it sets one.

    The node runs in the flow stored as ``flow_id`` for ``institution_id``: a
    dependency that does not serve them raises :class:`AccessDenied` before anything
    of it (its URL, its secret headers) is used (:mod:`trilha.core.tenancy`)."""
    allowed = tuple(config.http.allow_private)
    max_bytes = config.http.max_response_bytes
    if dependency is None:
        return Target(path, timeout or config.http.default_timeout_seconds, max_bytes, allowed)
    dep = declared(config, dependency)
    denied = dependency_denial(
        dependency, dep.institutions, flow_id=flow_id, institution_id=institution_id
    )
    if denied is not None:
        raise AccessDenied(denied, dependency=dependency)
    return Target(
        url=join_url(dep, dependency, path),
        timeout=timeout or dep.timeout_seconds,
        max_bytes=max_bytes,
        allowed_hosts=(*allowed, urlsplit(dep.base_url).hostname or ""),
        headers=dep.resolved_headers(dependency),
        dependency=dependency,
        breaker=None if breakers is None else breakers.get(dependency, dep.breaker.settings()),
        institution_id=institution_id,
        idempotency_header=dep.idempotency_header,
        idempotent=dep.idempotent,
    )


class CallingNode(Protocol):
    """A node that calls a dependency (or a plain URL): ``http``, ``ai``."""

    @property
    def dependency(self) -> str | None: ...
    @property
    def url(self) -> str: ...
    @property
    def timeout_seconds(self) -> float | None: ...


def node_target(
    node: CallingNode, ctx: StepContext, variables: Mapping[str, Any] | None = None
) -> Target:
    """:func:`resolve` for a node: its ``url`` template rendered with the variables
    (``variables`` when given, such as the step's with ``sys``, else the execution's)."""
    return resolve(
        ctx.config,
        ctx.breakers,
        node.dependency,
        render_url(
            node.url, ctx.variables if variables is None else variables, ctx.budget("the url")
        ),
        flow_id=ctx.flow.id,
        institution_id=ctx.institution_id,
        timeout=node.timeout_seconds,
    )


#: the codings asked for are the ones :class:`_Inflater` undoes within the cap (left to
#: itself httpx would also ask for br and zstd when their packages are installed)
_ACCEPT_ENCODING: Final = "gzip, deflate"
#: the most one step of decoding may produce: a 64 KiB piece of a gzip bomb would
#: otherwise inflate to 64 MiB at once, whatever the cap
_PIECE: Final = 65_536
#: a health answer is its status; its body is read, within this, only to end the exchange
PROBE_MAX_BYTES: Final = 65_536


@dataclass(frozen=True, slots=True)
class Reply:
    """A dependency's answer with its body read, decoded and within the cap; named like
    httpx's ``Response`` so that the nodes read it the same way."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    encoding: str = "utf-8"

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding, errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class DependencyClient:
    """An HTTP client made on first use, and calls under a dependency's breaker.

    The client is :func:`trilha.netguard.guarded_client`: one per processor, so
    shared by every institution's executions in the process, and therefore keeping
    nothing of one call for the next (no cookies; connections only to the address
    checked for the call). Processors that call dependencies derive from it; the
    registry closes them (``aclose``) when the process stops. ``verify`` is for tests
    that bring their own certificate authority.
    """

    def __init__(self, *, verify: ssl.SSLContext | bool = True) -> None:
        self._client: httpx.AsyncClient | None = None
        self._verify = verify

    def http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = guarded_client(verify=self._verify)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(
        self,
        target: Target,
        method: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
    ) -> Reply:
        """Make the request to the address checked for it and read the answer within
        ``target.max_bytes``; an answer of 400 or more raises NodeError (see the module).
        ``idempotency_key`` goes in ``target.idempotency_header`` unless that is empty;
        a header of the same name in ``headers`` (the node's own) wins."""
        what = f"{method} {target.url}"
        breaker = target.breaker
        epoch = 0
        if breaker is not None:
            if not breaker.allow():
                raise DependencyUnavailable(
                    f"dependency '{target.dependency}' is unavailable (circuit open)",
                    dependency=target.dependency,
                    retry_at=breaker.retry_at(),
                    request=what,
                )
            epoch = breaker.epoch
        merged = httpx.Headers({"accept-encoding": _ACCEPT_ENCODING})
        merged.update(target.headers)
        if idempotency_key is not None and target.idempotency_header:
            merged[target.idempotency_header] = idempotency_key
        merged.update(headers or {})
        # the request's CLIENT span; its traceparent goes out in ``merged``
        span = (
            tracing.begin_client(method, target.url, target.dependency, merged)
            if tracing.active
            else None
        )
        progress = _Progress()
        began = time.perf_counter()
        try:
            try:
                # one bound for all of it: resolving, connecting and reading every byte
                async with asyncio.timeout(target.timeout):
                    destination = await check_url(target.url, target.allowed_hosts)
                    with pinned(destination):
                        reply = await self._exchange(target, method, merged, json, what, progress)
            except (TimeoutError, httpx.TimeoutException) as exc:
                raise NodeTimeout(
                    f"{what} took longer than {target.timeout:g}s",
                    kind="timeout",
                    sent=progress.sent,
                ) from exc
            except httpx.HTTPError as exc:
                raise NodeError(
                    f"{what} failed: {exc}", kind="connection", sent=progress.sent
                ) from exc
        except (NodeError, LimitExceeded) as exc:
            exc.details.setdefault("request", what)
            _record(target, epoch, exc.details, str(exc), time.perf_counter() - began)
            if span is not None:
                tracing.end_client(span, None, exc)
            raise
        except BaseException as exc:  # cancelled: no verdict on the dependency
            if breaker is not None:
                breaker.release(epoch)
            if span is not None:
                tracing.end_client(span, None, exc)
            raise
        status = reply.status_code
        if span is not None:
            tracing.end_client(span, status)
        failure = None
        if status >= 400:
            failure = NodeError(
                f"{what} answered {status}",
                status=status,
                retry_after=reply.headers.get("retry-after"),
                request=what,
            )
        details = {"status": status, "request": what}
        _record(target, epoch, details, str(failure or ""), time.perf_counter() - began)
        if failure is not None:
            raise failure
        return reply

    async def _exchange(
        self,
        target: Target,
        method: str,
        headers: httpx.Headers,
        json: Any,
        what: str,
        progress: _Progress,
    ) -> Reply:
        """One request, its answer streamed: the body of an error status is not read."""
        async with self.http().stream(
            method,
            target.url,
            headers=headers,
            json=json,
            timeout=target.timeout,
            extensions={"trace": progress},
        ) as response:
            status = response.status_code
            body = b"" if status >= 400 else await _read_capped(response, target.max_bytes, what)
            return Reply(status, response.headers, body, response.encoding or "utf-8")


class _Progress:
    """How far a request got, from httpcore's trace events: ``sent`` once its headers
    began to go out on a connection (HTTP/1.1 or HTTP/2), after which a failure may
    have left it applied. Before that (resolving, connecting, the TLS handshake, a
    connection refused or timed out, waiting for a pooled connection) the service
    cannot have seen it. Kept per call, so a failure is told by what happened to it
    rather than by the exception's type, which says nothing for a whole-call timeout."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = False

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        if event.endswith(".send_request_headers.started"):
            self.sent = True


async def _read_capped(response: httpx.Response, limit: int, what: str) -> bytes:
    """The body, decoded, or LimitExceeded as soon as it passes ``limit`` bytes, as
    sent or as decoded: nothing larger is ever held or inflated."""

    def too_large() -> LimitExceeded:
        return LimitExceeded(
            f"{what}: the answer is larger than {limit} bytes (max_response_bytes)",
            status=response.status_code,
            limit="max_response_bytes",
            max_bytes=limit,
        )

    layers = _inflaters(response.headers)
    declared = response.headers.get("content-length", "")
    if not layers and declared.isdigit() and int(declared) > limit:
        raise too_large()  # said up front: not a byte of it is read
    body = bytearray()
    sent = 0
    async for chunk in response.aiter_raw():
        sent += len(chunk)
        if sent > limit:
            raise too_large()
        for piece in _decode(layers, chunk):
            body += piece
            if len(body) > limit:
                raise too_large()
    return bytes(body)


class _Inflater:
    """One content coding (gzip or deflate) undone at most :data:`_PIECE` bytes at a
    time, whatever the compression ratio; bytes after the end of the stream are dropped."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        gzip = coding in ("gzip", "x-gzip")
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if gzip else zlib.MAX_WBITS)
        #: deflate comes zlib-wrapped (RFC 9110) or, from some servers, raw
        self._may_be_raw = not gzip

    def feed(self, data: bytes) -> Iterator[bytes]:
        while not self._zlib.eof:
            try:
                piece = self._zlib.decompress(data, _PIECE)
            except zlib.error as exc:
                if self._may_be_raw:
                    self._may_be_raw = False
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise httpx.DecodingError(f"cannot decode the {self.coding} body: {exc}") from exc
            self._may_be_raw = False
            data = self._zlib.unconsumed_tail
            if piece:
                yield piece
            if not data and len(piece) < _PIECE:
                return  # all input consumed and nothing more held back


def _inflaters(headers: httpx.Headers) -> list[_Inflater]:
    """The decoders of a ``Content-Encoding``, outermost first; codings other than
    gzip and deflate are left as they are, as httpx leaves them."""
    codings = [c.strip().lower() for c in headers.get("content-encoding", "").split(",")]
    return [_Inflater(c) for c in reversed(codings) if c in ("gzip", "x-gzip", "deflate")]


def _decode(layers: Sequence[_Inflater], data: bytes) -> Iterator[bytes]:
    if not layers:
        yield data
        return
    for piece in layers[0].feed(data):
        yield from _decode(layers[1:], piece)


def _record(
    target: Target,
    epoch: int,
    details: Mapping[str, Any],
    message: str,
    latency: float,
) -> None:
    """Tell the breaker how the call went: an answer (whatever its status) or no answer
    (a timeout, a connection error); a call refused on this side (a blocked address, a
    bad configuration) tells nothing about the dependency and only frees its slot."""
    breaker = target.breaker
    if breaker is None:
        return
    request = details.get("request")
    call = call_of(
        details.get("kind"),
        details.get("status"),
        request if isinstance(request, str) else None,
        message,
        latency,
        target.institution_id,
    )
    if call is None:
        breaker.release(epoch)
    else:
        breaker.record(call, epoch)


async def probe(
    dep: DependencyConfig,
    client: DependencyClient,
    *,
    name: str = "?",
    breaker: CircuitBreaker | None = None,
) -> bool:
    """Whether the dependency is healthy: ``GET health_url`` answers 2xx.

    Without a health URL there is nothing to ask, so the answer is ``True`` and
    the next real call, let through by the half-open breaker, is the probe.
    The call goes through ``client`` like a node's (pinned address, no cookies,
    a capped body). A healthy answer closes ``breaker`` when one is given, whatever
    its probes said (the health URL speaks for the whole service). Never raises.
    """
    if dep.health_url is None:
        return True
    try:
        target = Target(
            url=join_url(dep, name, dep.health_url),
            timeout=dep.timeout_seconds,
            max_bytes=PROBE_MAX_BYTES,
            allowed_hosts=(urlsplit(dep.base_url).hostname or "",),
            headers=dep.resolved_headers(name),
            dependency=name,
        )
        reply = await client.send(target, "GET")
    except TrilhaError:
        return False
    healthy = 200 <= reply.status_code < 300
    if healthy and breaker is not None:
        breaker.healthy(f"GET {target.url}", reply.status_code)
    return healthy
