"""OpenTelemetry traces of turns, nodes, API requests and ``http`` calls (``[tracing]``).

This is the one module that imports OpenTelemetry, and only when ``[tracing] endpoint``
is set (the ``otel`` extra: ``pip install 'trilha[otel]'``): trilha runs without it,
and a process told to trace without it refuses to start, naming the setting and the
extra. Until :func:`start` (or :func:`install`) runs, :data:`active` is false and every
caller checks that one global before doing anything else, so a process that does not
trace pays one attribute read per node, not a span.

What is traced, by OpenTelemetry's semantic conventions:

* ``trilha.turn`` (INTERNAL): one worker's turn of one execution, from its claim until
  it waits or ends; ``trilha.outcome`` is the state it left the execution in;
* ``trilha.node {type}`` (INTERNAL), a child of its turn: one node's run, ``trilha.outcome``
  ``ok`` or ``error`` (status ERROR, ``error.type`` the failure's kind);
* the ``http`` and ``ai`` nodes' requests (CLIENT, named by the method), children of their
  node, whose W3C ``traceparent`` header carries the span on, so the dependency's own
  spans join the trace;
* each API request (SERVER, ``{method} {route}``), which joins the trace of a request
  that arrives with a ``traceparent`` (:class:`trilha.api.traced.ServerSpans`).

A turn runs later than the request that caused it, in whatever worker claims it, and a
conversation lasts days: its turns are traces of their own, never children of a request
that answered long ago. An execution started while a span is current (``POST
/v1/executions``) keeps that span's ``traceparent`` in its ``meta``, and its first turn
carries a span *link* to it: the trace of the request shows which turn it started,
without holding the request's trace open for the conversation's life.

Attributes are in the ``trilha.`` namespace and never hold what the contact said, their
phone, CPF or a secret: values pass through :func:`~trilha.observability.masking.mask_text`
and URLs lose their user and password. Spans leave through a bounded batch queue on a
thread of their own: a collector that is slow or away never slows or fails a turn
(spans beyond the queue are dropped), and :func:`shutdown` flushes what is left.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

from trilha.errors import ConfigError, TrilhaError
from trilha.observability.masking import mask_text

if TYPE_CHECKING:
    from trilha.config import TracingConfig
    from trilha.core.execution import Execution
    from trilha.core.flow import Flow, NodeBase

__all__ = [
    "EXTRA",
    "TRACE_META",
    "active",
    "begin_client",
    "begin_node",
    "begin_server",
    "begin_turn",
    "current_ids",
    "current_traceparent",
    "end_client",
    "end_node",
    "end_server",
    "end_turn",
    "error_type",
    "install",
    "shutdown",
    "start",
]

#: how to install what tracing needs
EXTRA: Final = "pip install 'trilha[otel]'"
#: the execution ``meta`` key keeping the ``traceparent`` of the span that started it
TRACE_META: Final = "traceparent"

#: the one check every caller makes first: whether spans are made at all
active: bool = False
_tracer: Any = None
_provider: Any = None
_propagator: Any = None
#: ``opentelemetry.trace`` and ``opentelemetry.context``, imported by :func:`install`
_trace: Any = None
_context: Any = None
#: the provider is ours to shut down (made by :func:`start`, not handed in by a test)
_owned = False


# starting and stopping ------------------------------------------------------------------


def start(config: TracingConfig) -> bool:
    """Export spans to ``config.endpoint`` over OTLP/HTTP; ``False`` (and nothing done)
    when no endpoint is set. Without the ``otel`` extra a set endpoint is a
    :class:`ConfigError` naming it and the extra."""
    global _owned
    if config.endpoint is None:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError as exc:
        raise ConfigError(
            f"tracing.endpoint is set ({config.endpoint}) but OpenTelemetry is not"
            f" installed: {EXTRA}, or remove endpoint from [tracing]"
        ) from exc
    from trilha import __version__

    exporter = OTLPSpanExporter(
        endpoint=config.endpoint,
        headers=config.resolved_headers(),
        timeout=config.timeout_seconds,
    )
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": config.service_name, "service.version": __version__}
        ),
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
        shutdown_on_exit=False,  # shutdown() flushes, in the order the process stops
    )
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            max_queue_size=config.max_queue_spans,
            max_export_batch_size=min(512, config.max_queue_spans),
            export_timeout_millis=int(config.timeout_seconds * 1000),
        )
    )
    install(provider)
    _owned = True
    return True


def install(provider: Any) -> None:
    """Make spans through ``provider`` (an OpenTelemetry SDK ``TracerProvider``): what
    :func:`start` does with its own; a test hands in one with an in-memory exporter."""
    global active, _tracer, _provider, _propagator, _owned, _trace, _context
    from opentelemetry import context, trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from trilha import __version__

    _trace, _context = trace, context
    _provider = provider
    _tracer = provider.get_tracer("trilha", __version__)
    _propagator = TraceContextTextMapPropagator()
    _owned = False
    active = True


def shutdown() -> None:
    """Stop making spans; export what is queued (within the export timeout) when the
    provider is :func:`start`'s own. Safe to call when tracing never started."""
    global active, _tracer, _provider, _propagator, _owned
    provider, owned = _provider, _owned
    active, _tracer, _provider, _propagator, _owned = False, None, None, None, False
    if provider is not None and owned:
        provider.shutdown()


