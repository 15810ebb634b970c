"""Named invariants over small random configs (hypothesis):

- request conservation: arrived == completed + rejected + unfinished, every request accounted once;
- request conservation with failures: arrived == completed + rejected + failed + unfinished on
  elastic fleets (random failures, retries, migrations, autoscaling), KV conserved every step;
- KV block conservation: free blocks + blocks held by running requests == pool size, after every step;
- causality: arrival <= first token <= finish, and e2e >= ttft;
- determinism: the same seed gives identical summaries and request tables;
- multi-step runs equal step-by-step simulation (latencies and energy, with and without a power cap;
  decode runs and chunked prefill's mixed runs; with or without a time limit), mixed runs bit
  for bit (every step-log row);
- energy conservation: an instance's meter equals its steps' joules plus idle power between them;
- arrivals do not depend on the engine's settings (common random numbers);
- token gaps: one pooled inter-token gap per token after the first;
- length filters: nothing longer than the cap is served, and arrivals keep their times.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import servesim
from servesim.build import build
from servesim.config import load_config
from servesim.simulation import run
from servesim.testing import checked_run
from tests.factories import same_summary, small_config

configs = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 10_000),
        "engine.max_num_seqs": st.integers(1, 48),
        "engine.max_num_batched_tokens": st.sampled_from([2048, 4096, 8192]),
        "engine.block_size": st.sampled_from([1, 8, 16, 32]),
        "engine.kv_capacity_tokens": st.integers(2_000, 40_000),
        "cluster.instances": st.integers(1, 3),
        "workload.num_requests": st.integers(1, 50),
        "workload.arrival.rate": st.floats(1.0, 200.0),
        "workload.lengths.output.mean": st.floats(2.0, 200.0),
    }
)

chunked_configs = st.tuples(configs, st.fixed_dictionaries({
    "engine.scheduler": st.just("chunked_prefill"),
    "engine.chunk_size": st.sampled_from([16, 64, 256, 512]),
    "engine.kv_allocation": st.sampled_from(["prompt", "chunk"]),
    "workload.lengths.prompt.mean": st.floats(50.0, 2000.0),
})).map(lambda pair: {**pair[0], **pair[1]})
"""The same with chunked prefill (mixed runs: the cohort plus one prompt's chunks)."""

def timed(strategy):
    """The same configs, half of them with a time limit (which often stops the clock inside a
    run: the steps ended before it must count as they do step by step)."""
    limits = st.one_of(st.none(), st.floats(0.05, 3.0))
    return st.tuples(strategy, limits).map(lambda pair: {**pair[0], "max_sim_time_s": pair[1]})


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def simulate_checked(changes: dict):
    """Run a config, checking KV block conservation after every step of every instance."""
    return checked_run(small_config(**changes))


@SETTINGS
@given(configs)
def test_request_conservation(changes):
    result = simulate_checked(changes)
    req = result.summary["requests"]
    assert req["arrived"] == changes["workload.num_requests"] == len(result.requests)
    assert req["arrived"] == req["completed"] + req["rejected"] + req["unfinished"]
    assert result.requests["request_id"].is_unique
    assert req["unfinished"] == 0  # no time limit: everything admissible finishes


@SETTINGS
@given(configs)
def test_kv_block_conservation(changes):
    simulate_checked(changes)  # the per-step check is the assertion


@SETTINGS
@given(configs)
def test_causality(changes):
    frame = simulate_checked(changes).requests
    done = frame[frame.status == "completed"]
    assert (done.arrival_s <= done.first_token_s + 1e-12).all()
    assert (done.first_token_s <= done.finish_s + 1e-12).all()
    assert (done.e2e_s + 1e-12 >= done.ttft_s).all()
    assert (done.tbt_max_s >= 0).all()
    rejected = frame[frame.status == "rejected"]
    assert (rejected.rejected_reason != "").all() and rejected.first_token_s.isna().all()


@settings(max_examples=10, deadline=None)
@given(configs)
def test_determinism(changes):
    a = servesim.simulate(small_config(**changes))
    b = servesim.simulate(small_config(**changes))
    assert same_summary(a.summary, b.summary)
    pd.testing.assert_frame_equal(a.requests, b.requests)


@settings(max_examples=15, deadline=None)
@given(timed(st.one_of(configs, chunked_configs)))
def test_multi_step_runs_equal_step_by_step(changes):
    fast = servesim.simulate(small_config(**changes)).requests
    slow = servesim.simulate(small_config(**changes, **{"engine.max_run_steps": 1})).requests
    for col in ("first_token_s", "finish_s", "tbt_max_s"):
        np.testing.assert_allclose(fast[col], slow[col], rtol=0, atol=1e-9)
    assert (fast.preemptions == slow.preemptions).all()
    assert (fast.status == slow.status).all()
    assert (fast.generated_tokens == slow.generated_tokens).all()
    np.testing.assert_allclose(fast.energy_j.sum(), slow.energy_j.sum(), rtol=1e-9)


def _single_mixed_steps(changes: dict):
    """The run with every mixed (cohort plus chunk) step planned and run on its own, handovers
    (a prompt's last chunk beside the next one's first) included; decode runs stay as they are,
    so the two runs must agree bit for bit."""
    never = lambda scheduler, plan: False  # noqa: E731
    with mock.patch("servesim.engine.instance.repeats_chunk", never), \
            mock.patch("servesim.engine.instance.chunk_follows", never):
        return servesim.simulate(small_config(**changes))


queued_chunked_configs = st.tuples(chunked_configs, st.floats(50.0, 300.0), st.integers(10, 50)).map(
    lambda t: {**t[0], "workload.arrival.rate": t[1], "workload.num_requests": t[2]}
)
"""Chunked configs whose prompts queue, so that prompts hand the budget over (handover runs)."""

pooled_queued_chunked_configs = st.tuples(queued_chunked_configs, st.integers(2, 4)).map(
    lambda t: {**t[0], "cluster.instances": t[1]}
)
"""The same on several instances, whose token gaps are pooled (runs register them ahead)."""


@settings(max_examples=15, deadline=None)
@given(timed(st.one_of(chunked_configs, queued_chunked_configs, pooled_queued_chunked_configs)))
def test_mixed_runs_equal_step_by_step(changes):
    fast, slow = servesim.simulate(small_config(**changes)), _single_mixed_steps(changes)
    pd.testing.assert_frame_equal(fast.requests, slow.requests, check_exact=True)
    # a row per step; instances' rows interleave in the order they are recorded (a run's at its end)
    by_instance = [s.steps.sort_values("instance", kind="stable", ignore_index=True) for s in (fast, slow)]
    pd.testing.assert_frame_equal(*by_instance, check_exact=True)
    assert same_summary(fast.summary, slow.summary, ignore=("wall_s", "events"))


@settings(max_examples=4, deadline=None)
@given(configs, st.floats(200.0, 650.0))
def test_multi_step_runs_equal_step_by_step_under_a_power_cap(changes, cap):
    capped = {**changes, "power.cap_w": cap}
    fast = servesim.simulate(small_config(**capped))
    slow = servesim.simulate(small_config(**capped, **{"engine.max_run_steps": 1}))
    np.testing.assert_allclose(fast.requests.finish_s, slow.requests.finish_s, rtol=0, atol=1e-9)
    assert fast.summary["energy"]["total_j"] == pytest.approx(slow.summary["energy"]["total_j"], rel=1e-9)


@settings(max_examples=10, deadline=None)
@given(configs)
def test_energy_conservation(changes):
    built = build(load_config(small_config(**changes)))
    instances = {}
    result = run(built, after_step=lambda inst: instances.setdefault(inst.index, inst))
    horizon = result.summary["sim"]["simulated_s"]
    steps = result.steps
    for i, inst in instances.items():
        mine = steps[steps.instance == i]
        busy_s = (mine.end_s - mine.start_s).sum()
        expected = mine.energy_j.sum() + inst.power.idle_w * (horizon - busy_s)
        assert inst.meter.joules(horizon) == pytest.approx(expected, rel=1e-9)
    e = result.summary["energy"]
    assert e["total_j"] == pytest.approx(e["busy_j"] + e["idle_j"], rel=1e-12)


def test_engine_settings_never_change_the_arrivals():
    base = servesim.simulate(small_config()).requests
    other = servesim.simulate(
        small_config(**{"engine.max_num_seqs": 3, "cluster.instances": 2})
    ).requests
    cols = ["arrival_s", "prompt_tokens", "output_tokens"]
    pd.testing.assert_frame_equal(base[cols], other[cols])


def test_overload_with_tiny_cache_preempts_and_still_finishes():
    result = simulate_checked(
        {"engine.kv_capacity_tokens": 3000, "workload.arrival.rate": 500.0, "workload.num_requests": 80}
    )
    assert result.summary["kv"]["preemptions"] > 0
    assert result.summary["requests"]["completed"] + result.summary["requests"]["rejected"] == 80


@pytest.mark.parametrize("limit", [0.5, 2.0])
def test_time_limit_leaves_requests_unfinished_but_counted(limit):
    result = servesim.simulate(small_config(**{"max_sim_time_s": limit, "workload.arrival.rate": 50.0}))
    req = result.summary["requests"]
    assert req["unfinished"] > 0
    assert req["arrived"] == req["completed"] + req["rejected"] + req["unfinished"]


@SETTINGS
@given(configs)
def test_token_gap_conservation(changes):
    """Every token after a request's first is one pooled inter-token gap, no more, no fewer; the
    longest pooled gap is the longest of any request."""
    result = simulate_checked(changes)
    r = result.requests
    emitted = r["generated_tokens"].to_numpy()
    itl = result.summary.get("itl", {"gaps": 0, "max": float("nan")})
    assert itl["gaps"] == int(np.maximum(emitted - 1, 0).sum())
    if itl["gaps"]:
        assert itl["max"] == pytest.approx(np.nanmax(r["tbt_max_s"].to_numpy()), rel=1e-12)
        assert result.summary["latency"]["itl"]["p50"] <= itl["max"] * (1 + 1e-3)


@SETTINGS
@given(configs, st.integers(300, 3000), st.sampled_from(["drop", "clip", "reject"]))
def test_length_filter_lets_nothing_over_long_through(changes, limit, action):
    """With a length filter, no request longer than the cap is served; arrivals keep their times."""
    changes = {**changes, "workload.filter": {"max_total_tokens": limit, "action": action}}
    result = simulate_checked(changes)
    r = result.requests
    served = r[r["status"] != "rejected"]
    assert ((served["prompt_tokens"] + served["output_tokens"]) <= limit).all()
    plain = servesim.simulate(load_config(small_config(**{k: v for k, v in changes.items()
                                                          if k != "workload.filter"})))
    assert np.allclose(r["arrival_s"].to_numpy(), plain.requests["arrival_s"].to_numpy())


elastic_configs = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 10_000),
        "engine.kv_capacity_tokens": st.integers(4_000, 40_000),
        "cluster.instances": st.integers(1, 3),
        "workload.num_requests": st.integers(1, 60),
        "workload.arrival.rate": st.floats(5.0, 200.0),
        "cluster.faults.mtbf_s": st.floats(0.2, 20.0),
        "cluster.faults.repair_s": st.floats(0.1, 5.0),
        "cluster.faults.on_failure": st.sampled_from(["retry", "fail"]),
        "cluster.faults.max_retries": st.integers(0, 3),
        "cluster.migration.interval_s": st.floats(0.05, 1.0),
        "cluster.migration.policy": st.sampled_from(
            [{"name": "load", "min_pressure": 0.0, "threshold": 0.0}, "fragmentation", "priority"]
        ),
        "cluster.autoscaling.cold_start.fixed_s": st.floats(0.0, 3.0),
        "cluster.autoscaling.policy": st.sampled_from(
            [{"name": "queue_length", "requests_per_instance": 4}, "target_utilization"]
        ),
    }
)


