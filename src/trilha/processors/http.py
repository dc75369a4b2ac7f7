"""``http``: call a declared dependency or a public URL, save the JSON reply.

The call is the one effect a flow has on the outside world besides messages,
so the engine commits the steps before it and holds the lease by heartbeat
while it runs; a crash mid-call re-runs the call from the checkpoint (at
least once), which is why dependencies should treat trilha's requests as
retryable.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from trilha.core.flow import HttpNode
from trilha.core.templates import render, render_url, render_value
from trilha.errors import NodeError, NodeTimeout
from trilha.netguard import check_url
from trilha.processors.base import StepContext, StepResult


class HttpProcessor:
    node_type: ClassVar[str] = "http"
    node_model: ClassVar[type[HttpNode]] = HttpNode
    effectful: ClassVar[bool] = True

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run(self, node: HttpNode, ctx: StepContext) -> StepResult:
        config = ctx.config
        path = render_url(node.url, ctx.variables)
        headers: dict[str, str] = {}
        allowed = list(config.http.allow_private)
        timeout = node.timeout_seconds or config.http.default_timeout_seconds
        if node.dependency is not None:
            dep = config.dependencies.get(node.dependency)
            if dep is None:
                raise NodeError(
                    f"dependency '{node.dependency}' is not declared in the configuration"
                )
            url = (
                path if urlsplit(path).scheme else f"{dep.base_url.rstrip('/')}/{path.lstrip('/')}"
            )
            if urlsplit(url).netloc != urlsplit(dep.base_url).netloc:
                raise NodeError(f"url {url!r} leaves dependency '{node.dependency}'")
            headers.update(dep.resolved_headers())
            allowed.append(urlsplit(dep.base_url).hostname or "")
            timeout = node.timeout_seconds or dep.timeout_seconds
        else:
            url = path
        headers.update({k: render(v, ctx.variables) for k, v in node.headers.items()})
        await check_url(url, allowed)
        body = render_value(node.body, ctx.variables) if node.body is not None else None
        try:
            async with asyncio.timeout(timeout):
                response = await self._http().request(
                    node.method, url, headers=headers, json=body, timeout=timeout
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise NodeTimeout(f"{node.method} {url} took longer than {timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise NodeError(f"{node.method} {url} failed: {exc}", kind="connection") from exc
        if len(response.content) > config.http.max_response_bytes:
            raise NodeError(
                f"{node.method} {url}: response larger than {config.http.max_response_bytes} bytes"
            )
        if response.status_code >= 400:
            raise NodeError(
                f"{node.method} {url} answered {response.status_code}",
                status=response.status_code,
                retry_after=response.headers.get("retry-after"),
            )
        data: Any
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = response.text
        variables = {node.save_as: data} if node.save_as else {}
        return StepResult(variables=variables, output={"status": response.status_code})