# what is current --------------------------------------------------------------------------


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span, in W3C hex, for a log line; ``None``
    when no span is current (or tracing is off)."""
    if not active:
        return None
    context = _trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return _trace.format_trace_id(context.trace_id), _trace.format_span_id(context.span_id)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, ``None`` when there is none."""
    if not active:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


# attributes -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4_096)
def _text(value: str) -> str:
    """An id as an attribute, masked as the logs mask it (an id may be a phone number);
    remembered, as the same institution, flow and node ids come back at every step."""
    return mask_text(value)


def _execution(ex: Execution) -> dict[str, Any]:
    return {
        "trilha.execution": ex.id,
        "trilha.institution": _text(ex.institution_id),
        "trilha.flow": _text(ex.flow_id),
        "trilha.flow.version": ex.flow_version,
    }


def error_type(error: Mapping[str, Any] | None, exc: BaseException | None = None) -> str:
    """A failure's kind, low-cardinality as ``error.type`` wants: the described error's
    ``kind`` (``timeout``, ``connection``, ``limit``...), else its exception's type."""
    if error is not None:
        details = error.get("details")
        kind = error.get("kind") or (details.get("kind") if isinstance(details, dict) else None)
        return str(kind or error.get("type") or "error")
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, TrilhaError):
        return str(exc.details.get("kind") or type(exc).__name__)
    return type(exc).__name__ if exc is not None else "error"


def _failed(span: Any, kind: str) -> None:
    span.set_attribute("error.type", kind)
    span.set_status(_trace.Status(_trace.StatusCode.ERROR, kind))


# turns and nodes ----------------------------------------------------------------------------


class _Traced:
    """A span made current, to be ended (and the context restored) by its ``end_*``."""

    __slots__ = ("span", "token")

    def __init__(self, span: Any, token: object) -> None:
        self.span = span
        self.token = token

    def close(self) -> None:
        _context.detach(self.token)
        self.span.end()


def _current(span: Any) -> _Traced:
    return _Traced(span, _context.attach(_trace.set_span_in_context(span)))


def begin_turn(ex: Execution) -> _Traced:
    """The span of the turn ``ex`` starts now, current until :func:`end_turn`."""
    attributes = _execution(ex)
    if ex.current_node_id is not None:
        attributes["trilha.node.id"] = _text(ex.current_node_id)
    links = []
    started_by = ex.meta.get(TRACE_META) if ex.step_seq == 0 else None
    if isinstance(started_by, str):
        parent = _trace.get_current_span(_propagator.extract({"traceparent": started_by}))
        if parent.get_span_context().is_valid:
            links.append(_trace.Link(parent.get_span_context(), {"trilha.link": "started_by"}))
    span = _tracer.start_span("trilha.turn", attributes=attributes, links=links)
    return _current(span)


