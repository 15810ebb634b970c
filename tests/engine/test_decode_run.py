"""Decode runs priced in plain Python (short runs) equal the numpy pricing bit for bit: the cost
model's step times, the power model's run energy, and whole simulations with either path."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import numpy as np
import pandas as pd
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

import servesim
from servesim.catalog import get_hardware, get_model
from servesim.cost import RooflineCostModel
from servesim.cost.host import EngineProfile
from servesim.cost.layout import Layout
from servesim.cost.power import PowerModel, power_profile
from servesim.cost.profile import DECODE_ATTENTION, family_profile
from servesim.cost.work import WorkModel
from servesim.engine import decode_run
from tests.compiled import pure_python_only
from tests.factories import same_summary, small_config

HOST = {"graph.serial.const": 2e-4, "graph.enqueue.const": 3e-4, "graph.enqueue.kv_tokens": 1e-9,
        "eager.serial.const": 3e-4, "eager.enqueue.const": 0.01, "eager.tail": 0.001}


def roofline(mode: str, host: bool, floor: float, model: str = "llama3-8b") -> RooflineCostModel:
    engine = EngineProfile((1, 2, 4, 8, 16, 32), HOST) if host else EngineProfile()
    profile = family_profile("hopper").with_values(decode_attention=mode, engine=engine)
    return RooflineCostModel(get_model(model), get_hardware("h100-sxm"), profile=profile,
                             host_overhead_s=floor)


def a_run(n: int, ctx0: int, first: int, k: int):
    """A run's context sums and longest contexts, as lists and as the arrays numpy prices."""
    ctx, longest = list(range(ctx0, ctx0 + n * k, n)), list(range(first, first + k))
    return ctx, longest, np.array(ctx, dtype=np.float64), np.array(longest, dtype=np.float64)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(DECODE_ATTENTION), st.booleans(), st.sampled_from([0.0, 0.004]),
       st.integers(1, 300), st.integers(0, 2_000_000), st.integers(1, 30_000), st.integers(1, 80))
def test_decode_run_times_are_decode_step_times_bit_for_bit(mode, host, floor, n, ctx0, first, k):
    cm = roofline(mode, host, floor)
    ctx0 += n * first
    _, _, ctx_a, longest_a = a_run(n, ctx0, first, k)
    assert cm.decode_run_times(n, ctx0, first, k) == cm.decode_step_times(n, ctx_a, longest_a).tolist()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 256), st.integers(0, 2_000_000), st.integers(1, 30_000), st.integers(1, 80),
       st.integers(1, 80), st.sampled_from([None, 150.0, 400.0]))
def test_decode_run_energy_of_lists_is_that_of_arrays(n, ctx0, first, k, steps, board_w):
    """`board_w`: a low board limit, so that some runs stay above it, some cross it."""
    cm, hardware, model = roofline("mean", False, 0.0), get_hardware("h100-sxm"), get_model("llama3-8b")
    work = WorkModel(Layout(model, 1), cm.profile)
    power = PowerModel(cm, work, hardware, power_profile(hardware.family), board_limit_w=board_w)
    ctx, longest, ctx_a, longest_a = a_run(n, ctx0 + n * first, first, k)
    seconds = cm.decode_step_times(n, ctx_a, longest_a)
    steps = min(steps, k)
    assert power.decode_run_energy(n, ctx, seconds.tolist(), steps) == \
        power.decode_run_energy(n, ctx_a, seconds, steps)


configs = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "model": st.sampled_from(["llama3-8b", "mistral-7b-v0.1"]),  # the second: a sliding window
    "engine.max_num_seqs": st.integers(1, 48),
    "engine.block_size": st.sampled_from([1, 8, 16, 32]),
    "engine.kv_capacity_tokens": st.integers(2_000, 40_000),
    "engine.max_run_steps": st.sampled_from([2, 16, 4096]),
    "cost.host_overhead_s": st.sampled_from([0.0, 0.02]),
    "cluster.instances": st.integers(1, 2),
    "workload.num_requests": st.integers(1, 40),
    "workload.arrival.rate": st.floats(1.0, 200.0),
    "workload.lengths.output.mean": st.floats(2.0, 200.0),
})


