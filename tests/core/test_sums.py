"""pairwise_sum adds as numpy's float64 sum does, bit for bit (the fast decode-run path's energy
relies on it)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.core.sums import pairwise_sum

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
# step durations: positive, spread over many magnitudes (rounding differs with the order)
durations = st.floats(min_value=1e-9, max_value=10.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(finite, durations, st.just(-0.0)), max_size=600))
def test_pairwise_sum_is_numpys_sum_bit_for_bit(values):
    expected = float(np.sum(np.array(values, dtype=np.float64)))
    got = pairwise_sum(values)
    assert got == expected and np.signbit(got) == np.signbit(expected)


@settings(max_examples=100, deadline=None)
@given(st.lists(durations, min_size=1, max_size=300), st.integers(1, 300))
def test_a_runs_first_steps_sum_as_the_array_slice_does(seconds, steps):
    steps = min(steps, len(seconds))
    assert pairwise_sum(seconds[:steps]) == float(np.array(seconds)[:steps].sum())


def test_the_order_matters_for_these_values():
    """The test above can fail: a sum in another order differs in the last bit here."""
    values = [1.0, 1e-16, 1e-16, 1e-16, 1e-16, 1e-16, 1e-16, 1e-16, 1e-16] * 3
    sequential = 0.0
    for v in values:
        sequential += v
    assert pairwise_sum(values) == float(np.sum(values)) != sequential
