"""StepLog: rows survive the flush into numpy blocks exactly, in order, with the frame's dtypes."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.metrics import steps
from servesim.metrics.steps import COLUMNS, ROW, StepLog


def test_rows_cross_block_boundaries_exactly(monkeypatch):
    monkeypatch.setattr(steps, "BLOCK_ROWS", 4)
    log = StepLog()
    rows = [(i % 3, i * 0.1, i * 0.1 + 1 / 3, 1 + i % 5, 512 * i, i, i + 1, i // 2, i / 7, 1e-3 * i)
            for i in range(11)]
    for row in rows:
        log.record(*row)
    assert log.num_records == 11 and log.num_steps == sum(r[3] for r in rows)
    frame = log.to_frame()
    assert list(frame.columns) == list(COLUMNS)
    assert [tuple(r) for r in frame.itertuples(index=False)] == rows
    assert frame["instance"].dtype == np.int64 and frame["kv_usage"].dtype == np.float64
    log.record(*rows[0])  # appending after reading keeps what was there
    assert log.rows["end_s"] == [r[2] for r in rows] + [rows[0][2]]


def test_empty_and_disabled_logs_give_empty_frames():
    assert len(StepLog().to_frame()) == 0
    off = StepLog(enabled=False)
    off.record(0, 0.0, 1.0, 3, 0, 2, 2, 0, 0.5)
    assert off.num_steps == 3 and len(off.to_frame()) == 0


step_st = st.tuples(st.floats(0.0, 1e6), st.floats(0.0, 1.0), st.integers(-5, 70_000), st.integers(0, 64),
                    st.integers(0, 2**31 - 1), st.floats(0.0, 1.0), st.floats(0.0, 1e4))
calls_st = st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.lists(step_st, min_size=1, max_size=11)),
                    min_size=1, max_size=9)


@settings(max_examples=150, deadline=None)
@given(calls_st, st.sampled_from([1, 2, 3, 5, 8192]), st.sampled_from([4, 7, 1 << 16]))
def test_records_and_runs_interleaved_give_the_rows_as_tuples(calls, block_rows, spill_rows):
    """`record` and `record_steps` called in any mix, across block and spill boundaries: the
    pending columns hold what has not moved, and the log is exactly the rows converted as tuples."""
    saved, steps.BLOCK_ROWS = steps.BLOCK_ROWS, block_rows
    try:
        log, expected = StepLog(True, spill_rows), []
        for as_run, instance, run in calls:
            rows = [(instance, start, start + seconds, 1, prefill, decodes, running, 2, kv, joules)
                    for start, seconds, prefill, decodes, running, kv, joules in run]
            if as_run:
                columns = [list(c) for c in zip(*rows)]
                log.record_steps(instance, *columns[1:3], *columns[4:])
            else:
                for row in rows:
                    log.record(*row)
            expected += rows
            assert len(log._pending) == len(expected) % block_rows
            assert log._size + log._spilled + len(log._pending) == len(expected)
        assert log.num_records == log.num_steps == len(expected)
        size = spilled = 0  # spilled where whole blocks overflow the rows kept in memory
        for _ in range(len(expected) // block_rows):
            if size + block_rows > spill_rows:
                spilled, size = spilled + size, 0
            size += block_rows
        assert (log._spilled, log._size) == (spilled, size)
        pieces = list(log.chunks())
        assert not len(log._pending)
        assert np.concatenate(pieces).tobytes() == np.array(expected, dtype=ROW).tobytes()
    finally:
        steps.BLOCK_ROWS = saved


def test_pending_values_of_other_number_types_convert_as_numpy_converts_them():
    """The per-column packing takes what `np.array` of row tuples took: ints in float columns,
    bools, the int32 extremes, and numpy scalars in a run's lists (which compiled code does not
    check item by item)."""
    log = StepLog()
    log.record(1, 0, 1, True, -(2**31), 2**31 - 1, 0, 0, 1, 2)
    log.record_steps(3, [np.float64(0.5)], [np.float32(0.75)], [np.int64(4)], [np.int32(5)], [np.int16(6)],
                     [np.uint8(7)], [np.float16(0.5)], [np.int64(9)])
    (piece,) = log.chunks()
    rows = [(1, 0, 1, True, -(2**31), 2**31 - 1, 0, 0, 1, 2),
            (3, np.float64(0.5), np.float32(0.75), 1, np.int64(4), np.int32(5), np.int16(6), np.uint8(7),
             np.float16(0.5), np.int64(9))]
    assert piece.tobytes() == np.array(rows, dtype=ROW).tobytes()
