"""Nearest-rank percentiles: what ``trilha stats`` and the benchmarks report."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` in [0, 1]); NaN for none.

    Nearest rank, not interpolation: the figure is always a duration that happened."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    # the ceil(fraction * n)-th value; rounding first keeps 0.07 * 100 at rank 7, not 8
    rank = max(0, min(len(ordered) - 1, math.ceil(round(fraction * len(ordered), 9)) - 1))
    return ordered[rank]
