"""The repeatable promise: every policy gives the same results one step at a time as in multi-step
decode runs (per-request first token and finish times, preemptions)."""

from pathlib import Path

import numpy as np
import pytest

from servesim.build import build
from servesim.config import load_config
from servesim.engine import run_cluster
from servesim.metrics import StepLog, request_frame

DEFAULT_RUN_STEPS = 4096
BASE = {
    "seed": 11,
    "engine": {"kv_capacity_tokens": 6000, "max_num_seqs": 12, "chunk_size": 256},
    "workload": {
        "num_requests": 120,
        "arrival": {"rate": 30.0},
        "lengths": {
            "prompt": {"dist": "lognormal", "mean": 300, "sigma": 1.0, "max": 3000},
            "output": {"dist": "lognormal", "mean": 120, "sigma": 1.0, "max": 900},
        },
    },
    "slo": {"ttft_s": 0.5, "tpot_s": 0.03},
}

CASES = {
    "fcfs": {},
    "fcfs-swap": {"engine.preemption": "swap"},
    "chunked_prefill": {"engine.scheduler": "chunked_prefill"},
    "chunked_prefill-swap": {"engine.scheduler": "chunked_prefill", "engine.preemption": "swap"},
    "chunked-chunk-alloc": {"engine.batching": "chunked", "engine.kv_allocation": "chunk"},
    "srtf-chunked": {"engine.scheduler": "srtf", "engine.batching": "chunked"},
    "edf-chunked": {"engine.scheduler": "edf", "engine.batching": "chunked"},
    "priority-chunked-swap": {
        "engine.scheduler": {"name": "priority", "class_priority": {"online": 1}},
        "engine.batching": "chunked",
        "engine.preemption": "swap",
    },
    # engine profiles: the longest context of each step in a run, graph padding, host time
    "fcfs-split_kv": {"cost.profile": str(Path(__file__).parents[1] / "data" / "profile_split_kv.yaml")},
    "chunked_prefill-batch_kv": {
        "engine.scheduler": "chunked_prefill",
        "cost.profile": str(Path(__file__).parents[1] / "data" / "profile_batch_kv.yaml"),
    },
    "srtf": {"engine.scheduler": "srtf"},
    "srtf-evict-swap": {
        "engine.scheduler": "srtf",
        "engine.preemption": "swap",
        "engine.srtf": {"preempt_to_admit": True},
    },
    "srtf-aging": {"engine.scheduler": "srtf", "engine.srtf": {"aging_s": 2.0}},
    "srtf-noisy": {
        "engine.scheduler": "srtf",
        "engine.predictor": {"name": "noisy_oracle", "sigma": 1.0},
    },
    "srtf-bucket": {"engine.scheduler": "srtf", "engine.predictor": "bucket"},
    "srtf-mean": {"engine.scheduler": "srtf", "engine.predictor": "mean"},
    "edf": {"engine.scheduler": "edf"},
    "edf-admission": {"engine.scheduler": "edf", "engine.edf": {"admission_control": True}},
    "priority": {
        "engine.scheduler": "priority",
        "engine.priority": {"class_priority": {"online": 1, "offline": 0}},
    },
}


def run(overrides, max_run_steps):
    built = build(load_config(BASE, {**overrides, "engine.max_run_steps": max_run_steps}))
    for r in built.requests:  # a third online, the rest offline (used by `priority` only)
        r.class_name = "online" if r.request_id % 3 == 0 else "offline"
    log = StepLog()
    stats = run_cluster(built.requests, built.parts, built.router, log)
    return request_frame(built.requests), stats, log


@pytest.mark.parametrize("case", sorted(CASES))
def test_step_by_step_equals_multi_step(case):
    single, _, _ = run(CASES[case], 1)
    multi, _, log = run(CASES[case], DEFAULT_RUN_STEPS)
    assert max(log.rows["num_steps"]) > 1  # runs of several steps did happen
    for col in ("first_token_s", "finish_s", "tbt_max_s"):
        a, b = single[col].to_numpy(), multi[col].to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b))
        assert np.nanmax(np.abs(a - b)) < 1e-9, col
    assert (single["preemptions"] == multi["preemptions"]).all()
    assert (single["status"] == multi["status"]).all()
    # invariants: conservation and causality
    done = multi["status"] == "completed"
    assert done.sum() + (multi["status"] == "rejected").sum() == len(multi)
    ok = multi[done]
    assert (ok["arrival_s"] <= ok["first_token_s"]).all()
    assert (ok["first_token_s"] <= ok["finish_s"]).all()
    assert (ok["generated_tokens"] == ok["output_tokens"]).all()
    assert (multi.loc[~done, "rejected_reason"] != "").all()


def test_the_cases_exercise_pausing_and_preemption():
    """Guard the guard: the contention in BASE must make the ranked policies pause and preempt."""
    _, stats, _ = run(CASES["srtf-evict-swap"], DEFAULT_RUN_STEPS)
    assert stats.preemptions > 0
    frame, _, _ = run(CASES["edf-admission"], DEFAULT_RUN_STEPS)
    assert (frame["rejected_reason"] == "predicted_ttft_slo_miss").any()