def end_turn(traced: _Traced, ex: Execution, failure: str | None = None) -> None:
    """End a turn's span: ``trilha.outcome`` is the state the turn left ``ex`` in (and
    ``trilha.execution.outcome`` how it ended, if it did); ``failure``: the turn did not
    commit (``lease_lost``, ``store``, ``internal``)."""
    span = traced.span
    span.set_attribute("trilha.outcome", failure or ex.status.value)
    if ex.outcome is not None and failure is None:
        span.set_attribute("trilha.execution.outcome", ex.outcome.value)
    if failure is not None or ex.status.value == "failed":
        _failed(span, failure or error_type(ex.error))
    traced.close()


def begin_node(ex: Execution, flow: Flow, node: NodeBase, attempt: int) -> _Traced:
    """The span of ``node``'s run, current while its processor runs (an ``http`` call
    made in it is its child)."""
    attributes = _execution(ex)
    attributes["trilha.flow"] = _text(flow.id)
    attributes["trilha.flow.version"] = flow.version
    attributes["trilha.node.type"] = _text(node.type)
    attributes["trilha.node.id"] = _text(node.id)
    attributes["trilha.attempt"] = attempt
    return _current(_tracer.start_span(f"trilha.node {_text(node.type)}", attributes=attributes))


def end_node(
    traced: _Traced, error: Mapping[str, Any] | None, exc: BaseException | None = None
) -> None:
    """End a node's span: ``ok``, or ``error`` with status ERROR and its kind (``exc``:
    what cut the run short without a described error, a lost lease or a cancellation)."""
    span = traced.span
    if error is None and exc is None:
        span.set_attribute("trilha.outcome", "ok")
    else:
        span.set_attribute("trilha.outcome", "error")
        _failed(span, error_type(error, exc))
    traced.close()


# an http request --------------------------------------------------------------------------


def _safe_url(url: str) -> str:
    """``url.full`` as the semantic conventions want it: without user and password, and
    masked as the logs mask (a CPF in the path, ``token=...`` in the query)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return mask_text(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")))


def begin_client(
    method: str, url: str, dependency: str | None, headers: MutableMapping[str, str]
) -> Any:
    """Start the CLIENT span of a request to ``url`` (a child of the current span, the
    node's) and put its ``traceparent`` in ``headers``, so the service joins the trace."""
    parts = urlsplit(url)
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "server.address": parts.hostname or "",
        "url.full": _safe_url(url),
    }
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    if port is not None:
        attributes["server.port"] = port
    if dependency is not None:
        attributes["trilha.dependency"] = _text(dependency)
    span = _tracer.start_span(method, kind=_trace.SpanKind.CLIENT, attributes=attributes)
    _propagator.inject(headers, context=_trace.set_span_in_context(span))
    return span


def end_client(span: Any, status: int | None, exc: BaseException | None = None) -> None:
    """End a request's span: its status code (400 and above are errors, for a client),
    or the failure that left it without an answer."""
    if status is not None:
        span.set_attribute("http.response.status_code", status)
        if status >= 400:
            _failed(span, str(status))
    else:
        _failed(span, error_type(None, exc))
    span.end()


# an API request ---------------------------------------------------------------------------


def begin_server(method: str, path: str, scheme: str, headers: Mapping[str, str]) -> _Traced:
    """The SERVER span of an API request, current while it is answered; a request with
    a ``traceparent`` (and ``tracestate``) joins its caller's trace."""
    parent = _propagator.extract(headers)
    attributes = {
        "http.request.method": method,
        "url.path": mask_text(path),
        "url.scheme": scheme,
    }
    span = _tracer.start_span(
        method, context=parent, kind=_trace.SpanKind.SERVER, attributes=attributes
    )
    return _current(span)


def end_server(traced: _Traced, method: str, route: str | None, status: int | None) -> None:
    """End an API request's span, named ``{method} {route}`` once the route is known;
    a 5xx answer (or none) is an error, a 4xx is the caller's and is not."""
    span = traced.span
    if route is not None:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
    if status is not None:
        span.set_attribute("http.response.status_code", status)
    if status is None or status >= 500:
        _failed(span, str(status or "no_response"))
    traced.close()
