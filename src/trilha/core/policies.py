"""Recovery decisions as pure functions: which errors are retried, after how long,
and where an execution goes when a node is exhausted.

The engine asks; these functions answer with data. The random source and the
clock are passed in, so a decision can be replayed in a test exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from trilha.core.flow import FlowSettings, NodeBase, RetryPolicy


class ErrorKind(StrEnum):
    """How a failure is classified; names usable in ``retry.nonRetryable``."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    RATE_LIMITED = "rate_limited"  # HTTP 429
    SERVER = "server"  # HTTP 5xx
    CLIENT = "client"  # HTTP 4xx other than 408/429
    VALIDATION = "validation"
    BLOCKED = "blocked"  # the address policy refused the target
    DEPENDENCY_UNAVAILABLE = "dependency_unavailable"  # breaker open
    CONFIGURATION = "configuration"
    LIMIT = "limit"  # a bound was passed (value size, reply length, response size...)
    FORBIDDEN = "forbidden"  # another owner's flow, a dependency not allowed
    #: the contact last wrote before the channel's customer-service window (WhatsApp's
    #: 24 hours) and the node has no template to send instead
    OUTSIDE_WINDOW = "outside_window"
    #: a request that changes things went out and its answer was lost (a timeout, a
    #: connection cut): it may have been applied, so it is not sent again
    AMBIGUOUS = "ambiguous"
    INTERNAL = "internal"


TRANSIENT: frozenset[ErrorKind] = frozenset(
    {
        ErrorKind.TIMEOUT,
        ErrorKind.CONNECTION,
        ErrorKind.RATE_LIMITED,
        ErrorKind.SERVER,
    }
)


#: methods that may change something each time they are applied (RFC 9110 §9.2.2):
#: GET, HEAD, PUT and DELETE are idempotent, so repeating one after a lost answer is safe
UNSAFE_METHODS: frozenset[str] = frozenset({"POST", "PATCH"})


def resend_is_safe(method: str, *, dependency_idempotent: bool, retry_unsafe: bool) -> bool:
    """Whether a request whose answer was lost after it went out may be sent again: an
    idempotent method, a dependency that applies a key once (``idempotent = true``), or
    a node that says a repeat does no harm (``retryUnsafe``). Otherwise the failure is
    :attr:`ErrorKind.AMBIGUOUS` and, not being transient, is never retried."""
    return method.upper() not in UNSAFE_METHODS or dependency_idempotent or retry_unsafe


def classify(error_type: str, *, status: int | None = None, kind: str | None = None) -> ErrorKind:
    """Classify a failure from its exception type name, HTTP status and declared kind."""
    if kind is not None:
        try:
            return ErrorKind(kind)
        except ValueError:
            pass
    if status is not None:
        if status == 429:
            return ErrorKind.RATE_LIMITED
        if status == 408:
            return ErrorKind.TIMEOUT
        if status >= 500:
            return ErrorKind.SERVER
        if status >= 400:
            return ErrorKind.CLIENT
    match error_type:
        case "NodeTimeout" | "TimeoutError":
            return ErrorKind.TIMEOUT
        case "BlockedAddress":
            return ErrorKind.BLOCKED
        case "DependencyUnavailable":
            return ErrorKind.DEPENDENCY_UNAVAILABLE
        case "ExpressionError" | "ValidationError":
            return ErrorKind.VALIDATION
        case "ConfigError" | "FlowNotFound":  # a flow naming one never published
            return ErrorKind.CONFIGURATION
        case "LimitExceeded":
            return ErrorKind.LIMIT
        case "AccessDenied":
            return ErrorKind.FORBIDDEN
    return ErrorKind.INTERNAL


@dataclass(frozen=True, slots=True)
class Retry:
    delay: float
    attempt: int  # the attempt that will run after the delay


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


def effective_retry(
    node: NodeBase, settings: FlowSettings, dependency_retry: RetryPolicy | None = None
) -> RetryPolicy:
    """The node's own policy, else the dependency's, else the flow's capped by
    ``settings.fallback.maxRetries`` (retries, so attempts are one more)."""
    if node.retry is not None:
        return node.retry
    if dependency_retry is not None:
        return dependency_retry
    cap = settings.fallback.max_retries + 1
    policy = settings.retry
    if policy.max_attempts > cap:
        policy = policy.model_copy(update={"max_attempts": cap})
    return policy


def parse_retry_after(value: Any, now: float) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` (delta seconds or HTTP date)."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def retry_decision(
    policy: RetryPolicy,
    *,
    kind: ErrorKind,
    attempt: int,
    rng: random.Random,
    retry_after: float | None = None,
) -> Retry | GiveUp:
    """Whether attempt ``attempt`` (1-based, just failed) is followed by another, and when.

    Only transient kinds are retried, minus those the policy lists as
    non-retryable. The delay is exponential with full jitter, capped; a
    server's ``Retry-After`` is honoured when it asks for longer.
    """
    if kind not in TRANSIENT or kind.value in policy.non_retryable:
        return GiveUp(f"{kind.value} errors are not retried")
    if attempt >= policy.max_attempts:
        return GiveUp(f"{attempt} of {policy.max_attempts} attempts failed")
    ceiling = min(
        policy.max_interval_seconds,
        policy.initial_interval_seconds * policy.backoff_coefficient ** (attempt - 1),
    )
    delay = rng.uniform(0, ceiling) if policy.jitter else ceiling
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_interval_seconds * 10))
    return Retry(delay=delay, attempt=attempt + 1)


def next_round(
    *,
    spent: int,
    rounds: int,
    pause_seconds: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> Retry | GiveUp:
    """Whether a node whose round ``spent`` (1-based) of attempts failed, each time in a
    way that says its dependency is in trouble, gets another round, and after how long.

    A round is the seed's "max 3 attempts with exponential backoff"; a dependency failing
    a share of its calls at random spends one now and then (30 %: one round in 37), and
    the next round, after a longer pause, mends it as the first would have. The pause
    is ``pause_seconds`` doubling per round, jittered to half of it at least (rounds of
    many executions do not land together), never shorter than a ``Retry-After``.
    Attempts in all are bounded by ``rounds`` times the policy's ``max_attempts``."""
    if spent >= rounds:
        return GiveUp(f"{spent} of {rounds} rounds of attempts failed")
    ceiling = pause_seconds * 2 ** (spent - 1)
    delay = rng.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, ceiling * 10))
    return Retry(delay=delay, attempt=1)


@dataclass(frozen=True, slots=True)
class Exhausted:
    """Where an execution goes once a node's retries and own fallback are spent."""

    action: Literal["fallback_flow", "escalate", "fail"]
    flow_id: str | None = None


def after_exhaustion(settings: FlowSettings, *, in_fallback_flow: bool) -> Exhausted:
    """DESIGN §4: global fallback flow, then escalation to a person, then failure."""
    fb = settings.fallback
    if fb.enabled and fb.fallback_flow_id and not in_fallback_flow:
        return Exhausted("fallback_flow", fb.fallback_flow_id)
    if fb.enabled and fb.escalate_to_human:
        return Exhausted("escalate")
    return Exhausted("fail")
