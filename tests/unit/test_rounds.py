"""Rounds of retries as pure decisions (issue 17): when another round follows, after how
long, what counts, and the round read back from a node's state."""

from __future__ import annotations

import random

import pytest

from trilha.config import BreakerConfig, DependencyConfig
from trilha.core.policies import ErrorKind, GiveUp, Retry, next_round
from trilha.resilience.rounds import RETRY_ROUND_KEY, counts_against, retry_round


def test_another_round_until_the_last_then_give_up() -> None:
    rng = random.Random(1)
    assert isinstance(next_round(spent=1, rounds=3, pause_seconds=1, rng=rng), Retry)
    assert isinstance(next_round(spent=2, rounds=3, pause_seconds=1, rng=rng), Retry)
    last = next_round(spent=3, rounds=3, pause_seconds=1, rng=rng)
    assert last == GiveUp("3 of 3 rounds of attempts failed")
    assert isinstance(next_round(spent=1, rounds=1, pause_seconds=1, rng=rng), GiveUp)


def test_the_pause_doubles_per_round_and_is_jittered_to_at_least_half() -> None:
    rng = random.Random(7)
    for spent, low, high in ((1, 1.0, 2.0), (2, 2.0, 4.0), (3, 4.0, 8.0)):
        delays = []
        for _ in range(200):
            decision = next_round(spent=spent, rounds=9, pause_seconds=2, rng=rng)
            assert isinstance(decision, Retry) and decision.attempt == 1
            delays.append(decision.delay)
        assert low <= min(delays) and max(delays) <= high
        assert max(delays) - min(delays) > (high - low) / 2  # jittered, not fixed


def test_a_retry_after_is_honoured_within_ten_pauses() -> None:
    rng = random.Random(3)
    asked = next_round(spent=1, rounds=3, pause_seconds=1, rng=rng, retry_after=5)
    assert isinstance(asked, Retry) and asked.delay == 5
    capped = next_round(spent=1, rounds=3, pause_seconds=1, rng=rng, retry_after=3600)
    assert isinstance(capped, Retry) and capped.delay == 10


def test_what_earns_another_round_is_what_the_breaker_counts() -> None:
    dep = DependencyConfig(base_url="http://127.0.0.1:9")
    assert counts_against(dep, ErrorKind.SERVER, {"status": 503})
    assert counts_against(dep, ErrorKind.RATE_LIMITED, {"status": 429})
    assert counts_against(dep, ErrorKind.TIMEOUT, {})
    assert counts_against(dep, ErrorKind.CONNECTION, {})
    assert not counts_against(dep, ErrorKind.SERVER, {"status": 500})
    assert not counts_against(dep, ErrorKind.SERVER, {})  # no status: not the dependency's word
    assert not counts_against(None, ErrorKind.TIMEOUT, {})
    strict = DependencyConfig(base_url="http://127.0.0.1:9", breaker=BreakerConfig(count=["5xx"]))
    assert counts_against(strict, ErrorKind.SERVER, {"status": 500})
    assert not counts_against(strict, ErrorKind.TIMEOUT, {})


@pytest.mark.parametrize(
    ("state", "expected"),
    [({}, 1), ({RETRY_ROUND_KEY: 2}, 2), ({RETRY_ROUND_KEY: "2"}, 1), ({RETRY_ROUND_KEY: 0}, 1)],
)
def test_the_round_read_from_a_node_state(state: dict[str, object], expected: int) -> None:
    assert retry_round(state) == expected


def test_rounds_are_bounded_and_named_when_wrong() -> None:
    assert DependencyConfig(base_url="http://a.example").retry_rounds == 3
    with pytest.raises(ValueError, match="retry_rounds"):
        DependencyConfig(base_url="http://a.example", retry_rounds=0)
    with pytest.raises(ValueError, match="retry_rounds"):
        DependencyConfig(base_url="http://a.example", retry_rounds=11)
    with pytest.raises(ValueError, match="retry_round_seconds"):
        DependencyConfig(base_url="http://a.example", retry_round_seconds=0)
