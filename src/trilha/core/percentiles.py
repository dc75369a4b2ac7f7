"""Nearest-rank percentiles: what ``trilha stats`` and the benchmarks report."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` in [0, 1]); NaN for none.

    Nearest rank, not interpolation: the figure is always a duration that happened."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]
