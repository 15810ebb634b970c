"""`max_sim_time_s` stops the clock: the steps that ended before the limit count, the one in
flight does not, whether the engine ran the steps one by one or as a decode or mixed run."""

from __future__ import annotations

import pandas as pd
import pytest

import servesim
from tests.factories import small_config

DECODE = {"seed": 5, "workload.num_requests": 12, "workload.lengths.output.mean": 150.0}
MIXED = {**DECODE, "engine.scheduler": "chunked_prefill", "engine.chunk_size": 64,
         "workload.lengths.prompt.mean": 1500.0}
ELASTIC = {**DECODE, "cluster.instances": 1, "cluster.autoscaling.interval_s": 0.5,
           "cluster.autoscaling.policy": {"name": "queue_length", "requests_per_instance": 4}}
"""Instances an autoscaler starts during the run get the limit too."""


def _limited(changes: dict, limit: float, **engine):
    result = servesim.simulate(small_config(**changes, max_sim_time_s=limit, **engine))
    result.summary["sim"].pop("wall_s"), result.summary["sim"].pop("events")
    return result


def _assert_same(fast, slow) -> None:
    pd.testing.assert_frame_equal(fast.requests, slow.requests, check_exact=False, rtol=0, atol=1e-9)
    assert len(fast.steps) <= len(slow.steps)  # a decode run's row stands for several steps
    assert fast.steps.num_steps.sum() == slow.steps.num_steps.sum()
    assert fast.summary["sim"]["iterations"] == slow.summary["sim"]["iterations"]
    assert fast.summary["energy"]["total_j"] == pytest.approx(slow.summary["energy"]["total_j"], rel=1e-9)
    assert fast.summary["sim"]["simulated_s"] == slow.summary["sim"]["simulated_s"]


@pytest.mark.parametrize("changes", [DECODE, MIXED, ELASTIC], ids=["decode-runs", "mixed-runs", "elastic"])
@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_a_limit_inside_a_run_keeps_the_steps_ended_before_it(changes, fraction):
    span = servesim.simulate(small_config(**changes)).summary["sim"]["simulated_s"]
    fast = _limited(changes, span * fraction)
    slow = _limited(changes, span * fraction, **{"engine.max_run_steps": 1})
    assert 0 < fast.summary["requests"]["unfinished"]  # the limit cut the work short
    _assert_same(fast, slow)