def simulate(changes: dict, short_run: int):
    with mock.patch("servesim.engine.decode_run.SHORT_RUN", short_run):
        return servesim.simulate(small_config(**changes))


@settings(max_examples=20, deadline=None)
@given(configs, st.sampled_from([None, 250.0]), st.sampled_from(["fcfs", "chunked_prefill"]))
def test_runs_priced_in_python_equal_runs_priced_in_numpy(changes, cap_w, scheduler):
    changes = {**changes, "engine.scheduler": scheduler}
    if cap_w is not None:  # capped: the clock is solved per step in numpy, whatever the length
        changes["power.cap_w"] = cap_w
    python, numpy = simulate(changes, 10**9), simulate(changes, 0)
    pd.testing.assert_frame_equal(python.requests, numpy.requests, check_exact=True)
    pd.testing.assert_frame_equal(python.steps, numpy.steps, check_exact=True)
    assert same_summary(python.summary, numpy.summary)


class ProgressingCohort:
    """A window-less cohort of n members whose context sum is ctx0 and longest context first now."""

    window = 0

    def __init__(self, n: int, ctx0: int, first: int):
        self.size, self.ctx0, self.first = n, ctx0, first

    def context_sum(self, steps_ahead: int = 0) -> int:
        return self.ctx0 + self.size * steps_ahead

    def max_context(self, steps_ahead: int = 0) -> int:
        return self.first + steps_ahead

    def attended_context_sums(self, steps: int) -> np.ndarray:
        return self.ctx0 + self.size * np.arange(steps, dtype=np.float64)


@pure_python_only
@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300), st.integers(0, 2_000_000), st.integers(1, 30_000), st.integers(2, 200),
       st.floats(0.0, 1e5), st.floats(0.0, 0.5), st.sampled_from([1.0, 1.7]), st.booleans(),
       st.sampled_from([0.0, 0.004]), st.sampled_from([0, 8]))
def test_a_runs_head_is_priced_as_the_whole_run_begins(n, ctx0, first, k, start, ahead, slowdown, host,
                                                     floor, min_rest):
    """`_head_prices` (the steps up to the one in flight at the next event due, priced a few at a
    time) equals the first steps of `_prices` (the whole run at once, in lists or numpy) bit for
    bit, and ends at the first step ending at or after the event (the second at least)."""
    env = simpy.Environment(initial_time=start)
    env.timeout(ahead)
    cohort = ProgressingCohort(n, ctx0 + n * first, first)
    instance = SimpleNamespace(env=env, cohort=cohort, slowdown=slowdown, horizon=float("inf"),
                               cost_model=roofline("mean", host, floor))
    with mock.patch("servesim.engine.decode_run.HEAD_MIN_REST", min_rest):
        head = decode_run._head_prices(instance, n, k, start, float("inf"))
    if head is None:  # too short a rest past the head, or a head not landed on exactly
        return
    ctx, seconds, ends = head
    c = len(ends)
    assert c >= 2 and k - c >= min_rest
    assert ends[-1] >= start + ahead and (c == 2 or ends[-2] < start + ahead)
    for short_run in (10**9, 0):
        with mock.patch("servesim.engine.decode_run.SHORT_RUN", short_run):
            whole = decode_run._prices(instance, n, k, start)
        assert list(ctx) == list(whole[0])[:c]
        assert seconds == list(whole[1])[:c] and ends == list(whole[2])[:c]


@settings(max_examples=20, deadline=None)
@given(configs, st.sampled_from([0, 8]))
def test_runs_priced_head_first_equal_runs_priced_whole(changes, min_rest):
    """Runs priced up to the next event due first, and further only where they outlive it, equal
    runs priced whole (SimPy's event count aside: a run that outlives its head sleeps twice)."""
    with mock.patch("servesim.engine.decode_run.HEAD_MIN_REST", min_rest):
        lazy = servesim.simulate(small_config(**changes))
    with mock.patch("servesim.engine.decode_run.HEAD_MIN_REST", 10**9):
        whole = servesim.simulate(small_config(**changes))
    pd.testing.assert_frame_equal(lazy.requests, whole.requests, check_exact=True)
    pd.testing.assert_frame_equal(lazy.steps, whole.steps, check_exact=True)
    assert same_summary(lazy.summary, whole.summary, ignore=("wall_s", "events"))
