"""Exact sums of weighted doubles, so that a mean does not depend on the order of its records.

Several instances pool their token gaps into one series. A float sum would depend on the order in
which the records arrive (and so on how the engine interleaves instances' runs); an exact sum does
not, and its one rounding, at the end, gives the correctly rounded mean.

Every finite double is an integer multiple of 2**-1074, the sum's unit. A block of weighted values
`v_i * w_i` (integer weights) is summed exactly in a few numpy passes, read off the values' bits:
each value is split into a high half (its top 26 significant bits: the low 27 bits of its
significand cleared) and the rest, the low half (at most 27 bits), so that a half times a weight
below 2**26 is exact; grouped by the value's biased binary exponent, the halves share a grid
(the value's last place) and a float64 sum of at most `2**26 / max(|w|)` of them stays below
2**53 places, so exact (`np.bincount`); the few group sums, exact floats, are then added as
Python integers.
"""

from __future__ import annotations

import numpy as np

UNIT_BITS = 1074
"""Sums are kept as integers in units of 2**-UNIT_BITS, the smallest positive double."""
MAX_WEIGHT = float(1 << 26)
"""Weights must lie below this in magnitude (a 27-bit low half times one stays exact)."""
_HIGH_BITS = ~((1 << 27) - 1)
"""Clears a double's low 27 significand bits (sign and exponent kept): its high half."""
_EXACT_TERMS = float(1 << 26)
"""half (< 2**27 places) * |weight| * terms <= 2**53 places: such a float64 sum is exact."""


def weighted_units(values: np.ndarray, weights: np.ndarray) -> int:
    """sum(values * weights), exactly, in units of 2**-UNIT_BITS. `values`: finite doubles
    below 2**996 in magnitude (no product or block sum may overflow); `weights`: integer-valued
    doubles of magnitude below MAX_WEIGHT (the tokens a record stands for, negated where a
    record is subtracted)."""
    if not len(values):
        return 0
    heaviest = max(float(weights.max()), -float(weights.min()))
    if not heaviest < MAX_WEIGHT:
        raise ValueError(f"weights must lie below {MAX_WEIGHT:g} in magnitude, not {heaviest:g}")
    step = max(1, int(_EXACT_TERMS // max(heaviest, 1.0)))
    if step >= len(values):
        return _block_units(values, weights)
    total = 0
    for at in range(0, len(values), step):
        total += _block_units(values[at : at + step], weights[at : at + step])
    return total


def _block_units(values: np.ndarray, weights: np.ndarray) -> int:
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
    group = bits >> 52
    group &= 0x7FF  # the biased exponent: values in one group share their last place
    high = (bits & _HIGH_BITS).view(np.float64)
    low = values - high  # exact: the cleared bits
    high *= weights
    low *= weights
    total = 0
    for sums in (np.bincount(group, weights=high), np.bincount(group, weights=low)):
        for s in sums[sums != 0].tolist():  # exact floats: numerator / 2**k, k <= UNIT_BITS
            numerator, denominator = s.as_integer_ratio()
            total += numerator << (UNIT_BITS + 1 - denominator.bit_length())
    return total


def units_to_float(units: int, count: int = 1) -> float:
    """`units` (of 2**-UNIT_BITS) divided by `count`, correctly rounded (Python's integer
    division is)."""
    return units / (count << UNIT_BITS)
