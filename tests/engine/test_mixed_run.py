"""Mixed runs (engine/mixed_run.py): when a chunked step repeats, and that running the repeats as
one event changes nothing but the engine's work (the bit-for-bit comparison over random configs
is `test_mixed_runs_equal_step_by_step` in tests/test_invariants.py)."""

from __future__ import annotations

import math
from unittest import mock

import pandas as pd
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.build import build
from servesim.config import load_config
from servesim.cost.base import StepShape
from servesim.engine.mixed_run import _delay, _until
from servesim.schedulers.chunk_runs import chunk_follows, leaves_budget_unused, repeats_chunk
from servesim.simulation import run
from tests.compiled import pure_python_only
from tests.factories import apply_plan, make_scheduler, req, small_config, step

CHUNKED = {
    "engine.scheduler": "chunked_prefill", "engine.chunk_size": 128,
    "workload.lengths.prompt.mean": 1500, "workload.lengths.prompt.max": 6000,
}


def chunked(policy="fcfs", **kw):
    return make_scheduler(policy, batching="chunked", **kw)


def test_a_full_budget_chunk_with_more_to_go_repeats():
    s = chunked(chunk=32)
    a, b = req(0, 8, 50), req(1, 500, 5)
    s.add_request(a, 0.0)
    step(s, 0.0)  # a's prompt: a decodes from now on
    s.add_request(b, 0.1)
    plan = s.schedule(0.1)
    assert plan.tokens == {b: 31} and repeats_chunk(s, plan)


def test_the_prompts_last_chunk_or_a_short_one_does_not_repeat():
    s = chunked(chunk=32)
    b = req(0, 40, 5)
    s.add_request(b, 0.0)
    plan = s.schedule(0.0)
    assert plan.tokens == {b: 32} and repeats_chunk(s, plan)  # not its last chunk
    apply_plan(s, plan, 0.01)
    plan = s.schedule(0.01)
    assert plan.tokens == {b: 8} and not repeats_chunk(s, plan)  # its last chunk


def test_a_last_chunk_leaves_the_budget_unused_only_when_nobody_could_take_it():
    s = chunked(chunk=32)
    b = req(0, 500, 5)
    s.add_request(b, 0.0)
    plan = s.schedule(0.0)
    assert leaves_budget_unused(s, b)  # nobody waits, nobody else is mid-prompt
    s.add_request(req(1, 40, 5), 0.01)
    assert not leaves_budget_unused(s, b)  # the waiting request would start in what is left
    apply_plan(s, plan, 0.01)


def handover(a, b):
    """A 32-token budget: `a` takes a first chunk alone, then `b` arrives; the plan after it."""
    s = chunked(chunk=32)
    s.add_request(a, 0.0)
    apply_plan(s, s.schedule(0.0), 0.01)
    s.add_request(b, 0.01)
    return s, s.schedule(0.01)


def test_a_handover_is_followed_by_the_next_prompts_chunks():
    a, b = req(0, 40, 5), req(1, 200, 5)
    s, plan = handover(a, b)
    # a's last chunk beside b's first; then a decodes and b takes the other 31 tokens each step
    assert plan.tokens == {a: 8, b: 24} and chunk_follows(s, plan) and not repeats_chunk(s, plan)


def test_no_handover_run_when_what_follows_is_not_a_full_chunk_or_the_first_token_is_the_last():
    a, b = req(0, 40, 5), req(1, 50, 5)
    s, plan = handover(a, b)
    assert plan.tokens == {a: 8, b: 24} and not chunk_follows(s, plan)  # b has 26 left, not > 31
    a, b = req(0, 40, 1), req(1, 200, 5)
    s, plan = handover(a, b)
    assert plan.tokens == {a: 8, b: 24} and not chunk_follows(s, plan)  # a finishes, never joins


def test_two_prompts_in_one_step_do_not_repeat():
    s = chunked(chunk=64)
    s.add_request(req(0, 20, 5), 0.0)
    s.add_request(req(1, 500, 5), 0.0)
    plan = s.schedule(0.0)
    assert len(plan.tokens) == 2 and not repeats_chunk(s, plan)


def test_a_preemptive_policy_or_whole_prompts_do_not_repeat():
    s = chunked("srtf", chunk=32)
    s.add_request(req(0, 500, 5), 0.0)
    assert not repeats_chunk(s, s.schedule(0.0))  # a better request could pause it
    w = make_scheduler("fcfs", budget=64)
    w.add_request(req(0, 50, 5), 0.0)
    assert not repeats_chunk(w, w.schedule(0.0))


def _cycles_and_results(changes: dict, mixed: bool):
    cycles = [0]

    def count(_instance):
        cycles[0] += 1

    built = build(load_config(small_config(**changes)))
    if mixed:
        return cycles, run(built, after_step=count)
    never = lambda scheduler, plan: False  # noqa: E731
    with mock.patch("servesim.engine.instance.repeats_chunk", never), \
            mock.patch("servesim.engine.instance.chunk_follows", never):
        return cycles, run(built, after_step=count)


@pure_python_only  # patches the instance module's globals
def test_mixed_runs_cut_cycles_not_steps_or_results():
    fast_cycles, fast = _cycles_and_results(CHUNKED, mixed=True)
    slow_cycles, slow = _cycles_and_results(CHUNKED, mixed=False)
    assert fast_cycles[0] < 0.7 * slow_cycles[0]  # long prompts: most chunk steps ran in runs
    assert fast.summary["sim"]["iterations"] == slow.summary["sim"]["iterations"]
    pd.testing.assert_frame_equal(fast.requests, slow.requests, check_exact=True)
    pd.testing.assert_frame_equal(fast.steps, slow.steps, check_exact=True)


