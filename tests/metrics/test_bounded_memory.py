"""Bounded memory (issue 17 item 2): requests made on arrival and logged when they end, a step log
that spills to a file and is read a piece at a time. Each must give exactly the results of keeping
everything in memory."""

import gc

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.build import build
from servesim.config import load_config
from servesim.core.request import Request
from servesim.metrics import energy
from servesim.metrics import steps as step_module
from servesim.metrics.step_scan import Probe, scan
from servesim.simulation import run
from tests.compiled import pure_python_only
from tests.factories import small_config

MIXED = small_config(**{
    "workload.num_requests": 80,
    "workload.filter": {"max_total_tokens": 900, "action": "reject"},  # some refused before the run
    "cluster.instances": 2, "cluster.router": "least_loaded", "engine.scheduler": "chunked_prefill",
})


def _outputs(result):
    return result.summary, result.requests, result.timeseries(), result.steps


def _assert_same(a, b):
    sa, ra, ta, pa = _outputs(a)
    sb, rb, tb, pb = _outputs(b)
    sa["sim"].pop("wall_s"), sb["sim"].pop("wall_s")
    assert sa == sb
    pd.testing.assert_frame_equal(ra, rb, check_exact=True)
    pd.testing.assert_frame_equal(ta, tb, check_exact=True)
    pd.testing.assert_frame_equal(pa, pb, check_exact=True)


def test_streamed_requests_give_what_request_objects_give():
    for changes in ({}, {"max_sim_time_s": 1.5}):  # all ended; cut short: in flight and never arrived
        config = load_config(MIXED, changes)
        streamed = build(config)
        held = build(config)
        assert len(held.requests) == 80  # asked for: the run simulates these objects
        a, b = run(streamed), run(held)
        assert not streamed.requests_made and held.requests_made
        assert (a.requests["status"] == "rejected").any()
        assert changes or not (a.requests["status"] == "unfinished").any()
        _assert_same(a, b)


def test_a_streamed_run_lets_ended_requests_go():
    built = build(load_config(MIXED, {"workload.num_requests": 400, "workload.filter": None}))
    result = run(built)
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, Request)]
    # at most the cohorts' stale heap entries (64 + 2 x members each, dropped as members join)
    assert len(alive) <= 2 * 64 and result.summary["requests"]["completed"] == 400


@pure_python_only  # patches the step log's constants and methods
def test_a_spilled_step_log_read_in_batches_gives_the_same_run(monkeypatch):
    whole = run(build(load_config(MIXED)))
    monkeypatch.setattr(step_module, "BLOCK_ROWS", 16)
    monkeypatch.setattr(step_module, "SPILL_ROWS", 40)
    monkeypatch.setattr(step_module, "READ_ROWS", 13)
    monkeypatch.setattr(energy, "REQUEST_BATCH", 7)  # several passes over the log
    spilled_logs = []
    original = step_module.StepLog._spill

    def spill(log):
        spilled_logs.append(log)
        original(log)

    monkeypatch.setattr(step_module.StepLog, "_spill", spill)
    pieces = run(build(load_config(MIXED)))
    assert spilled_logs and len(pieces.step_columns) > 100
    _assert_same(whole, pieces)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.0, 10.0), min_size=1, max_size=60),
    st.lists(st.floats(0.0, 1e3), min_size=60, max_size=60),
    st.lists(st.integers(1, 7), min_size=1, max_size=20),
    st.lists(st.floats(-1.0, 700.0), min_size=1, max_size=20),
    st.sampled_from(["left", "right"]),
)
def test_probe_sums_equal_those_over_the_whole_column(gaps, values, sizes, queries, side):
    keys = np.cumsum(np.asarray(gaps) + 1e-3)  # strictly increasing, as a log's starts
    x = np.asarray(values[: len(keys)])
    q = np.asarray(queries)
    cuts, at = [], 0
    while at < len(keys):
        size = sizes[len(cuts) % len(sizes)]
        cuts.append((at, min(at + size, len(keys))))
        at += size
    chunks = [{"k": keys[a:b], "x": x[a:b]} for a, b in cuts]
    probe = Probe("k", side, q, ["x"], ["x"])
    scan(iter(chunks), [probe], ["x"])
    n = np.searchsorted(keys, q, side=side)
    cum = np.concatenate(([0.0], np.cumsum(x)))
    assert (probe.count == n).all()
    assert (probe.at["x"] == cum[n]).all()  # bit for bit
    some = n > 0
    assert (probe.before["x"][some] == cum[n[some] - 1]).all()
    assert (probe.last["x"][some] == x[n[some] - 1]).all() and np.isnan(probe.last["x"][~some]).all()


def test_csvs_written_a_few_rows_at_a_time_are_the_same_bytes(tmp_path, monkeypatch):
    from servesim.metrics import columns

    result = run(build(load_config(MIXED)))
    result.save(tmp_path / "whole")
    monkeypatch.setattr(columns, "CSV_ROWS", 7)
    result.save(tmp_path / "pieces")
    for name in ("requests.csv", "timeseries.csv"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "pieces" / name).read_bytes()
