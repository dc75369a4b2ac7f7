"""The per-number rate limit on a fake monotonic clock: sends spaced ``1 / rate`` apart
per number, a short wait taken, a long one refused with ``retry_after`` (deferred, so
the dispatcher counts no attempt), and numbers independent of each other."""

from __future__ import annotations

import pytest

from trilha.channels.whatsapp.graph import GraphError
from trilha.channels.whatsapp.throttle import NumberThrottle


class Time:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def throttle(rate: float, t: Time, max_wait: float = 0.5) -> NumberThrottle:
    return NumberThrottle(rate, max_wait=max_wait, monotonic=t.monotonic, sleep=t.sleep)


async def test_sends_of_one_number_are_spaced_by_the_rate() -> None:
    t = Time()
    limit = throttle(4, t, max_wait=10)
    starts = []
    for _ in range(6):
        await limit.acquire("111")
        starts.append(t.now)
    assert starts == pytest.approx([100.0, 100.25, 100.5, 100.75, 101.0, 101.25])


def test_a_slot_past_max_wait_is_refused_with_retry_after_and_not_taken() -> None:
    t = Time()
    limit = throttle(4, t, max_wait=0.5)
    waits = [limit.reserve("111") for _ in range(3)]
    assert waits == pytest.approx([0.0, 0.25, 0.5])
    with pytest.raises(GraphError) as refused:
        limit.reserve("111")
    exc = refused.value
    assert exc.kind == "throttled"
    assert exc.details["deferred"] is True
    assert exc.details["retry_after"] == pytest.approx(0.75)
    # the refusal took no slot: once time passes, the next slot is the one refused
    t.now += 0.75
    assert limit.reserve("111") == pytest.approx(0.0)


def test_one_numbers_burst_leaves_another_number_untouched() -> None:
    t = Time()
    limit = throttle(2, t)
    limit.reserve("111")
    limit.reserve("111")
    with pytest.raises(GraphError):
        limit.reserve("111")
    assert limit.reserve("222") == 0.0


async def test_a_patient_acquire_waits_past_max_wait() -> None:
    t = Time()
    limit = throttle(1, t, max_wait=0.1)
    await limit.acquire("111")
    await limit.acquire("111", patient=True)
    assert t.slept == pytest.approx([1.0])


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        NumberThrottle(0)


def test_a_hold_gives_the_number_no_slot_for_a_while() -> None:
    t = Time()
    limit = throttle(10, t, max_wait=0.5)
    limit.hold("111", 1.0)
    with pytest.raises(GraphError) as refused:
        limit.reserve("111")
    assert refused.value.details["retry_after"] == pytest.approx(1.0)
    assert limit.reserve("222") == 0.0
    t.now += 1.0
    assert limit.reserve("111") == 0.0
    limit.hold("111", 0.0)  # never shortens what is scheduled already
    assert limit.reserve("111") == pytest.approx(0.1)
