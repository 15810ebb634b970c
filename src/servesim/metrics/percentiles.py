"""Percentiles of a run's latencies: numpy's default method, without numpy's import of `numpy.ma`.

`np.percentile` interpolates through `np.unique`, whose first call imports `numpy.ma` (~12 ms, a
thirtieth of a short run's CPU) only to ask whether its index array is masked. `linear_percentiles`
does the same arithmetic, operation for operation, so its results are bit-equal to
`np.percentile(values, q)` (tests/metrics/test_percentiles.py checks that with hypothesis).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def linear_percentiles(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """`np.percentile(values, q)` of a non-empty 1-D float array without NaNs, q in [0, 100]."""
    n = len(values)
    rank = (n - 1) * np.true_divide(q, 100)  # where each percentile falls between two samples
    below = np.floor(rank)
    above = below + 1
    top = rank >= n - 1  # at or past the largest sample: both neighbours are the largest
    below[top] = -1
    above[top] = -1
    below, above = below.astype(np.intp), above.astype(np.intp)
    weight = np.asarray(rank - below, dtype=rank.dtype)
    # The same partial sort as numpy's (its kth: np.unique of these), so that equal samples (0.0
    # and -0.0) land where they land there
    ordered = values.flatten()
    ordered.partition(sorted({0, -1, *below.tolist(), *above.tolist()}))
    low, high = ordered[below], ordered[above]
    step = high - low
    result = low + step * weight
    # From the upper neighbour when nearer it, as numpy does (exact at weight 1, monotonic)
    np.subtract(high, step * (1 - weight), out=result, where=weight >= 0.5, casting="unsafe")
    return result
