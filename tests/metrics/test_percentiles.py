"""metrics.percentiles: numpy's default percentiles, bit for bit, without importing numpy.ma."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.metrics.percentiles import linear_percentiles

SAMPLES = st.one_of(
    st.lists(st.floats(allow_nan=False), min_size=1, max_size=60),  # any finite or infinite float
    st.lists(st.sampled_from([0.0, -0.0, 1.0, 2.5, 1e-300, 3e300]), min_size=1, max_size=30),  # ties
)
PERCENTS = st.one_of(
    st.just([50, 90, 99]),  # what the summary asks for
    st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=5),
    st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=5),
)


@settings(max_examples=300, deadline=None)
@given(samples=SAMPLES, q=PERCENTS)
def test_linear_percentiles_are_numpys_bit_for_bit(samples, q):
    values = np.array(samples, dtype=float)
    with np.errstate(invalid="ignore"):  # inf - inf, as in numpy
        expected = np.percentile(values, q)
        got = linear_percentiles(values, q)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes(), (got, expected)
    assert values.tobytes() == np.array(samples, dtype=float).tobytes()  # the input is left as it was
