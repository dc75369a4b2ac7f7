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
- timeouts, connection errors, 5xx, 408 and 429 count as failures of the
  dependency; any other answer (2xx-4xx: a 4xx is the caller's fault) as a
  success;
- failures raise :class:`~trilha.errors.NodeError` with the details the
  engine's classifier reads: ``status`` and ``retry_after`` for an HTTP answer,
  ``kind`` (``timeout`` / ``connection``) otherwise.

:func:`probe` asks a dependency's health URL whether it is back, for an
execution waiting for it (``waitForDependency``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import urlsplit

import httpx

from trilha.config import Config, DependencyConfig
from trilha.core.policies import TRANSIENT, classify
from trilha.core.templates import render_url
from trilha.errors import DependencyUnavailable, NodeError, NodeTimeout, TrilhaError
from trilha.netguard import check_url
from trilha.resilience.breaker import BreakerRegistry, CircuitBreaker

if TYPE_CHECKING:
    from trilha.processors.base import StepContext

#: the node-state key in which the engine keeps when an execution began waiting for
#: a dependency (``waitForDependency``), read by nodes that degrade once it is spent
WAIT_STARTED_KEY: Final = "dependencyWaitStartedAt"


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
    timeout: float | None = None,
) -> Target:
    """Where a node's request for ``path`` goes: on ``dependency`` when named, else
    ``path`` is a plain URL. ``timeout`` is the node's own, if it sets one."""
    allowed = tuple(config.http.allow_private)
    max_bytes = config.http.max_response_bytes
    if dependency is None:
        return Target(path, timeout or config.http.default_timeout_seconds, max_bytes, allowed)
    dep = declared(config, dependency)
    return Target(
        url=join_url(dep, dependency, path),
        timeout=timeout or dep.timeout_seconds,
        max_bytes=max_bytes,
        allowed_hosts=(*allowed, urlsplit(dep.base_url).hostname or ""),
        headers=dep.resolved_headers(dependency),
        dependency=dependency,
        breaker=None if breakers is None else breakers.get(dependency, dep.breaker.settings()),
    )


class CallingNode(Protocol):
    """A node that calls a dependency (or a plain URL): ``http``, ``ai``."""

    @property
    def dependency(self) -> str | None: ...
    @property
    def url(self) -> str: ...
    @property
    def timeout_seconds(self) -> float | None: ...


def node_target(node: CallingNode, ctx: StepContext) -> Target:
    """:func:`resolve` for a node: its ``url`` template rendered with the variables."""
    return resolve(
        ctx.config,
        ctx.breakers,
        node.dependency,
        render_url(node.url, ctx.variables),
        timeout=node.timeout_seconds,
    )


class DependencyClient:
    """An HTTP client made on first use, and calls under a dependency's breaker.

    Processors that call dependencies derive from it; the registry closes
    them (``aclose``) when the process stops.
    """

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    def http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
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
    ) -> httpx.Response:
        """Make the request; an answer of 400 or more raises NodeError (see the module)."""
        what = f"{method} {target.url}"
        await check_url(target.url, target.allowed_hosts)
        breaker = target.breaker
        if breaker is not None and not breaker.allow():
            raise DependencyUnavailable(
                f"dependency '{target.dependency}' is unavailable (circuit open)",
                dependency=target.dependency,
                retry_at=breaker.retry_at(),
            )
        try:
            try:
                async with asyncio.timeout(target.timeout):
                    response = await self.http().request(
                        method,
                        target.url,
                        headers={**target.headers, **(headers or {})},
                        json=json,
                        timeout=target.timeout,
                    )
            except (TimeoutError, httpx.TimeoutException) as exc:
                raise NodeTimeout(
                    f"{what} took longer than {target.timeout:g}s", kind="timeout"
                ) from exc
            except httpx.HTTPError as exc:
                raise NodeError(f"{what} failed: {exc}", kind="connection") from exc
        except NodeError as exc:
            _record(breaker, exc.details)
            raise
        except BaseException:  # cancelled: no verdict on the dependency
            if breaker is not None:
                breaker.release()
            raise
        status = response.status_code
        _record(breaker, {"status": status})
        if len(response.content) > target.max_bytes:
            raise NodeError(f"{what}: response larger than {target.max_bytes} bytes")
        if status >= 400:
            raise NodeError(
                f"{what} answered {status}",
                status=status,
                retry_after=response.headers.get("retry-after"),
            )
        return response


def _record(breaker: CircuitBreaker | None, details: Mapping[str, Any]) -> None:
    """Tell the breaker how the call went: transient failures count against the
    dependency, any other answer for it."""
    if breaker is None:
        return
    if classify("NodeError", status=details.get("status"), kind=details.get("kind")) in TRANSIENT:
        breaker.record_failure()
    elif details.get("status") is not None:
        breaker.record_success()
    else:
        breaker.release()


async def probe(
    dep: DependencyConfig,
    client: httpx.AsyncClient,
    *,
    name: str = "?",
    breaker: CircuitBreaker | None = None,
) -> bool:
    """Whether the dependency is healthy: ``GET health_url`` answers 2xx.

    Without a health URL there is nothing to ask, so the answer is ``True`` and
    the next real call, let through by the half-open breaker, is the probe.
    A healthy answer closes ``breaker`` when one is given. Never raises.
    """
    if dep.health_url is None:
        return True
    try:
        url = join_url(dep, name, dep.health_url)
        async with asyncio.timeout(dep.timeout_seconds):
            response = await client.get(
                url, headers=dep.resolved_headers(name), timeout=dep.timeout_seconds
            )
    except (TrilhaError, httpx.HTTPError, TimeoutError):
        return False
    healthy = response.is_success
    if healthy and breaker is not None:
        breaker.record_success()
    return healthy
