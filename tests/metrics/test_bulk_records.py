"""A run's steps settled in one call (`StepLog.record_steps`, `PowerMeter.end_steps`) leave
exactly what settling them one by one leaves: the same rows, moved to the array and spilled at
the same points, and the same meter reading."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.engine.power import PowerMeter
from servesim.metrics import steps as steps_module
from servesim.metrics.steps import StepLog

step_st = st.tuples(st.floats(0.0, 1.0), st.integers(0, 64), st.integers(0, 64), st.floats(0.0, 1.0),
                    st.floats(0.0, 500.0))
runs_st = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 512), st.integers(0, 128),
                             st.lists(step_st, min_size=1, max_size=9)), min_size=1, max_size=8)


def steps_of(run, clock):
    """(starts, ends, running, waiting, kv, joules) of a run's steps from `clock` on."""
    starts, ends = [], []
    for seconds, *_ in run:
        starts.append(clock)
        clock += seconds
        ends.append(clock)
    columns = list(zip(*run))
    return starts, ends, list(columns[1]), list(columns[2]), list(columns[3]), list(columns[4])


@settings(max_examples=150, deadline=None)
@given(runs_st, st.sampled_from([1, 2, 3, 5, 8192]), st.sampled_from([4, 7, 1 << 16]),
       st.booleans())
def test_a_runs_rows_in_one_call_equal_one_by_one(runs, block_rows, spill_rows, enabled):
    saved, steps_module.BLOCK_ROWS = steps_module.BLOCK_ROWS, block_rows
    try:
        one, bulk = StepLog(enabled, spill_rows), StepLog(enabled, spill_rows)
        clock = 0.0
        for instance, prefill, decodes, run in runs:
            starts, ends, running, waiting, kv, joules = steps_of(run, clock)
            clock = ends[-1]
            for row in zip(starts, ends, running, waiting, kv, joules):
                s, e, r, w, k, j = row
                one.record(instance, s, e, 1, prefill, decodes, r, w, k, j)
            n = len(starts)
            bulk.record_steps(instance, starts, ends, [prefill] * n, [decodes] * n, running, waiting, kv,
                              joules)
            assert bulk._pending.columns() == one._pending.columns() and bulk._size == one._size
            assert bulk._spilled == one._spilled
        assert (bulk.num_steps, bulk.num_records) == (one.num_steps, one.num_records)
        if enabled:
            assert [p.tobytes() for p in bulk.chunks()] == [p.tobytes() for p in one.chunks()]
    finally:
        steps_module.BLOCK_ROWS = saved


@given(st.floats(0.0, 400.0), st.lists(st.tuples(st.floats(0.0, 2.0), st.floats(0.0, 900.0)), min_size=1,
                                        max_size=12))
def test_a_runs_joules_settled_at_once_equal_one_by_one(idle_w, steps):
    one, bulk = PowerMeter(idle_w), PowerMeter(idle_w)
    ends = [sum(s for s, _ in steps[: i + 1]) + 1.0 for i in range(len(steps))]
    for meter in (one, bulk):
        meter.begin(1.0, ends[-1] - 1.0, sum(j for _, j in steps))
    for end, (_, joules) in zip(ends, steps):
        one.end(end, joules)
    bulk.end_steps(ends[-1], [j for _, j in steps])
    later = ends[-1] + 3.0
    assert (bulk.joules(later), bulk.last_time, bulk.watts(later)) == \
        (one.joules(later), one.last_time, one.watts(later))
