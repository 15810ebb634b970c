"""Exact weighted sums (`metrics.exact`) and the order-free token-gap series built on them."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.metrics import gaps as gaps_module
from servesim.metrics.exact import UNIT_BITS, units_to_float, weighted_units
from servesim.metrics.gaps import TokenGaps

finite = st.floats(-1e290, 1e290, width=64)  # subnormals included
weight = st.integers(0, 5000)
signed_weight = st.integers(-(1 << 26) + 1, (1 << 26) - 1)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.lists(st.tuples(finite, weight), max_size=60),  # token counts, as gaps weigh
                 st.lists(st.tuples(finite, signed_weight), max_size=60)))  # signed, up to the limit
def test_weighted_units_is_the_exact_sum(records):
    values = np.array([v for v, _ in records], dtype=np.float64)
    weights = np.array([w for _, w in records], dtype=np.float64)
    exact = sum((Fraction(v) * w for v, w in records), Fraction(0))
    assert Fraction(weighted_units(values, weights), 1 << UNIT_BITS) == exact


def test_full_significands_and_heaviest_weights_stay_exact():
    rng = np.random.default_rng(7)  # every significand bit set and weights at the limit, per sign
    values = (rng.random(500) + 1.0) * 2.0 ** rng.integers(-1074, 990, 500)
    values = (values.view(np.int64) | ((1 << 52) - 1)).view(np.float64) * rng.choice([-1.0, 1.0], 500)
    weights = np.where(rng.random(500) < 0.5, -1.0, 1.0) * float((1 << 26) - 1)
    exact = sum((Fraction(float(v)) * int(w) for v, w in zip(values, weights)), Fraction(0))
    assert Fraction(weighted_units(values, weights), 1 << UNIT_BITS) == exact


def test_weights_past_the_limit_are_refused():
    with pytest.raises(ValueError):
        weighted_units(np.ones(2), np.array([1.0, -float(1 << 26)]))


def test_blocks_past_float64s_exact_range_stay_exact():
    rng = np.random.default_rng(5)
    values = rng.lognormal(-4, 2, 3000)
    weights = np.full(3000, float(1 << 24))  # half * weight * terms would pass 2**53 in one block
    exact = sum((Fraction(float(v)) for v in values), Fraction(0)) * (1 << 24)
    assert Fraction(weighted_units(values, weights), 1 << UNIT_BITS) == exact


@given(st.lists(st.tuples(st.floats(0, 1e3), st.integers(1, 50)), min_size=1, max_size=40))
def test_the_mean_is_correctly_rounded(records):
    values = np.array([v for v, _ in records])
    weights = np.array([float(w) for _, w in records])
    count = sum(w for _, w in records)
    exact = sum((Fraction(v) * w for v, w in records), Fraction(0)) / count
    assert units_to_float(weighted_units(values, weights), count) == float(exact)


@dataclass(frozen=True)
class Member:
    class_name: str


def _feed(gaps: TokenGaps, calls) -> None:
    for kind, args in calls:
        getattr(gaps, kind)(*args)


@settings(max_examples=60, deadline=None)
@given(st.lists(  # cohort runs: previous end, step seconds, members per class, joiners
    st.tuples(st.floats(0, 5), st.lists(st.floats(1e-4, 2.0), min_size=1, max_size=8),
              st.lists(st.integers(0, 40), min_size=2, max_size=2), st.integers(0, 3)),
    min_size=1, max_size=12), st.integers(0, 2**32 - 1), st.sampled_from([4, 64, 1 << 15]))
def test_pooled_gaps_do_not_depend_on_the_order_records_come_in(runs, seed, flush_at):
    calls = []
    for prev, seconds, counts, joining in runs:
        ends = list(np.cumsum([prev, *seconds])[1:])
        joiners = {Member("ab"[i % 2]): prev - 0.25 * (i + 1) for i in range(joining)}
        calls.append(("cohort_steps", (prev, ends, dict(zip("ab", counts)), joiners)))
        calls.append(("add", (seconds[0] * 0.5, "ab"[len(calls) % 2])))
    shuffled = calls[:]
    random.Random(seed).shuffle(shuffled)
    saved = gaps_module.FLUSH_AT
    try:
        gaps_module.FLUSH_AT = flush_at  # a series reads it when made: flushes fall elsewhere
        first, second = TokenGaps(), TokenGaps()
        _feed(first, calls)
        _feed(second, shuffled)
    finally:
        gaps_module.FLUSH_AT = saved
    for cls in [None, *first.classes()]:
        a, b = first.stats(cls), second.stats(cls)
        assert a.keys() == b.keys()
        for key in a:  # bit for bit (NaN for an empty series equals itself here)
            assert a[key] == b[key] or (a[key] != a[key] and b[key] != b[key]), (cls, key)


@settings(max_examples=100, deadline=None)
@given(st.lists(  # decode runs: first end, step seconds, weight, joiners; some start near 0
    st.tuples(st.one_of(st.floats(0, 1e-3), st.floats(0, 1e4)), st.lists(st.floats(0, 30.0), min_size=1,
              max_size=9), st.integers(1, 40), st.integers(0, 40)), min_size=1, max_size=20))
def test_telescoped_runs_sum_to_their_steps_gaps(runs):
    series = gaps_module._Series()
    exact = Fraction(0)
    for start, seconds, members, joined in runs:
        ends = list(np.cumsum([start, *seconds]))
        prev = start * 0.75 if joined % 2 else math.nan
        joined = min(joined, members)
        series.add_run(ends, prev, float(members), joined)
        first = ends[0] - prev if prev == prev else 0.0
        exact += Fraction(first) * (members - joined)
        exact += sum((Fraction(b - a) for a, b in zip(ends, ends[1:])), Fraction(0)) * members
        series.add(seconds[0], float(joined + 1))  # a single record between runs
        exact += Fraction(seconds[0]) * (joined + 1)
    series.flush()
    assert Fraction(series.units, 1 << UNIT_BITS) == exact
