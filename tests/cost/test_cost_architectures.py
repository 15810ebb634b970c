"""Architecture variants of the model spec, priced: plain MLPs, learned positions, biases, parallel
attention, sliding windows (in the roofline and in the decode cohort)."""

from dataclasses import replace

import numpy as np
import pytest

from servesim.catalog import get_hardware, get_model
from servesim.core.cohort import DecodeCohort
from servesim.core.errors import ConfigError
from servesim.cost import RooflineCostModel, StepShape
from servesim.cost.layout import Layout, window_pairs
from tests.factories import make_request

H100 = get_hardware("h100-sxm")


def test_plain_mlp_has_two_matrices_and_less_traffic():
    opt = get_model("opt-13b")
    gemms = {(g.k, g.n) for g in Layout(opt).gemms if g.group == "mlp"}
    assert gemms == {(5120, 20480), (20480, 5120)}
    gated = replace(opt, gated_mlp=True)
    assert {(g.k, g.n) for g in Layout(gated).gemms if g.group == "mlp"} == {(5120, 40960), (20480, 5120)}
    assert Layout(opt).mlp_width_sum() == pytest.approx(Layout(gated).mlp_width_sum() * 2 / 3)
    plain, swiglu = RooflineCostModel(opt, H100), RooflineCostModel(gated, H100)
    for shape in (StepShape([(2048, 0)]), StepShape([], 64, 64 * 1024)):
        assert plain.step_time(shape) < swiglu.step_time(shape)


def test_parameters_follow_the_variant_fields():
    opt = get_model("opt-13b")
    h, i, v, L = 5120, 20480, 50272, 40
    layer = 4 * h * h + 4 * h + 2 * h * i + i + h  # attention with biases, plain MLP with biases
    assert opt.num_params == L * layer + (v + 2048) * h  # tied head, learned positions
    assert replace(opt, tie_word_embeddings=False).num_params == opt.num_params + v * h
    # learned positions add one gather-and-add per token to the elementwise time
    assert Layout(opt).model_hidden_passes == 3
    assert Layout(replace(opt, position_embedding="rotary")).model_hidden_passes == 0


def test_parallel_attention_halves_the_all_reduces():
    falcon = get_model("falcon-180b")
    assert Layout(falcon, tp=8).num_allreduces == 80
    assert Layout(replace(falcon, parallel_attention=False), tp=8).num_allreduces == 160
    assert Layout(falcon, tp=1).num_allreduces == 0


def test_window_pairs_match_a_brute_force_count():
    for prior, chunk, window in [(0, 10, 4), (3, 5, 4), (10, 7, 4), (0, 3, 8), (100, 1, 16), (5, 20, 6)]:
        want = sum(min(x, window) for x in range(prior + 1, prior + chunk + 1))
        assert window_pairs(prior, chunk, window) == want


def test_sliding_window_caps_attention_time():
    v1 = get_model("mistral-7b-v0.1")
    assert v1.sliding_window == 4096 and v1.attended_context(10_000) == 4096
    full = replace(v1, sliding_window=0)
    win, whole = RooflineCostModel(v1, H100), RooflineCostModel(full, H100)
    short = StepShape([(1024, 1024)])  # inside the window: the same price
    assert win.step_time(short) == pytest.approx(whole.step_time(short))
    long = StepShape([(512, 12_000)])
    assert win.step_time(long) < whole.step_time(long)
    # a chunk after 12,000 tokens costs what one after 4,095 does: the window is all it sees
    assert win.step_time(long) == pytest.approx(win.step_time(StepShape([(512, 4095)])))


def test_cohort_attended_sums_cap_each_member_at_the_window():
    cohort = DecodeCohort(4, window=10)
    members = []
    for rid, prompt in enumerate([3, 8, 12, 20]):
        r = make_request(rid, prompt, 50)
        r.advance(prompt, 0.0)
        cohort.join(r)
        members.append(r)
    for _ in range(3):
        sums = cohort.attended_context_sums(6)
        want = [sum(min(r.num_computed_tokens + j, 10) for r in members) for j in range(6)]
        assert sums.tolist() == want
        cohort.advance(np.array([1.0]))
    plain = DecodeCohort(4)
    r = make_request(9, 7, 50)
    r.advance(7, 0.0)
    plain.join(r)
    assert plain.attended_context_sums(3).tolist() == [7, 8, 9]


def test_unknown_variant_values_are_refused():
    with pytest.raises(ConfigError, match="activation"):
        get_model({"base": "opt-13b", "activation": "swish"})
    with pytest.raises(ConfigError, match="position_embedding"):
        get_model({"base": "opt-13b", "position_embedding": "sinusoid"})


def test_windowed_model_runs_end_to_end_faster_than_without_the_window():
    from servesim import simulate

    cfg = {"model": "mistral-7b-v0.1", "hardware": "h100-sxm",
           "workload": {"num_requests": 30, "arrival": {"rate": 2.0},
                        "lengths": {"prompt": {"dist": "fixed", "value": 6000},
                                    "output": {"dist": "fixed", "value": 200}}}}
    windowed = simulate(cfg).summary["latency"]["tpot"]["mean"]
    unwindowed = simulate(cfg, **{"model": {"base": "mistral-7b-v0.1", "sliding_window": 0}})
    assert windowed < unwindowed.summary["latency"]["tpot"]["mean"]
