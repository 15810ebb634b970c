"""Provisioning quantities: fleet price, economics of a run, objectives, fleet comparison, Pareto front."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import servesim
from servesim.studies.provisioning import (
    DollarsPerHour,
    PowerDraw,
    compare_fleets,
    fleet_economics,
    fleet_gpus,
    fleet_usd_per_hour,
    pareto_front,
    plot_pareto,
)
from tests.factories import small_config


def test_fleet_price_sums_every_gpu_of_every_pool():
    cfg = small_config(**{
        "cluster.disaggregation": {
            "prefill_instances": 2, "decode_instances": 1, "decode_hardware": "a100-80gb",
        },
        "cluster.tp": 2,
    })
    assert fleet_gpus(cfg) == 6
    assert fleet_usd_per_hour(cfg) == pytest.approx(4 * 3.00 + 2 * 1.30)
    assert fleet_usd_per_hour(small_config(hardware="tpu-v5p")) is None


def test_economics_and_objectives_read_the_run():
    result = servesim.simulate(small_config())
    econ = fleet_economics(result.summary)
    assert econ["gpus"] == 1 and econ["usd_per_hour"] == 3.00
    assert econ["goodput_per_usd"] == pytest.approx(result.summary["slo"]["goodput_rps"] * 3600 / 3.00)
    assert econ["kwh_per_1k_requests"] == result.summary["energy"]["kwh_per_1k_requests"]
    assert DollarsPerHour().cost(result.config, result.summary) == 3.00
    assert PowerDraw().cost(result.config, result.summary) == pytest.approx(econ["avg_power_w"] / 1000)


def test_compare_fleets_runs_the_same_workload_on_each(tmp_path):
    frame = compare_fleets(small_config(), {
        "1xH100": {"hardware": "h100-sxm"},
        "1xA100": {"hardware": "a100-80gb"},
        "2xA100": {"hardware": "a100-80gb", "cluster.instances": 2},
    })
    assert list(frame.fleet) == ["1xH100", "1xA100", "2xA100"]
    assert frame.set_index("fleet").loc["2xA100", "usd_per_hour"] == pytest.approx(2.60)
    assert (frame.kwh_per_1k_requests > 0).all()
    out = plot_pareto(frame, "usd_per_hour", "goodput_rps", tmp_path / "pareto.png")
    assert out.stat().st_size > 0


def test_pareto_front_keeps_only_undominated_rows():
    frame = pd.DataFrame({"name": list("abcde"), "cost": [1, 2, 2, 3, math.nan],
                          "value": [1.0, 3.0, 2.0, 2.5, 9.0]})
    assert list(pareto_front(frame, "cost", "value")["name"]) == ["a", "b"]
