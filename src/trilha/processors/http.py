"""``http``: call a declared dependency or a public URL, save the JSON reply.

The call is the one effect a flow has on the outside world besides messages,
so the engine commits the steps before it and holds the lease by heartbeat
while it runs; a crash mid-call re-runs the call from the checkpoint (at
least once), which is why dependencies should treat trilha's requests as
retryable.

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

from typing import Any, ClassVar

from trilha.core.flow import HttpNode
from trilha.core.templates import render, render_value
from trilha.processors.base import StepContext, StepResult
from trilha.resilience.dependencies import DependencyClient, node_target


class HttpProcessor(DependencyClient):
    node_type: ClassVar[str] = "http"
    node_model: ClassVar[type[HttpNode]] = HttpNode
    effectful: ClassVar[bool] = True

    async def run(self, node: HttpNode, ctx: StepContext) -> StepResult:
        reply = await self.send(
            node_target(node, ctx),
            node.method,
            headers={
                k: render(v, ctx.variables, ctx.budget(f"header {k}"))
                for k, v in node.headers.items()
            },
            json=render_value(node.body, ctx.variables, ctx.budget("the request body"))
            if node.body is not None
            else None,
        )
        data: Any
        try:
            data = reply.json() if reply.content else None
        except ValueError:
            data = reply.text
        variables = {node.save_as: data} if node.save_as else {}
        return StepResult(variables=variables, output={"status": reply.status_code})
