"""A request's cost against its key's rate limit (the API's token bucket)."""

from __future__ import annotations

from trilha.api.auth import RateLimiter


def test_a_costly_request_spends_more_of_the_bucket() -> None:
    """A request of cost 64 leaves a burst of 100 with 36; the next of 64 waits for the
    28 missing tokens at the rate, and a cost above the burst is capped at it."""
    limiter = RateLimiter(rate=50.0, burst=100)
    assert limiter.take("k", now=0.0, cost=64) == 0.0
    wait = limiter.take("k", now=0.0, cost=64)
    assert abs(wait - 28 / 50) < 1e-9
    assert limiter.take("k", now=wait, cost=64) == 0.0
    assert limiter.take("other", now=0.0, cost=1_000) == 0.0  # capped at the burst
    assert limiter.take("other", now=0.0) > 0
