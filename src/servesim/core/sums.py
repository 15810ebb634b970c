"""numpy's float64 sum in plain Python, bit for bit.

A decode run of a few steps is priced in plain Python (numpy's fixed cost per call outweighs its
gain below a few dozen elements), but its energy must add the steps' seconds in exactly the order
`ndarray.sum` does, or results would drift in the last bit from the numpy path's. numpy sums a
contiguous float64 array pairwise: fewer than 8 values one by one from 0.0, up to 128 in eight
interleaved partial sums combined as a tree, longer ones split in two halves (the first a
multiple of 8 long), each summed the same way.
"""

from __future__ import annotations

from typing import Final

_UNROLL: Final = 8  # (Final: compiled, constants, and `range` with a constant step is a native loop)
_BLOCK: Final = 128  # numpy's PW_BLOCKSIZE


def pairwise_sum(values: list[float]) -> float:
    """`float(np.sum(np.array(values, dtype=np.float64)))`, the same additions in the same order."""
    # numpy's reduction starts from the identity, +0.0: a sum of negative zeros is +0.0
    return 0.0 + _pairwise(values, 0, len(values))


def _pairwise(values: list[float], lo: int, n: int) -> float:
    if n < _UNROLL:
        total = 0.0
        for v in values[lo : lo + n]:
            total += v
        return total
    if n <= _BLOCK:
        whole = lo + n - n % _UNROLL
        r0, r1, r2, r3, r4, r5, r6, r7 = values[lo : lo + _UNROLL]
        for i in range(lo + _UNROLL, whole, _UNROLL):  # eight partial sums, one per lane
            a0, a1, a2, a3, a4, a5, a6, a7 = values[i : i + _UNROLL]
            r0 += a0
            r1 += a1
            r2 += a2
            r3 += a3
            r4 += a4
            r5 += a5
            r6 += a6
            r7 += a7
        total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        for v in values[whole : lo + n]:
            total += v
        return total
    half = n // 2
    half -= half % _UNROLL
    return _pairwise(values, lo, half) + _pairwise(values, lo + half, n - half)
