"""``http``: call a declared dependency or a public URL, save the JSON reply.

The call is the one effect a flow has on the outside world besides messages,
so the engine commits the steps before it and holds the lease by heartbeat
while it runs; a crash mid-call re-runs the call from the checkpoint (at
least once).

So that a service can apply it once, every request carries the step's
idempotency key (``<execution>:<seq>``), the same on every attempt and after a
crash, in the dependency's ``idempotency_header`` (``Idempotency-Key`` unless
renamed; ``""`` sends none). The node's templates (url, headers, body) read it as
``sys.idempotencyKey``.

A ``POST`` or ``PATCH`` whose answer was lost after the request went out (a
timeout, a connection cut mid-exchange) may have been applied: it is sent again
only when its dependency declares ``idempotent = true`` (it applies a key once)
or the node says ``"retryUnsafe": true``. Otherwise the node fails with
``kind = "ambiguous"``, which is never retried: the engine takes the node's
fallback and writes ``node.call_maybe_applied`` in the trail. A worker that dies
(or loses the execution) during the call leaves the same doubt: the engine
marks the attempt as begun before the request goes out, and the worker that
takes over runs the node as *interrupted*, which sends the call again (same key)
only on those same terms. A failure before
anything went out (a refused connection, a name that does not resolve) and an
answer saying the request was not applied (``503``, ``429``) are retried as
before, as is every ``GET``, ``PUT`` and ``DELETE``.

The answer is read as it arrives and the call aborted with ``kind = "limit"``
once it passes ``[http] max_response_bytes`` (counted after decompression), and
the connection goes to the address the address policy checked (see
:mod:`trilha.netguard`).

A call to a declared dependency goes through its circuit breaker (see
:mod:`trilha.resilience.dependencies`): while the breaker is open the node
raises :class:`~trilha.errors.DependencyUnavailable` without a request, and
the engine takes the node's fallback (``degraded``) or, with
``waitForDependency``, waits for the dependency to come back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from trilha.core.flow import HttpNode
from trilha.core.policies import ErrorKind, resend_is_safe
from trilha.core.templates import render, render_value
from trilha.errors import NodeError
from trilha.processors.base import StepContext, StepResult
from trilha.resilience.dependencies import DependencyClient, Target, node_target


class HttpProcessor(DependencyClient):
    node_type: ClassVar[str] = "http"
    node_model: ClassVar[type[HttpNode]] = HttpNode
    effectful: ClassVar[bool] = True

    async def run(self, node: HttpNode, ctx: StepContext) -> StepResult:
        key = ctx.idempotency_key
        variables = with_sys(ctx.variables, key)
        target = node_target(node, ctx, variables)
        if ctx.interrupted and not _resend_is_safe(node, target):
            raise NodeError(
                f"{node.method} {target.url}: a worker stopped during this call; it may have"
                " been applied, so it is not sent again (the dependency does not declare"
                " idempotent = true)",
                kind=ErrorKind.AMBIGUOUS.value,
                cause="interrupted",
                request=f"{node.method} {target.url}",
                sent=True,
                idempotency_key=key,
            )
        try:
            reply = await self.send(
                target,
                node.method,
                headers={
                    k: render(v, variables, ctx.budget(f"header {k}"))
                    for k, v in node.headers.items()
                },
                json=render_value(node.body, variables, ctx.budget("the request body"))
                if node.body is not None
                else None,
                idempotency_key=key,
            )
        except NodeError as exc:
            ambiguous = _ambiguous(node, target, exc, key)
            if ambiguous is None:
                raise
            raise ambiguous from exc
        data: Any
        try:
            data = reply.json() if reply.content else None
        except ValueError:
            data = reply.text
        variables = {node.save_as: data} if node.save_as else {}
        return StepResult(variables=variables, output={"status": reply.status_code})


def with_sys(variables: Mapping[str, Any], key: str | None) -> Mapping[str, Any]:
    """The variables the node's templates read: the execution's, and ``sys`` with the
    step's ``idempotencyKey``. ``sys`` is the engine's: a flow variable of that name is
    not seen here (its other fields, if it is an object, are)."""
    if key is None:
        return variables
    own = variables.get("sys")
    return {**variables, "sys": {**(own if isinstance(own, dict) else {}), "idempotencyKey": key}}


def _ambiguous(node: HttpNode, target: Target, exc: NodeError, key: str | None) -> NodeError | None:
    """The failure as ``kind = "ambiguous"`` when the request went out, its answer was
    lost and sending it again could apply it twice; ``None`` when it may be retried."""
    if exc.details.get("sent") is not True:
        return None  # an answer (a status), or nothing reached the service
    if _resend_is_safe(node, target):
        return None
    return NodeError(
        f"{exc}; the {node.method} may have been applied, so it is not sent again"
        " (the dependency does not declare idempotent = true)",
        kind=ErrorKind.AMBIGUOUS.value,
        cause=exc.details.get("kind"),
        request=exc.details.get("request"),
        sent=True,
        idempotency_key=key,
    )


def _resend_is_safe(node: HttpNode, target: Target) -> bool:
    return resend_is_safe(
        node.method, dependency_idempotent=target.idempotent, retry_unsafe=node.retry_unsafe
    )
