"""StepLog: rows survive the flush into numpy blocks exactly, in order, with the frame's dtypes."""

import numpy as np

from servesim.metrics import steps
from servesim.metrics.steps import COLUMNS, StepLog


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
