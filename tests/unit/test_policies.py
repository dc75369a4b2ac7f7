"""Recovery policies: classification, retry schedule, effective policy, exhaustion."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trilha.core.flow import FlowSettings, MessageNode, RetryPolicy
from trilha.core.policies import (
    ErrorKind,
    GiveUp,
    Retry,
    after_exhaustion,
    classify,
    effective_retry,
    parse_retry_after,
    retry_decision,
)


@pytest.mark.parametrize(
    ("error_type", "status", "kind"),
    [
        ("NodeError", 500, ErrorKind.SERVER),
        ("NodeError", 503, ErrorKind.SERVER),
        ("NodeError", 429, ErrorKind.RATE_LIMITED),
        ("NodeError", 408, ErrorKind.TIMEOUT),
        ("NodeError", 404, ErrorKind.CLIENT),
        ("NodeTimeout", None, ErrorKind.TIMEOUT),
        ("BlockedAddress", None, ErrorKind.BLOCKED),
        ("ExpressionError", None, ErrorKind.VALIDATION),
        ("KeyError", None, ErrorKind.INTERNAL),
    ],
)
def test_classify(error_type: str, status: int | None, kind: ErrorKind) -> None:
    """Errors are classified by HTTP status first, then by type."""
    assert classify(error_type, status=status) is kind


def test_declared_kind_wins() -> None:
    """A processor's declared kind (e.g. connection) is used as is."""
    assert classify("NodeError", kind="connection") is ErrorKind.CONNECTION


def test_backoff_grows_and_is_capped_without_jitter() -> None:
    """Delays double from the initial interval up to the cap."""
    policy = RetryPolicy(
        max_attempts=10,
        initial_interval_seconds=1,
        backoff_coefficient=2,
        max_interval_seconds=5,
        jitter=False,
    )
    rng = random.Random(1)
    delays = []
    for attempt in range(1, 6):
        decision = retry_decision(policy, kind=ErrorKind.SERVER, attempt=attempt, rng=rng)
        assert isinstance(decision, Retry)
        assert decision.attempt == attempt + 1
        delays.append(decision.delay)
    assert delays == [1, 2, 4, 5, 5]


@given(st.integers(1, 20), st.integers(0, 2**32))
def test_full_jitter_stays_under_the_ceiling(attempt: int, seed: int) -> None:
    """With full jitter a delay is between 0 and the exponential ceiling."""
    policy = RetryPolicy(max_attempts=50)
    decision = retry_decision(
        policy, kind=ErrorKind.TIMEOUT, attempt=attempt, rng=random.Random(seed)
    )
    assert isinstance(decision, Retry)
    assert 0 <= decision.delay <= min(60, 2 ** (attempt - 1))


def test_full_jitter_spreads_delays_over_the_whole_range() -> None:
    """Full jitter draws each delay from [0, ceiling]: over many random sources the delays
    differ, reach near both ends of the range and centre on its middle, so a constant
    delay (none at all, or always the ceiling) fails here."""
    policy = RetryPolicy(max_attempts=50)
    ceiling = 16  # attempt 5: 2 ** 4 seconds, under the 60 s cap
    delays = []
    for seed in range(500):
        decision = retry_decision(
            policy, kind=ErrorKind.TIMEOUT, attempt=5, rng=random.Random(seed)
        )
        assert isinstance(decision, Retry)
        delays.append(decision.delay)
    assert all(0 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 450
    assert min(delays) < 0.05 * ceiling and max(delays) > 0.95 * ceiling
    assert 0.4 * ceiling < statistics.mean(delays) < 0.6 * ceiling


def test_attempts_run_out() -> None:
    """After maxAttempts failures the decision is to give up."""
    policy = RetryPolicy(max_attempts=3)
    decision = retry_decision(policy, kind=ErrorKind.SERVER, attempt=3, rng=random.Random())
    assert decision == GiveUp("3 of 3 attempts failed")


def test_permanent_and_non_retryable_are_not_retried() -> None:
    """4xx and validation errors are not retried; nonRetryable removes transient kinds."""
    policy = RetryPolicy(max_attempts=5, non_retryable=["rate_limited"])
    for kind in (ErrorKind.CLIENT, ErrorKind.VALIDATION, ErrorKind.RATE_LIMITED):
        assert isinstance(retry_decision(policy, kind=kind, attempt=1, rng=random.Random()), GiveUp)


def test_retry_after_is_honoured() -> None:
    """A server's Retry-After longer than the backoff is waited for."""
    policy = RetryPolicy(max_attempts=3, jitter=False)
    decision = retry_decision(
        policy, kind=ErrorKind.RATE_LIMITED, attempt=1, rng=random.Random(), retry_after=7
    )
    assert decision == Retry(delay=7, attempt=2)


def test_parse_retry_after() -> None:
    """Retry-After is seconds or an HTTP date."""
    assert parse_retry_after("3", 0) == 3
    assert parse_retry_after(None, 0) is None
    assert parse_retry_after("soon", 0) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470) == 10


def test_effective_retry_precedence_and_cap() -> None:
    """Node policy > dependency policy > flow policy capped by fallback.maxRetries."""
    settings = FlowSettings.model_validate(
        {"retry": {"maxAttempts": 10}, "fallback": {"maxRetries": 2}}
    )
    plain = MessageNode(id="a", type="message", text="x")
    assert effective_retry(plain, settings).max_attempts == 3
    dep = RetryPolicy(max_attempts=6)
    assert effective_retry(plain, settings, dep) is dep
    own = MessageNode(id="a", type="message", text="x", retry=RetryPolicy(max_attempts=8))
    assert effective_retry(own, settings, dep).max_attempts == 8


def test_after_exhaustion_chain() -> None:
    """Fallback flow, then escalation, then failure; disabled means failure."""
    s = FlowSettings.model_validate(
        {"fallback": {"fallbackFlowId": "help", "escalateToHuman": True}}
    )
    assert after_exhaustion(s, in_fallback_flow=False).action == "fallback_flow"
    assert after_exhaustion(s, in_fallback_flow=True).action == "escalate"
    s2 = FlowSettings.model_validate({"fallback": {"escalateToHuman": False}})
    assert after_exhaustion(s2, in_fallback_flow=False).action == "fail"
    s3 = FlowSettings.model_validate({"fallback": {"enabled": False, "fallbackFlowId": "h"}})
    assert after_exhaustion(s3, in_fallback_flow=False).action == "fail"
