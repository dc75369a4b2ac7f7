"""``Idempotency-Key``: a retried POST gets the first answer again, not a second effect.

A platform that times out waiting for ``POST /v1/executions`` cannot tell whether
the execution was created; it retries with the same key and gets the same answer
(same status, same body, header ``Idempotent-Replayed: true``) instead of a
second execution or a 409 about the first one. The answer is kept in the store
(:meth:`~trilha.store.base.Store.remember_response`) for
``api.idempotency_hours``, so a retry that lands on another API process, or after
a restart, is answered the same.

* The key is scoped to the caller's institution, the institution the request acts on
  and the route (method and path template): two tenants' keys never meet, and one key
  may be used once per route. The route settles the institution it acts on (a
  foreign one is 404) *before* a kept answer is looked up, so a key never replays
  one institution's answer to a caller of another: an admin key acting for
  institution B and B's own key keep apart records even for the same key and body.
* The request is fingerprinted by its concrete path and its parsed body (so key
  order and whitespace do not matter): the same key with a different request
  answers 422 naming the header, since replaying an answer to another question
  would be wrong and running it would break the key's promise.
* What is remembered is what the route decided: its success and its 4xx refusals
  (a 409 stays a 409 for that key). A 5xx, a 429 or any answer with Retry-After is
  transient and not kept, so a retry really is tried again; neither are answers
  given before the route ran (401, 403, a body that fails validation).
* Two concurrent requests with one key in one process are serialised, so the second
  replays the first; across processes the store keeps the first answer written and
  every later replay agrees with it.

Without the header a route runs as usual (messages are still deduplicated by
``messageId``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from trilha.api.app import state_of
from trilha.api.auth import Principal
from trilha.api.problems import MEDIA_TYPE, Problem, from_error
from trilha.errors import TrilhaError
from trilha.observability.logging import get_logger
from trilha.store.base import StoredResponse

log = get_logger("trilha.api")

HEADER = "Idempotency-Key"
#: a key is an opaque token of the client's (a UUID, typically)
MAX_KEY_LENGTH = 255
#: how often one process deletes the records older than ``api.idempotency_hours``
PURGE_EVERY_SECONDS = 3_600.0
#: answers that are not kept: a retry of these should be tried again
_TRANSIENT = frozenset({408, 425, 429})

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=r"^[\x21-\x7e]+$",
        description=(
            "Makes a retry safe: a repeated key answers the first request's status and body"
            " (kept for `api.idempotency_hours`); the same key with a different request"
            " answers 422."
        ),
    ),
]


@dataclass(slots=True)
class _Keeper:
    """Per-app bookkeeping: locks of the keys in flight and when records were purged."""

    locks: dict[str, tuple[asyncio.Lock, int]] = field(default_factory=dict)
    purged_at: float = 0.0

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        lock, users = self.locks.get(name, (asyncio.Lock(), 0))
        self.locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self.locks[name]
            if users <= 1:
                del self.locks[name]
            else:
                self.locks[name] = (lock, users - 1)


def _keeper(request: Request) -> _Keeper:
    keeper: _Keeper | None = getattr(request.app.state, "idempotency", None)
    if keeper is None:
        keeper = request.app.state.idempotency = _Keeper()
    return keeper


def fingerprint(request: Request, body: BaseModel | None) -> str:
    """SHA-256 of the concrete path and the parsed body, canonically serialised."""
    payload = {
        "path": request.url.path,
        "body": None if body is None else body.model_dump(mode="json", by_alias=True),
    }
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _scope(request: Request, principal: Principal, institution: str) -> str:
    """Whose records a key is looked up among: the caller's institution and, when it
    differs (an admin key acting for another), the one the request acts on."""
    route = request.scope.get("route")
    template = getattr(route, "path", None) or request.url.path
    tenant = principal.institution_id
    if institution != tenant:
        tenant = f"{tenant}>{institution}"
    return f"{tenant} {request.method} {template}"


def request_key(
    request: Request,
    principal: Principal,
    institution: str,
    key: str | None,
    body: BaseModel | None,
) -> str | None:
    """A digest naming one keyed request (tenants, route, key and body), for a route to
    write with its effect: when the answer could not be kept (the store failed after
    the effect), a retry can still recognise the effect as its own."""
    if key is None:
        return None
    text = f"{_scope(request, principal, institution)}\n{key}\n{fingerprint(request, body)}"
    return hashlib.sha256(text.encode()).hexdigest()


def _remembered(response: JSONResponse) -> bool:
    """Whether an answer is the route's decision rather than a passing condition (an
    answer that says when to retry is the latter: a 409 of an execution that kept
    changing, a store that was away)."""
    status = response.status_code
    return status < 500 and status not in _TRANSIENT and "retry-after" not in response.headers


async def _answer(run: Callable[[], Awaitable[JSONResponse]]) -> JSONResponse:
    """The route's answer, its refusals (problems, trilha errors) made responses too."""
    try:
        return await run()
    except Problem as exc:
        return exc.response()
    except TrilhaError as exc:
        return from_error(exc).response()


