"""API keys, tenants and per-key rate limits.

A key reads ``trk_<id>_<secret>``: the id finds the stored key, the secret is
checked against its SHA-256 (keys are 256-bit random strings, so a fast hash
is enough; nothing is stretched as a password would be). The plain key is shown
once, by ``trilha keys create``; the store never holds it.

A key acts for one institution and has a role: ``viewer`` reads, ``operator``
also changes (starts executions, delivers messages, pauses...), ``admin`` does
both across every institution. Another tenant's things are *absent* to a key
(404, never 403), so a key cannot even learn that an id exists elsewhere; a
viewer asking to change its own tenant's things gets 403, and so does a key that
is not an admin's asking for what spans every institution (``/metrics``).

Verified keys are cached for a few seconds (a revocation takes effect within
:data:`KEY_CACHE_SECONDS`) so a request costs no store read for its key. An open
event stream outlives any request: its key is read again while it stays open
(:meth:`KeyRing.still_valid`, see :class:`trilha.api.events.StreamGate`).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import Depends, Request

from trilha.api.problems import Problem, not_found
from trilha.store.base import ApiKey, Store

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
PREFIX = "trk"
KEY_CACHE_SECONDS = 5.0


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(
    institution_id: str, role: Role, *, now: float, name: str | None = None
) -> tuple[ApiKey, str]:
    """A new key to store, and its plain form to show once."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return (
        ApiKey(key_id, institution_id, role, _digest(secret), now, name),
        f"{PREFIX}_{key_id}_{secret}",
    )


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's id, its tenant and its role."""

    key_id: str
    institution_id: str
    role: Role

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def sees(self, institution_id: str | None) -> bool:
        """Whether things of ``institution_id`` exist for this key."""
        return self.admin or institution_id == self.institution_id

    def check(self, institution_id: str | None, what: str) -> None:
        """404 unless the thing is this key's tenant's (or the key is an admin's)."""
        if not self.sees(institution_id):
            raise not_found(what)

    def scope(self) -> str | None:
        """The institution listings are narrowed to (``None``: every institution)."""
        return None if self.admin else self.institution_id


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class RateLimiter:
    """A token bucket per key: ``rate`` requests a second on average, ``burst`` at once."""

    rate: float
    burst: int
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, key_id: str, now: float | None = None, *, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens (one request's worth by default; a costly request, more,
        at most a whole burst); 0.0 when allowed, else the seconds until they are back."""
        now = time.monotonic() if now is None else now
        cost = min(cost, float(self.burst))
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate


@dataclass(slots=True)
class KeyRing:
    """Verifies presented keys against the store, with a short cache."""

    store: Store
    limiter: RateLimiter
    _cache: dict[str, tuple[float, ApiKey | None]] = field(default_factory=dict)

    async def verify(self, presented: str) -> Principal | None:
        parts = presented.strip().split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
            return None
        key_id, secret = parts[1], parts[2]
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < KEY_CACHE_SECONDS:
            stored = cached[1]
        else:
            stored = await self.store.get_api_key(key_id)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key_id] = (now, stored)
        if stored is None or stored.revoked_at is not None:
            return None
        if not hmac.compare_digest(stored.secret_hash, _digest(secret)):
            return None
        return Principal(stored.key_id, stored.institution_id, stored.role)

    async def still_valid(self, principal: Principal) -> bool:
        """Whether ``principal``'s key still stands as it was verified: not revoked, and
        of the same tenant and role. Read from the store, not the cache (whose entry it
        refreshes): an open event stream asks this every few seconds, and must end
        within seconds of a revocation, not after the cache's own delay on top."""
        stored = await self.store.get_api_key(principal.key_id)
        self._cache[principal.key_id] = (time.monotonic(), stored)
        return (
            stored is not None
            and stored.revoked_at is None
            and stored.institution_id == principal.institution_id
            and stored.role == principal.role
        )


def presented_key(request: Request) -> str | None:
    """``Authorization: Bearer KEY``, or ``X-API-Key: KEY``."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or None


_UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="trilha"'}
#: how the key is sent, said in every answer about a key that was not found
_SEND_IT = "send it as Authorization: Bearer KEY (or X-API-Key: KEY)"
#: a scheme's name is echoed only when it reads as one (``Basic``, ``Token``): what
#: stands before the space may as well be a key, which an answer never repeats
_SCHEME_NAME = re.compile(r"[A-Za-z][A-Za-z-]{0,19}")


def missing_key(request: Request) -> str:
    """Why no key was found, said so the caller can fix it: most often a key sent in
    ``Authorization`` without its ``Bearer`` scheme. Never quotes what was sent but a
    scheme's name: the header's value may be the key itself."""
    header = (request.headers.get("authorization") or "").strip()
    if not header:
        return "an API key is required: Authorization: Bearer KEY (trilha keys create)"
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return f"the Authorization header says Bearer but no key follows it: {_SEND_IT}"
    if not value.strip():
        return f"the Authorization header has a key without its Bearer scheme: {_SEND_IT}"
    if _SCHEME_NAME.fullmatch(scheme):
        return f"the Authorization scheme {scheme!r} is not accepted: {_SEND_IT}"
    return f"the Authorization header is not Bearer followed by a key: {_SEND_IT}"


async def identify(request: Request) -> Principal:
    """The caller, or 401 (no key, or one that is not valid or was revoked). Asked
    first, before anything of the request is read: the app's outer guard asks it of
    every ``/v1`` request before it looks at the body, so a caller without a key
    learns nothing from the answers to a malformed, oversized or non-JSON body."""
    ring: KeyRing = request.app.state.keys
    presented = presented_key(request)
    if presented is None:
        raise Problem(
            401,
            missing_key(request),
            kind="unauthorized",
            headers=_UNAUTHORIZED,
        )
    principal = await ring.verify(presented)
    if principal is None:
        raise Problem(
            401,
            "the API key is not valid or was revoked",
            kind="unauthorized",
            headers=_UNAUTHORIZED,
        )
    return principal


async def authenticated(request: Request) -> Principal:
    """The caller, or 401; 429 with Retry-After past the key's rate limit."""
    principal = await identify(request)
    charge(request, principal)
    return principal


def charge(request: Request, principal: Principal, cost: float = 1.0) -> None:
    """Spend ``cost`` requests of the key's rate limit, or answer 429 with Retry-After.
    Every request costs one; one whose work grows with its size (a flow to check)
    costs more, so a key's share of the server's time is bounded, not only its count
    of requests."""
    ring: KeyRing = request.app.state.keys
    wait = ring.limiter.take(principal.key_id, cost=cost)
    if wait > 0:
        raise Problem(
            429,
            f"rate limit of key {principal.key_id} exceeded; retry in {wait:.2f}s",
            kind="rate_limited",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


async def writer(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    """An operator or admin key; a viewer key gets 403."""
    if principal.role == "viewer":
        raise Problem(
            403,
            f"key {principal.key_id} is a viewer key: it cannot change anything",
            kind="forbidden",
            title="Forbidden",
        )
    return principal


async def administrator(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
    """An admin key; another key gets 403 (what it asks for spans every institution,
    so there is no tenant's share of it to show)."""
    if not principal.admin:
        raise Problem(
            403,
            f"key {principal.key_id} is a {principal.role} key: this needs an admin key",
            kind="forbidden",
            title="Forbidden",
        )
    return principal


Viewer = Annotated[Principal, Depends(authenticated)]
Writer = Annotated[Principal, Depends(writer)]
