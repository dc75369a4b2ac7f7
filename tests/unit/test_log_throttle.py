"""The throttle of repeated errors: the first line of a kind always goes out, then at
most one a second, each counting the lines held back before it."""

from __future__ import annotations

from trilha.observability.logging import Throttle


def test_a_repeated_error_goes_out_once_a_second_with_the_count_held_back() -> None:
    """The first is shown; repeats within the second are held and counted on the next."""
    throttle = Throttle(every=1.0)
    assert throttle.admit("emfile", 10.0) == 0
    assert [throttle.admit("emfile", 10.0 + i / 1000) for i in range(1, 500)] == [None] * 499
    assert throttle.holding
    assert throttle.admit("emfile", 11.0) == 499
    assert not throttle.holding
    assert throttle.admit("emfile", 11.5) is None


def test_kinds_are_throttled_apart() -> None:
    """Another error is not held back because a first one repeats."""
    throttle = Throttle(every=1.0)
    assert throttle.admit("a", 0.0) == 0
    assert throttle.admit("a", 0.1) is None
    assert throttle.admit("b", 0.2) == 0
    assert "a" in throttle and "c" not in throttle


def test_a_burst_that_stops_is_still_counted_by_a_summary() -> None:
    """Lines held back at the end of a burst come out as one summary once their second
    is over, with the fields of the last one; the summary starts a new second."""
    throttle = Throttle(every=1.0)
    throttle.admit("a", 0.0, detail="first")
    throttle.admit("a", 0.2, detail="second")
    throttle.admit("a", 0.4, detail="third")
    assert throttle.due(0.9) == []
    assert throttle.due(1.0) == [("a", 2, {"detail": "third"})]
    assert throttle.due(5.0) == []
    assert throttle.admit("a", 1.5) is None  # within the second the summary began


def test_only_so_many_kinds_are_remembered() -> None:
    """Errors of ever new kinds cannot grow the throttle: the oldest kind is forgotten."""
    throttle = Throttle(every=1.0, kinds=3)
    for kind in "abcd":
        throttle.admit(kind, 0.0)
    assert "a" not in throttle and all(k in throttle for k in "bcd")