class _Rendered(JSONResponse):
    """A JSON response whose body is already rendered: replayed byte for byte."""

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else super().render(content)


def _replay(stored: StoredResponse) -> JSONResponse:
    """The first answer byte for byte (it is kept as its JSON text, so the store's key
    ordering never reshapes it)."""
    body = stored.body
    content = body.encode() if isinstance(body, str) else orjson.dumps(body)
    return _Rendered(
        content,
        status_code=stored.status,
        media_type=MEDIA_TYPE if stored.status >= 400 else "application/json",
        headers={"Idempotent-Replayed": "true"},
    )


def _reused(key: str) -> Problem:
    return Problem(
        422,
        f"{HEADER} {key!r} was already used with a different request; use a new key"
        " for a new request",
        kind="idempotency_key_reused",
        errors=[
            {
                "field": f"header.{HEADER}",
                "message": "already used with a different path or body",
            }
        ],
    )


async def idempotent(
    request: Request,
    principal: Principal,
    institution: str,
    key: str | None,
    body: BaseModel | None,
    run: Callable[[], Awaitable[JSONResponse]],
) -> JSONResponse:
    """Run ``run`` once per ``key``: replay the kept answer, or run it and keep its answer.

    ``institution`` is the one the request acts on, already checked by the route (a
    foreign one answered 404 before this is called); ``body`` is the parsed request
    body (``None`` when the route takes none)."""
    if key is None:
        return await run()
    state = state_of(request.app)
    store = state.runtime.store
    keeper = _keeper(request)
    scope = _scope(request, principal, institution)
    digest = fingerprint(request, body)
    async with keeper.hold(f"{scope}\n{key}"):
        stored = await store.remembered_response(scope, key)
        if stored is not None:
            if stored.request_hash != digest:
                raise _reused(key)
            return _replay(stored)
        response = await _answer(run)
        if not _remembered(response):
            return response
        now = state.runtime.engine.clock.now()
        answer = StoredResponse(digest, response.status_code, bytes(response.body).decode(), now)
        try:
            kept = await store.remember_response(scope, key, answer)
        except TrilhaError as exc:
            # the route's effect happened: answer it truthfully; a retry may then see a
            # 409 (busy conversation) or a duplicate, never a second effect
            log.warning("api.idempotency_not_kept", scope=scope, error=str(exc))
            return response
        await _purge(keeper, state.config.api.idempotency_hours, now, request)
        if kept.request_hash == digest and kept.created_at == answer.created_at:
            return response
        # another process answered this key first: every caller agrees with that answer
        return _replay(kept) if kept.request_hash == digest else response


async def _purge(keeper: _Keeper, hours: float, now: float, request: Request) -> None:
    """Forget records past their retention, at most once per :data:`PURGE_EVERY_SECONDS`."""
    if now - keeper.purged_at < PURGE_EVERY_SECONDS:
        return
    keeper.purged_at = now
    store = state_of(request.app).runtime.store
    with contextlib.suppress(TrilhaError):
        forgotten = await store.purge_responses(now - hours * 3_600)
        if forgotten:
            log.info("api.idempotency_purged", records=forgotten)
