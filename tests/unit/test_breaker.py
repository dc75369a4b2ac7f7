"""The circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from trilha.engine.clock import FakeClock
from trilha.resilience.breaker import (
    MANY_REFUSED,
    BreakerRegistry,
    BreakerSettings,
    BreakerState,
    CircuitBreaker,
)

SETTINGS = BreakerSettings(failure_threshold=3, open_seconds=30, half_open_probes=2)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def tripped(clock: FakeClock, settings: BreakerSettings = SETTINGS) -> CircuitBreaker:
    breaker = CircuitBreaker("crm", settings, clock)
    for _ in range(settings.failure_threshold):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    return breaker


def test_starts_closed_and_lets_calls_through(clock: FakeClock) -> None:
    """A new breaker is closed, lets every call through and has no retry time."""
    breaker = CircuitBreaker("crm", SETTINGS, clock)
    assert breaker.state is BreakerState.CLOSED
    assert all(breaker.allow() for _ in range(10))
    assert breaker.retry_at() is None


def test_opens_after_threshold_consecutive_failures(clock: FakeClock) -> None:
    """It opens on the threshold-th consecutive failure, not before."""
    breaker = CircuitBreaker("crm", SETTINGS, clock)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_at() == clock.now() + 30


def test_a_success_resets_the_failure_count(clock: FakeClock) -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    breaker = CircuitBreaker("crm", SETTINGS, clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_fails_fast_while_open(clock: FakeClock) -> None:
    """While open, no call is allowed until open_seconds have passed."""
    breaker = tripped(clock)
    assert not breaker.allow()
    clock.advance(29.9)
    assert not breaker.allow()
    assert breaker.state is BreakerState.OPEN


def test_half_open_admits_the_configured_number_of_probes(clock: FakeClock) -> None:
    """After open_seconds it is half-open and lets exactly half_open_probes calls through."""
    breaker = tripped(clock)
    clock.advance(30)
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()


def probing(clock: FakeClock) -> CircuitBreaker:
    """A tripped breaker, open_seconds later, with one probe let through."""
    breaker = tripped(clock)
    clock.advance(30)
    assert breaker.allow()
    return breaker


def test_a_successful_probe_closes_it(clock: FakeClock) -> None:
    """A probe's success closes the breaker, and calls flow again."""
    breaker = probing(clock)
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert all(breaker.allow() for _ in range(5))
    assert [state for _, state in breaker.changes] == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]


def test_a_failed_probe_opens_it_again(clock: FakeClock) -> None:
    """A probe's failure re-opens it for another open_seconds, from now."""
    breaker = probing(clock)
    clock.advance(15)
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_at() == clock.now() + 30
    assert not breaker.allow()
    clock.advance(30)
    assert breaker.allow()


def test_a_released_probe_frees_its_slot(clock: FakeClock) -> None:
    """A probe that ended without a verdict (cancelled) gives its slot back."""
    breaker = tripped(clock, BreakerSettings(failure_threshold=1, open_seconds=5))
    clock.advance(5)
    assert breaker.allow()
    assert not breaker.allow()
    breaker.release()
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN


def test_registry_shares_one_breaker_per_dependency(clock: FakeClock) -> None:
    """The registry hands out the same breaker for a name, and new settings apply to it."""
    registry = BreakerRegistry(clock)
    crm = registry.get("crm", SETTINGS)
    assert registry.get("crm") is crm
    assert registry.get("nlp") is not crm
    crm.record_failure()
    tighter = BreakerSettings(failure_threshold=2, open_seconds=1)
    assert registry.get("crm", tighter) is crm
    assert crm.settings == tighter
    crm.record_failure()
    assert crm.state is BreakerState.OPEN
    assert set(registry.all()) == {"crm", "nlp"}


def test_its_moves_are_process_log_lines(clock: FakeClock, process_log: Any) -> None:
    """Opened (WARN), refusing many calls (CRITICAL, once per opening), closed (INFO)."""
    breaker = CircuitBreaker("crm", BreakerSettings(failure_threshold=2, open_seconds=30), clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    for _ in range(MANY_REFUSED * 2):
        assert not breaker.allow()
    clock.advance(31)
    assert breaker.allow()
    breaker.record_success()
    lines = [(line["level"], line["message"]) for line in process_log.lines()]
    assert lines == [
        ("WARN", "breaker.opened"),
        ("CRITICAL", "breaker.open_affecting_many"),
        ("INFO", "breaker.closed"),
    ]
    critical = process_log.lines()[1]["context"]["metadata"]
    assert critical["dependency"] == "crm" and critical["refusedCalls"] == MANY_REFUSED
