"""``trilha serve``: the API, the workers and the dispatcher in one process.

The app is built by :func:`create_app` from :class:`ServeOptions`; its lifespan
opens the store (migrating it), publishes the flows of ``--flows DIR`` as shared
flows, starts ``--workers`` worker loops (the first one also runs the outbox
dispatcher, the sweeper and the alert rules), the event hub with the gate that
bounds open streams, and ``/metrics`` on ``[metrics] listen`` when set (else the
API answers it to an admin key); it also routes the event loop's own errors (a
failed ``accept()`` when file descriptors run out) through the log, at most one
line a second for each repeated one. On shutdown
(SIGTERM, Ctrl-C) stops claiming, lets in-flight steps finish or release their
leases, and closes the store. Routes find everything on ``app.state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import trilha
from trilha.api import openapi, problems
from trilha.api.auth import KeyRing, RateLimiter, identify
from trilha.api.events import EventHub, StreamGate, on_exit_signal, stream_budget
from trilha.api.problems import Problem
from trilha.api.traced import ServerSpans
from trilha.channels.memory import MemoryChannel
from trilha.config import AlertsConfig, Config, load_config
from trilha.engine.bulk import BulkRunner
from trilha.engine.engine import Engine
from trilha.engine.worker import Worker
from trilha.errors import ConfigError, TrilhaError
from trilha.observability.logging import get_logger, throttle_loop_errors
from trilha.observability.metrics import Listener
from trilha.processors.registry import Processors
from trilha.runtime import (
    Runtime,
    load_folder,
    publish_all,
    runtime,
    warn_unowned_dependencies,
    warn_unsigned_webhooks,
)

log = get_logger("trilha.api")

#: how often the metrics' store gauges (queue depth, executions by state) are read
STORE_GAUGES_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class ServeOptions:
    store_url: str | None = None
    config_path: Path | None = None
    flows_dir: Path | None = None
    #: worker loops in this process; 0 serves the API only (workers run elsewhere)
    workers: int = 1


@dataclass(slots=True)
class ServeState:
    """What the routes share: the running parts and the tasks that keep them busy."""

    options: ServeOptions
    config: Config
    runtime: Runtime
    engines: list[Engine]
    #: the worker loops of this process (empty with ``--workers 0``)
    workers: list[Worker] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = field(default_factory=time.time)
    #: the live event streams' one reader of the trail (set once the lifespan started)
    hub: EventHub | None = None
    #: the bounds on open event streams, per key and per process (set with the hub)
    streams: StreamGate | None = None

    def wake(self) -> None:
        """Work arrived through the API (a start, a reply): the loops claim it now
        rather than at their next poll, and live streams look for it at once."""
        for worker in self.workers:
            worker.wake()
        if self.hub is not None:
            self.hub.wake()

    def workers_alive(self) -> bool:
        """Every worker loop started is still running (vacuously true with none)."""
        return all(not t.done() for t in self.tasks)


def state_of(app: Any) -> ServeState:
    state: ServeState = app.state.trilha
    return state


def _json_or_absent(headers: dict[bytes, bytes]) -> bool:
    """Whether a body's content-type is JSON (``application/json``, ``…+json``), or not
    given at all (then it is read as JSON, as it always was)."""
    given = headers.get(b"content-type")
    if given is None:
        return True
    media = given.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


#: ``/v1`` paths a caller reaches without an API key: Meta's webhook, which cannot send
#: one (it is checked by its signature and verify token instead)
UNKEYED: frozenset[str] = frozenset({"/v1/channels/whatsapp/webhook"})


def _keyed(path: str, metrics_here: bool) -> bool:
    """Whether a path's routes all need an API key: the whole ``/v1`` API but
    :data:`UNKEYED`, and ``/metrics`` when the API answers it (not when ``[metrics]
    listen`` does)."""
    if path in UNKEYED:
        return False
    return path == "/v1" or path.startswith("/v1/") or (metrics_here and path == "/metrics")


_JSON_TYPE = (b"content-type", b"application/json")


class Guard:
    """The outer edge of every request, in this order: 401 for a ``/v1`` request without
    a valid key (before anything of the request is read: a caller without a key learns
    nothing from how its body is judged), 413 for a body over the limit (whether it says
    its length or streams it), 415 for a body that says it is not JSON, 408 for a body
    that does not arrive within ``api.body_timeout_seconds`` of the request's start; and
    for a bug, a logged stack and a 500 problem document with an incident id (the client
    never sees a stack, the log gets it once).

    Every body is read here, within its bounds, and handed on whole: the framework's
    own parser would turn an error raised mid-read into a 400."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        body_seconds: float = 30.0,
        metrics_here: bool = True,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_seconds = body_seconds
        self.metrics_here = metrics_here

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _keyed(scope.get("path", ""), self.metrics_here):
            refusal = await _unauthenticated(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        writes = scope.get("method") in ("POST", "PUT", "PATCH")
        if writes and length not in (None, b"0") and not _json_or_absent(headers):
            await self._not_json(scope, receive, send, headers)
            return
        sent = length not in (None, b"0") or b"transfer-encoding" in headers
        if writes or sent:
            try:
                async with asyncio.timeout(self.body_seconds):
                    body = await self._read(receive)
            except TimeoutError:
                await self._too_slow(scope, receive, send)
                return
            if body is None:
                await self._too_large(scope, receive, send)
                return
            if body and not _json_or_absent(headers):
                await self._not_json(scope, receive, send, headers)
                return
            if body and b"content-type" not in headers:  # read as JSON, as said above; the
                # framework parses only a body that says it is (keys are no cookies: no CSRF)
                # in place: the outer layers read the route the router puts in it
                scope["headers"] = [*scope["headers"], _JSON_TYPE]
            receive = _replay(body, receive)
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception(
                "api.internal_error",
                path=scope.get("path"),
                method=scope.get("method"),
                incident=incident,
            )
            if not started:
                response = Problem(
                    500,
                    f"an internal error occurred; quote incident {incident} when reporting it",
                    kind="internal",
                ).response()
                await response(scope, receive, send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or ``None`` once it is over the limit."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)

    async def _not_json(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]
    ) -> None:
        given = headers.get(b"content-type", b"").decode("latin-1")
        response = Problem(
            415,
            f"the request body must be JSON (content-type: application/json), not {given!r}",
            kind="unsupported_media_type",
        ).response()
        await response(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        # the rest of the body is not read, but the connection stays open to take it: one
        # closed with bytes unread is reset, and the client may lose this answer. It has
        # ``api.header_timeout_seconds`` to finish (trilha.api.connections)
        response = Problem(
            413, f"the request body is over {self.max_bytes} bytes", kind="too_large"
        ).response()
        await response(scope, receive, send)

    async def _too_slow(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = Problem(
            408,
            f"the request body did not arrive within {self.body_seconds:g} s",
            kind="timeout",
            headers={"Connection": "close"},
        ).response()
        await response(scope, receive, send)


async def _unauthenticated(scope: Scope) -> ASGIApp | None:
    """The 401 (or, the store away, 503) answer for a request without a valid key."""
    try:
        await identify(Request(scope))
    except Problem as exc:
        problem = exc
    except TrilhaError as exc:
        problem = problems.from_error(exc)
    else:
        return None
    # its body, if any, is not read (see Guard._too_large)
    return problem.response()


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` that hands on ``body`` whole, then what the connection says next
    (a disconnect, which a live stream waits for)."""
    replayed = False

    async def buffered() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return buffered


def create_app(options: ServeOptions, *, config: Config | None = None) -> FastAPI:
    """The ASGI app; nothing is opened until its lifespan starts."""
    cfg = config or load_config(options.config_path)
    processors = Processors.from_entry_points()
    shared_flows = load_folder(options.flows_dir, processors) if options.flows_dir else []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # the terminal channel would print the bot's messages on the server's stdout;
        # served, they are read back through the API (transcript, events) instead
        channel = MemoryChannel() if cfg.channel.kind == "terminal" else None
        async with runtime(
            options.store_url,
            options.config_path,
            config=cfg,
            channel=channel,
            processors=processors,
            with_metrics=True,
        ) as rt:
            warn_unowned_dependencies(cfg)
            warn_unsigned_webhooks(cfg)
            await publish_all(rt, shared_flows)
            from trilha.api.routes.triggers import warn_unknown_flows  # routes import this

            await warn_unknown_flows(rt.store, cfg)
            engines = [rt.engine]
            state = ServeState(options, cfg, rt, engines)
            app.state.trilha = state
            inbound = None
            if cfg.channel.kind == "whatsapp":  # first: a secret not set stops nothing started
                from trilha.api.whatsapp_webhooks import WhatsAppInbound  # it imports this

                app.state.whatsapp = inbound = WhatsAppInbound.start(app, cfg)
            listener = _metrics_listener(cfg, rt)  # first: a port in use stops nothing started
            restore_loop_errors = throttle_loop_errors(asyncio.get_running_loop())
            state.hub = hub = EventHub(rt.store)
            await hub.start()
            # a live stream never ends by itself and uvicorn waits for open responses
            # before the lifespan shutdown: end the streams on SIGTERM itself
            restore_signals = on_exit_signal(hub.close)
            app.state.keys = keys = KeyRing(
                rt.store, RateLimiter(cfg.api.rate_limit_per_second, cfg.api.rate_limit_burst)
            )
            state.streams = streams = _stream_gate(cfg, keys)
            await streams.start()
            if options.workers > 0:
                state.workers.append(rt.worker)
                state.tasks.append(asyncio.create_task(rt.worker.run_forever(state.stop)))
            # only the first loop dispatches, sweeps and evaluates alerts
            quiet = cfg.model_copy(update={"alerts": AlertsConfig(enabled=False)})
            for _ in range(options.workers - 1):
                engine = Engine(
                    rt.store,
                    processors=processors,
                    config=quiet,
                    clock=rt.engine.clock,
                    metrics=rt.metrics,
                    renders=rt.engine.renders,
                    window_seconds=rt.engine.window_seconds,
                )
                engines.append(engine)
                worker = Worker(engine, None, sweep_interval_seconds=float("inf"))
                state.workers.append(worker)
                state.tasks.append(asyncio.create_task(worker.run_forever(state.stop)))
            state.tasks.append(asyncio.create_task(_store_gauges(state)))
            if cfg.retention.enabled():  # [retention]: ended executions erased past their days
                from trilha.engine.erasure import Eraser

                eraser = Eraser(rt.store, rt.operator, cfg, rt.engine.clock)
                state.tasks.append(asyncio.create_task(eraser.run_forever(state.stop)))
            if inbound is not None:  # Meta's webhook bodies, processed in the background
                state.tasks.append(asyncio.create_task(inbound.processor.run_forever(state.stop)))
            # bulk actions: those started here, and those a process that died left running
            app.state.bulk = bulk = BulkRunner.from_config(rt.store, rt.operator, cfg)
            state.tasks.append(asyncio.create_task(bulk.run_forever(state.stop)))
            log.info(
                "api.started",
                workers=options.workers,
                store=repr(rt.store),
                version=trilha.__version__,
            )
            try:
                yield
            finally:
                restore_signals()
                if listener is not None:
                    listener.close()
                await streams.stop()
                await hub.stop()
                state.stop.set()
                # in-flight steps finish (or their leases lapse and another worker
                # resumes them from the last checkpoint); nothing is cut mid-commit
                await asyncio.wait(state.tasks, timeout=cfg.engine.lease_seconds)
                for task in state.tasks:
                    task.cancel()
                await asyncio.gather(*state.tasks, return_exceptions=True)
                drawings = getattr(app.state, "drawings", None)
                if drawings is not None:
                    drawings.close()
                whatsapp = getattr(app.state, "whatsapp", None)
                if whatsapp is not None:
                    await whatsapp.processor.aclose()
                restore_loop_errors()
                log.info("api.stopped")

    app = FastAPI(
        title="trilha",
        version=trilha.__version__,
        summary="Durable, self-healing execution of conversational flows.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,  # served by trilha.api.routes.apidocs, with no CDN
        swagger_ui_oauth2_redirect_url=None,
        redoc_url=None,
        # FastAPI's own OpenTelemetry (on once a global provider exists) would record
        # requests unmasked, beside trilha's spans: trilha traces through ServerSpans only
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.options = options
    app.state.config = cfg
    problems.install(app)
    openapi.document(app)
    app.add_middleware(
        Guard,
        max_bytes=cfg.api.max_body_bytes,
        body_seconds=cfg.api.body_timeout_seconds,
        metrics_here=cfg.metrics.listen is None,
    )
    # outermost: a request refused at the door is traced too (nothing when tracing is off)
    app.add_middleware(ServerSpans)
    from trilha.api.routes import ROUTERS

    for router in ROUTERS:
        app.include_router(router)
    return app


def _stream_gate(cfg: Config, keys: KeyRing) -> StreamGate:
    """The gate of ``[api] max_streams_per_key`` and ``max_streams``, the latter lowered
    (and said so) when it would let streams take over half the file descriptors."""
    total = stream_budget(cfg.api.max_streams)
    if total < cfg.api.max_streams:
        log.warning(
            "api.max_streams_lowered",
            configured=cfg.api.max_streams,
            maxStreams=total,
            hint="raise the open files limit (ulimit -n) to allow more",
        )
    return StreamGate(per_key=cfg.api.max_streams_per_key, total=total, recheck=keys.still_valid)


def _metrics_listener(cfg: Config, rt: Runtime) -> Listener | None:
    """``/metrics`` on ``[metrics] listen``, when set; the API then does not answer it."""
    address = cfg.metrics.listen_address()
    if address is None or rt.metrics is None:
        return None
    try:
        listener = Listener(*address, rt.metrics)
    except OSError as exc:
        raise ConfigError(
            f"metrics.listen {cfg.metrics.listen}: cannot listen: {exc.strerror or exc}"
        ) from exc
    log.info("metrics.listening", url=listener.url)
    return listener


async def _store_gauges(state: ServeState) -> None:
    """Keep the queue and per-state gauges of ``/metrics`` fresh."""
    metrics = state.runtime.metrics
    if metrics is None:
        return
    while not state.stop.is_set():
        with contextlib.suppress(TrilhaError):
            await metrics.refresh_store(state.runtime.store, state.runtime.engine.clock.now())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(state.stop.wait(), STORE_GAUGES_SECONDS)
