"""Steps registered ahead (`TokenGaps.steps_ahead`) record exactly what single steps would.

Several instances pool their token gaps; a run of steps slept as one event registers its steps
when it starts and their records are made as the clock passes their ends. The reference makes
each step's records at the step's end, one step at a time, in time order with the other
instances' records: the series (and so the mean, summed in record order) must be the same bit
for bit, flushes included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from servesim.metrics import gaps as gaps_module
from servesim.metrics.gaps import TokenGaps


@dataclass(frozen=True)
class Member:
    class_name: str


class Clock:
    now = 0.0


CLASSES = ["a", "b"]
runs_st = st.lists(  # per run: start delay, step seconds, members per class, joiners, steps run
    st.tuples(
        st.floats(0.0, 3.0),
        st.lists(st.floats(0.01, 2.0), min_size=1, max_size=6),
        st.lists(st.integers(0, 3), min_size=2, max_size=2),
        st.integers(0, 2),
        st.integers(1, 6),
    ),
    min_size=1, max_size=4,
)


def schedule(instances, singles):
    """Events in time order: (time, kind, order, payload); steps end before a record made at
    the same instant, and runs registered earlier before those registered later."""
    events, order = [], 0
    for runs in instances:
        clock, prev = 0.0, -1.0  # the cohort's step before (NaN only before its first)
        for delay, seconds, counts, joining, cut in runs:
            start = clock + delay
            ends = list(np.cumsum([start, *seconds])[1:])
            class_counts = dict(zip(CLASSES, counts))
            joiners = {Member(CLASSES[i % 2]): start - 0.5 * (i + 1) for i in range(joining)}
            run = (prev, ends, class_counts, joiners, min(cut, len(ends)))
            order += 1
            events.append((start, 2, order, ("run", run)))
            for j, end in enumerate(ends[: run[4]]):
                events.append((end, 0, order, ("step", run, j)))
            clock, prev = ends[run[4] - 1], ends[run[4] - 1]
    for t, gap, cls in singles:
        events.append((t, 1, 0, ("single", gap, cls)))
    return sorted(events, key=lambda e: e[:3])


def reference(events) -> TokenGaps:
    """Each step's records at its end, as `cohort_steps` of that step alone makes them."""
    ref = TokenGaps()
    for _, _, _, payload in events:
        if payload[0] == "single":
            ref._of(payload[2]).add(payload[1], 1.0)
        elif payload[0] == "step":
            (prev, ends, class_counts, joiners, _), j = payload[1], payload[2]
            joined = {}
            if j == 0:
                for member, last in joiners.items():
                    joined[member.class_name] = joined.get(member.class_name, 0) + 1
                    ref._of(member.class_name).add(ends[0] - last, 1.0)
            gap = ends[j] - (ends[j - 1] if j else prev)
            for cls, n in class_counts.items():
                if n - joined.get(cls, 0) > 0:
                    ref._of(cls).add(gap, float(n - joined.get(cls, 0)))
    return ref


def registered_ahead(events) -> TokenGaps:
    new, clock = TokenGaps(), Clock()
    for t, _, _, payload in events:
        clock.now = t
        if payload[0] == "single":
            new.add(payload[1], payload[2])
        elif payload[0] == "run":
            prev, ends, class_counts, joiners, steps = payload[1]
            run = new.steps_ahead(clock, prev, ends, class_counts, dict(joiners))
            run.steps = steps  # a run cut short (known here before any step ends)
    return new


def series_state(g: TokenGaps):
    for s in g._series.values():
        s.flush()
    return [(cls, s.count, s.total, s.low, s.high, s.hist.tobytes()) for cls, s in g._series.items()]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(runs_st, min_size=1, max_size=4),
    st.lists(st.tuples(st.floats(0.0, 40.0), st.floats(1e-4, 1.0), st.sampled_from(CLASSES)), max_size=12),
    st.sampled_from([2, 3, 5, 1 << 15]),
)
def test_steps_registered_ahead_record_what_single_steps_do(instances, singles, flush_at):
    events = schedule(instances, singles)
    times = [e[0] for e in events if e[3][0] != "run"]
    assume(len(set(times)) == len(times))  # ties are ordered by the rule in the module doc
    saved, gaps_module.FLUSH_AT = gaps_module.FLUSH_AT, flush_at  # flushes inside runs' records
    try:
        ref, new = reference(events), registered_ahead(events)
        assert repr(new.stats()) == repr(ref.stats())  # reading releases what is due
        assert series_state(new) == series_state(ref)
    finally:
        gaps_module.FLUSH_AT = saved


def one_run(ends: np.ndarray, prev: float, weight: float, joined: int):
    """A run's records as each decode run made them: np.diff-like gaps, np.full weights."""
    gaps = np.empty(len(ends))
    gaps[0] = ends[0] - prev if prev == prev else 0.0
    np.subtract(ends[1:], ends[:-1], out=gaps[1:])
    weights = np.full(len(ends), weight)
    weights[0] -= joined
    return gaps, weights


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(
    st.lists(st.floats(1e-4, 1.0), min_size=1, max_size=8),
    st.one_of(st.just(math.nan), st.floats(0.0, 10.0)),
    st.integers(1, 64),
    st.integers(0, 3),
), min_size=1, max_size=6))
def test_decode_runs_expanded_at_once_equal_each_run_alone(runs):
    runs = [(np.cumsum([10.0, *seconds])[1:], prev, float(n), min(joined, n))
            for seconds, prev, n, joined in runs]
    series = gaps_module._Series()
    for run in runs:
        series.add_run(*run)
    gaps, weights = gaps_module._run_records(series.run_ends, series.run_lengths, series.run_weights,
                                             series.run_first_gaps, series.run_first_weights)
    alone = [one_run(*run) for run in runs]
    assert gaps.tobytes() == np.concatenate([g for g, _ in alone]).tobytes()
    assert weights.tobytes() == np.concatenate([w for _, w in alone]).tobytes()
