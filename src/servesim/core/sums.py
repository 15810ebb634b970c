"""numpy's float64 sum in plain Python, bit for bit.

A decode run of a few steps is priced in plain Python (numpy's fixed cost per call outweighs its
gain below a few dozen elements), but its energy must add the steps' seconds in exactly the order
`ndarray.sum` does, or results would drift in the last bit from the numpy path's. numpy sums a
contiguous float64 array pairwise: fewer than 8 values one by one from 0.0, up to 128 in eight
interleaved partial sums combined as a tree, longer ones split in two halves (the first a
multiple of 8 long), each summed the same way.
"""

from __future__ import annotations

_UNROLL = 8
_BLOCK = 128  # numpy's PW_BLOCKSIZE


def pairwise_sum(values: list[float]) -> float:
    """`float(np.sum(np.array(values, dtype=np.float64)))`, the same additions in the same order."""
    return _pairwise(values, 0, len(values))


def _pairwise(values: list[float], lo: int, n: int) -> float:
    if n < _UNROLL:
        total = 0.0
        for v in values[lo : lo + n]:
            total += v
        return total
    if n <= _BLOCK:
        whole = lo + n - n % _UNROLL
        lanes = []
        for j in range(_UNROLL):  # lane j adds values lo + j, lo + j + 8, ... in turn
            lane = values[lo + j : whole : _UNROLL]
            acc = lane[0]
            for v in lane[1:]:
                acc += v
            lanes.append(acc)
        r0, r1, r2, r3, r4, r5, r6, r7 = lanes
        total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        for v in values[whole : lo + n]:
            total += v
        return total
    half = n // 2
    half -= half % _UNROLL
    return _pairwise(values, lo, half) + _pairwise(values, lo + half, n - half)
