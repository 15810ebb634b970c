"""Exact sums of weighted doubles, so that a mean does not depend on the order of its records.

Several instances pool their token gaps into one series. A float sum would depend on the order in
which the records arrive (and so on how the engine interleaves instances' runs); an exact sum does
not, and its one rounding, at the end, gives the correctly rounded mean.

Every finite double is an integer multiple of 2**-1074, the sum's unit. A block of weighted values
`v_i * w_i` (integer weights) is summed exactly in a few numpy passes: each value is split into
two halves of at most 26 significant bits (Veltkamp's split, exact), so that a half times a weight
below 2**27 is exact; grouped by the value's binary exponent, the halves share a grid 2**-53 of
that power of two apart, and a float64 sum of fewer than `2**26 / max(w)` of them stays exact
(`np.bincount`); the few group sums, exact floats, are then added as Python integers.
"""

from __future__ import annotations

import numpy as np

UNIT_BITS = 1074
"""Sums are kept as integers in units of 2**-UNIT_BITS, the smallest positive double."""
_SPLIT = float((1 << 27) + 1)
"""Veltkamp's constant for a 26-bit high half (the low half then has at most 26 bits too)."""
_EXACT_TERMS = float(1 << 26)
"""half (< 2**27 units of its grid) * weight * terms < 2**53: such a float64 sum is exact."""


def weighted_units(values: np.ndarray, weights: np.ndarray) -> int:
    """sum(values * weights), exactly, in units of 2**-UNIT_BITS. `values`: finite doubles below
    2**996 in magnitude (the split must not overflow); `weights`: integer-valued doubles below
    2**27 (the tokens a record stands for)."""
    if not len(values):
        return 0
    heaviest = float(np.abs(weights).max())
    step = max(1, int(_EXACT_TERMS // max(heaviest, 1.0)))
    total = 0
    for at in range(0, len(values), step):
        total += _block_units(values[at : at + step], weights[at : at + step])
    return total


def _block_units(values: np.ndarray, weights: np.ndarray) -> int:
    scaled = values * _SPLIT
    high = scaled - (scaled - values)
    low = values - high
    exponents = np.frexp(values)[1]
    group = exponents - int(exponents.min())
    total = 0
    for sums in (np.bincount(group, weights=high * weights), np.bincount(group, weights=low * weights)):
        for s in sums[sums != 0].tolist():  # exact floats: numerator / 2**k, k <= UNIT_BITS
            numerator, denominator = s.as_integer_ratio()
            total += numerator << (UNIT_BITS + 1 - denominator.bit_length())
    return total


def units_to_float(units: int, count: int = 1) -> float:
    """`units` (of 2**-UNIT_BITS) divided by `count`, correctly rounded (Python's integer
    division is)."""
    return units / (count << UNIT_BITS)
