"""The API's SERVER spans (``[tracing]``): each request, joined to its caller's trace.

The outermost layer of the app, so a request refused at the door (401, 413) is
traced too. With tracing off it hands the request on and does nothing else. The
span is named after the route (``/v1/executions/{executionId}``, never the path
with its ids) once the answer is given: the router leaves the route it matched in
the request's scope, which every layer passes on as it is.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from trilha.observability import tracing

#: the only request headers the W3C trace context reads
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})


class ServerSpans:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not tracing.active or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET"))
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers") or ()
            if name in _TRACE_HEADERS
        }
        traced = tracing.begin_server(
            method, str(scope.get("path", "")), str(scope.get("scheme", "http")), carrier
        )
        status: int | None = None

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            tracing.end_server(traced, method, self._route(scope), status)

    @staticmethod
    def _route(scope: Scope) -> str | None:
        """The route's template, which the router left in the scope once it matched."""
        path = getattr(scope.get("route"), "path", None)
        return path if isinstance(path, str) else None
