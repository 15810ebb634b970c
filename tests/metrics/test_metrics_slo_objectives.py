"""Named SLO objectives: absolute, per-token, slowdown and per-class limits; goodput under each."""

import numpy as np
import pandas as pd
import pytest

from servesim import simulate
from servesim.build import build
from servesim.config import load_config
from servesim.core.errors import ConfigError
from servesim.cost.isolated import isolated_decode, isolated_prefill
from servesim.metrics.slo import attains
from servesim.simulation import run

BASE = {
    "seed": 5,
    "model": "llama3-8b",
    "hardware": "h100-sxm",
    "workload": {
        "num_requests": 60,
        "arrival": {"rate": 8.0},
        "lengths": {"prompt": {"dist": "lognormal", "mean": 800, "sigma": 0.7, "max": 4000},
                    "output": {"dist": "lognormal", "mean": 80, "sigma": 0.7, "max": 400}},
    },
}


def frame(**cols):
    n = len(next(iter(cols.values())))
    base = {"status": ["completed"] * n, "class": ["default"] * n, "ttft_s": [0.1] * n,
            "tpot_s": [0.01] * n, "e2e_s": [1.0] * n, "tbt_max_s": [0.02] * n,
            "output_tokens": [10] * n, "first_scheduled_s": [0.0] * n, "arrival_s": [0.0] * n}
    base.update(cols)
    return pd.DataFrame(base)


def test_each_limit_bounds_its_metric():
    f = frame(ttft_s=[0.1, 0.3], tbt_max_s=[0.05, 0.2], e2e_s=[1.0, 4.0], output_tokens=[10, 10],
              first_scheduled_s=[0.5, 3.0])
    assert attains(f, {"ttft_s": 0.2}).tolist() == [True, False]
    assert attains(f, {"tbt_s": 0.1}).tolist() == [True, False]
    assert attains(f, {"norm_e2e_s": 0.2}).tolist() == [True, False]  # 0.1 and 0.4 s per token
    assert attains(f, {"queue_s": 2.0}).tolist() == [True, False]
    assert attains(frame(status=["rejected"]), {"ttft_s": 10}).tolist() == [False]


def test_per_class_limits_replace_key_by_key():
    f = frame(**{"class": ["chat", "batch"], "ttft_s": [0.5, 0.5], "tpot_s": [0.2, 0.2]})
    objective = {"ttft_s": 1.0, "tpot_s": 0.1, "per_class": {"batch": {"tpot_s": 0.5}}}
    # chat misses the objective's TPOT; batch has its own TPOT limit and keeps the TTFT one
    assert attains(f, objective).tolist() == [False, True]
    assert attains(f, {"per_class": {"chat": {"ttft_s": 0.1}}}).tolist() == [False, True]


def test_slowdown_needs_the_isolated_latency():
    f = frame(ttft_s=[0.2, 0.2], e2e_s=[2.0, 9.0], ttft_isolated_s=[0.1, 0.1], e2e_isolated_s=[1.0, 1.0])
    assert attains(f, {"e2e_slowdown": 3.0}).tolist() == [True, False]
    assert attains(f, {"ttft_slowdown": 1.5}).tolist() == [False, False]


def test_isolated_latency_is_the_request_alone():
    """A lone request at a time (arrivals far apart) is served exactly as the isolated price says."""
    cfg = load_config(BASE, {"workload.arrival.rate": 0.01, "workload.num_requests": 5,
                             "slo.objectives": {"alone": {"e2e_slowdown": 1.000001}}})
    result = simulate(cfg)
    r = result.requests
    assert np.allclose(r["e2e_s"], r["e2e_isolated_s"], rtol=1e-9)
    assert np.allclose(r["ttft_s"], r["ttft_isolated_s"], rtol=1e-9)
    assert result.summary["slo"]["objectives"]["alone"]["attainment"] == 1.0


def test_isolated_pricing_matches_step_by_step_sums():
    built = build(load_config(BASE))
    cost = built.parts[0].cost_model
    prompt, output = np.array([100, 9000, 5]), np.array([1, 3, 40])
    prefill = isolated_prefill(cost, prompt, 4096)
    from servesim.cost.base import StepShape

    want = (cost.step_time(StepShape([(4096, 0)], 0, 0, 0))
            + cost.step_time(StepShape([(4096, 4096)], 0, 0, 0))
            + cost.step_time(StepShape([(808, 8192)], 0, 0, 1)))
    assert prefill[1] == pytest.approx(want)
    decode = isolated_decode(cost, prompt, output)
    assert decode[0] == 0.0
    assert decode[2] == pytest.approx(sum(cost.step_time(StepShape([], 1, 5 + j)) for j in range(39)))


def test_objectives_in_the_summary_and_as_capacity_metrics():
    objectives = {"strict": {"ttft_s": 0.2, "tbt_s": 0.05}, "slow": {"e2e_slowdown": 4}}
    result = simulate(load_config(BASE, {"slo.objectives": objectives}))
    block = result.summary["slo"]["objectives"]
    assert set(block) == {"strict", "slow"}
    f = result.requests
    met = ((f["status"] == "completed") & (f["ttft_s"] <= 0.2) & (f["tbt_max_s"] <= 0.05)).mean()
    assert block["strict"]["attainment"] == pytest.approx(met)
    span = result.summary["sim"]["simulated_s"] - f["arrival_s"].min()
    assert block["strict"]["goodput_rps"] == pytest.approx(met * len(f) / span)
    from servesim.studies.capacity import parse_target

    assert parse_target("slo.objectives.strict.attainment>=0.9").metric == "slo.objectives.strict.attainment"


def test_per_class_objective_blocks():
    cfg = load_config(BASE, {"workload.classes": [{"name": "chat"}, {"name": "batch"}],
                             "slo.objectives": {"o": {"ttft_s": 0.3, "per_class": {"batch": {"ttft_s": 5}}}}})
    s = simulate(cfg).summary
    assert set(s["classes"]) == {"chat", "batch"}
    for name in ("chat", "batch"):
        assert "attainment" in s["classes"][name]["slo"]["objectives"]["o"]


@pytest.mark.parametrize("bad, key", [
    ({"x.y": {"ttft_s": 1}}, "slo.objectives"),
    ({"o": {}}, "slo.objectives.o"),
    ({"o": {"e2e_slowdown": 0.5}}, "slo.objectives.o.e2e_slowdown"),
    ({"o": {"ttft": 1}}, "slo.objectives.o.ttft"),
])
def test_bad_objectives_name_the_key(bad, key):
    with pytest.raises(ConfigError) as err:
        load_config(BASE, {"slo.objectives": bad})
    assert err.value.key.startswith(key)


def test_per_class_objective_on_an_unknown_class_is_refused():
    with pytest.raises(ConfigError, match="unknown class"):
        build(load_config(BASE, {"slo.objectives": {"o": {"per_class": {"nope": {"ttft_s": 1}}}}}))


def test_no_objectives_no_block():
    s = run(build(load_config(BASE))).summary
    assert "objectives" not in s["slo"]