@pure_python_only  # patches the instance module's globals
def test_handover_runs_cut_cycles_not_results():
    busy = {**CHUNKED, "workload.arrival.rate": 60.0}  # a queue: prompts follow one another
    cycles, fast = _cycles_and_results(busy, mixed=True)
    with mock.patch("servesim.engine.instance.chunk_follows", lambda scheduler, plan: False):
        fewer, slow = _cycles_and_results(busy, mixed=True)
    assert cycles[0] < fewer[0] - 10
    pd.testing.assert_frame_equal(fast.requests, slow.requests, check_exact=True)
    pd.testing.assert_frame_equal(fast.steps, slow.steps, check_exact=True)


@pure_python_only  # patches the mixed-run module's globals
def test_a_cost_model_priced_through_getattr_gives_the_same_runs():
    # the roofline model's `chunk_step_times` is called natively; another model's, looked up
    with mock.patch("servesim.engine.mixed_run.RooflineCostModel", type("Other", (), {})):
        _, looked_up = _cycles_and_results(CHUNKED, mixed=True)
    _, native = _cycles_and_results(CHUNKED, mixed=True)
    pd.testing.assert_frame_equal(native.requests, looked_up.requests, check_exact=True)
    pd.testing.assert_frame_equal(native.steps, looked_up.steps, check_exact=True)


def test_a_recomputed_request_one_token_short_of_its_output_ends_the_run():
    # found by the invariant test: a preempted request recomputes prompt and output in chunks;
    # the chunk that leaves it one token short makes it a decode (it joins the cohort)
    changes = {
        "seed": 111, "engine.max_num_seqs": 13, "engine.block_size": 1,
        "engine.kv_capacity_tokens": 2000, "workload.num_requests": 27,
        "workload.arrival.rate": 25.0, "workload.lengths.output.mean": 130.0,
        "engine.scheduler": "chunked_prefill", "engine.chunk_size": 16,
        "workload.lengths.prompt.mean": 50.0,
    }
    _, fast = _cycles_and_results(changes, mixed=True)
    _, slow = _cycles_and_results(changes, mixed=False)
    assert fast.summary["kv"]["preemptions"] > 0
    pd.testing.assert_frame_equal(fast.requests, slow.requests, check_exact=True)
    pd.testing.assert_frame_equal(fast.steps, slow.steps, check_exact=True)


def test_a_power_budget_keeps_mixed_steps_single():
    changes = {**CHUNKED, "power.budget": {"budget_w": 500.0, "interval_s": 0.05, "clock_mhz": 1200}}
    fast_cycles, _ = _cycles_and_results(changes, mixed=True)
    slow_cycles, _ = _cycles_and_results(changes, mixed=False)
    assert fast_cycles == slow_cycles  # the controller reads the meters between steps


@given(st.floats(0.0, 1e7), st.floats(0.0, 1e3))
def test_a_runs_sleep_lands_exactly_on_its_last_step_end(now, seconds):
    env = simpy.Environment(initial_time=now)
    target = now + seconds
    env.process(_until(env, target))
    env.run()
    assert env.now == target


def test_a_sleep_longer_than_the_clock_lands_on_a_float_one_hop_cannot_reach():
    now, target = 0.01115458782985266, 0.10163858781629136  # found by the invariant test
    assert now + _delay(now, target) < target  # no delay lands on it in one hop
    env = simpy.Environment(initial_time=now)
    env.process(_until(env, target))
    env.run()
    assert env.now == target


SHAPES = st.tuples(
    st.integers(1, 2048),  # chunk
    st.integers(0, 60_000),  # tokens before the chunk
    st.integers(0, 256),  # decodes
    st.integers(0, 4000),  # mean decode context
    st.integers(0, 3000),  # longest context beyond the mean
)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["llama2-7b", "mixtral-8x7b:2", "llama3-70b:4", "llama2-7b@tensorrt-llm-pytorch"]),
       st.lists(st.tuples(SHAPES, st.integers(1, 4), st.integers(1, 2048)), min_size=1, max_size=6))
def test_chunk_step_prices_equal_step_by_step_prices_bit_for_bit(spec, runs):
    model, _, engine = spec.partition("@")
    model, _, tp = model.partition(":")
    changes = {"model": model, "cluster.tp": int(tp or 1), **({"engine.kind": engine} if engine else {})}
    part = build(load_config(small_config(**changes))).parts[0]
    cost, power = part.cost_model, part.power
    # the models keep what a run's steps share: a shape met again must price the same
    for (chunk, prior, n, mean, extra), k, last_chunk in runs + runs:
        priors = [prior + j * chunk for j in range(k)]
        ctx = [n * (mean + j) for j in range(k)]
        longest = [(mean + extra + j) if n else 0 for j in range(k)]
        times = cost.chunk_step_times(chunk, priors, n, ctx, longest)
        energies = power.chunk_step_energies(chunk, priors, n, ctx, times)
        # ending with a prompt's last chunk, whose logit row counts too
        last = min(last_chunk, chunk)
        ending = cost.chunk_step_times(chunk, priors, n, ctx, longest, last)
        ending_j = power.chunk_step_energies(chunk, priors, n, ctx, ending, last)
        for j in range(k):
            shape = StepShape([(chunk, priors[j])], n, ctx[j], n, longest[j])
            assert times[j] == cost.step_time(shape)
            assert energies[j] == power.step_energy(shape, times[j])
            assert math.isfinite(times[j]) and times[j] > 0
            if j == k - 1:
                shape = StepShape([(last, priors[j])], n, ctx[j], n + 1, longest[j])
            assert ending[j] == cost.step_time(shape)
            assert ending_j[j] == power.step_energy(shape, ending[j])
