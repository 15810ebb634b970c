"""A spilled step log regrouped by instance (`StepLog.by_instance`) gives each instance exactly
its rows in log order, and the same start order as checking the log row by row."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.metrics import steps as steps_module
from servesim.metrics.steps import StepLog


def start_order_row_by_row(table) -> list[int] | None:
    last: dict[int, float] = {}
    for i, start in zip(table["instance"].tolist(), table["start_s"].tolist()):
        if i in last and not start > last[i]:
            return None
        last[i] = start
    return list(last)


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.floats(0.0, 1.0), st.booleans()), min_size=1, max_size=90),
       st.sampled_from([3, 8, 40]), st.sampled_from([2, 5, 13]))
def test_rows_regrouped_by_instance_equal_the_rows_of_each(rows, spill_rows, read_rows):
    saved = steps_module.BLOCK_ROWS, steps_module.READ_ROWS
    steps_module.BLOCK_ROWS, steps_module.READ_ROWS = 4, read_rows
    try:
        log, clock = StepLog(True, spill_rows), {}
        for n, (instance, seconds, back) in enumerate(rows):
            start = clock.get(instance, 0.0) + (-seconds if back else seconds)  # some go back
            clock[instance] = start
            log.record(instance, start, start + 0.5, 1, n, 2, 3, 4, 0.5, 7.0 * n)
        whole = np.concatenate(list(log.chunks()))
        split = log.by_instance()
        assert split.start_order == start_order_row_by_row(whole)
        assert split.instances == list(dict.fromkeys(whole["instance"].tolist()))
        for i in split.instances[::-1]:  # in any order, and twice
            for _ in range(2):
                pieces = list(split.pieces(i))
                assert all(len(p) <= read_rows for p in pieces)
                assert np.concatenate(pieces).tobytes() == whole[whole["instance"] == i].tobytes()
        assert log.by_instance() is split  # kept while the log does not grow
    finally:
        steps_module.BLOCK_ROWS, steps_module.READ_ROWS = saved