def simulate_elastic_checked(changes: dict):
    """An elastic run with KV block conservation checked after every step of every instance."""
    from tests.factories import check_kv

    changes = {"cluster.autoscaling.interval_s": 0.5, "cluster.autoscaling.cooldown_s": 1.0,
               "cluster.autoscaling.max_instances": 4, **changes}
    built = build(load_config(small_config(**changes)))
    result = run(built, after_step=check_kv)
    for instance in built.elastic.instances:
        kv = instance.kv
        if not instance.failed:
            assert kv.num_free_blocks == kv.num_blocks, "blocks leaked at the end"
    return result


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(elastic_configs)
def test_request_conservation_with_failures(changes):
    """Failures, retries, migrations and scaling lose no request: each one completes, is
    rejected or fails with a reason; nothing stays in flight without a time limit."""
    result = simulate_elastic_checked(changes)
    req, frame = result.summary["requests"], result.requests
    assert req["arrived"] == changes["workload.num_requests"] == len(frame)
    assert req["arrived"] == req["completed"] + req["rejected"] + req["failed"] + req["unfinished"]
    assert req["unfinished"] == 0
    assert frame["request_id"].is_unique
    failed = frame[frame.status == "failed"]
    assert failed.rejected_reason.isin(["instance_failed", "retries_exhausted", "no_instance"]).all()
    done = frame[frame.status == "completed"]
    assert (done.generated_tokens == done.output_tokens).all()  # migration keeps every token
    assert req["retried"] == int((frame.retries > 0).sum())
    emitted = frame["generated_tokens"].to_numpy()  # token gaps: one per token after the first
    assert result.summary.get("itl", {"gaps": 0})["gaps"] == int(np.maximum(emitted - 1, 0).sum())
