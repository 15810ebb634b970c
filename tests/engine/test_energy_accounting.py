"""Energy, dollars and carbon of whole runs: summary blocks, per-request shares, time series, caps,
the cluster power budget, and the errors of bad power or pricing settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import servesim
from servesim.build import build
from servesim.config import load_config
from servesim.core.errors import ConfigError
from servesim.simulation import run
from tests.factories import small_config

ROOT = Path(__file__).resolve().parents[2]


def test_every_summary_has_energy_and_cost():
    s = servesim.simulate(small_config()).summary
    e, c = s["energy"], s["cost"]
    assert e["total_j"] > 0 and e["avg_power_w"] > 0 and e["j_per_output_token"] > 0
    assert e["total_j"] == pytest.approx(e["busy_j"] + e["idle_j"])
    assert e["avg_power_w"] == pytest.approx(e["total_j"] / s["sim"]["simulated_s"])
    assert c["usd"] > 0 and c["usd_per_1k_requests"] > 0
    hours = s["sim"]["simulated_s"] / 3600
    assert c["usd"] == pytest.approx(3.00 * hours)  # one H100 at the catalog's $3.00/GPU-hour
    assert c["co2e_g"] == pytest.approx(e["kwh"] * 387.0)


def test_meters_agree_with_the_step_log_and_requests_share_the_busy_energy():
    built = build(load_config(small_config(**{"cluster.instances": 2})))
    instances = {}
    result = run(built, after_step=lambda inst: instances.setdefault(inst.index, inst))
    horizon = result.summary["sim"]["simulated_s"]
    metered = sum(i.meter.joules(horizon) for i in instances.values())
    assert metered == pytest.approx(result.summary["energy"]["total_j"], rel=1e-9)
    busy = result.summary["energy"]["busy_j"]
    assert result.requests["energy_j"].sum() == pytest.approx(busy, rel=0.02)
    assert (result.requests["energy_j"] > 0).all()


def test_time_series_power_integrates_to_the_total_energy():
    result = servesim.simulate(small_config(**{"cluster.instances": 2}))
    frame = result.timeseries(0.5)
    joules = (frame["power_w"] * 0.5).sum()
    # the last bin runs past the end of the run at idle power
    tail = (np.ceil(result.summary["sim"]["simulated_s"] / 0.5) * 0.5 - result.summary["sim"]["simulated_s"])
    idle = sum(w for w in result.summary["cluster"]["idle_w"])
    assert joules == pytest.approx(result.summary["energy"]["total_j"] + tail * idle, rel=1e-6)


def test_disaggregated_requests_pay_prefill_and_decode_instances():
    cfg = small_config(**{
        "cluster.disaggregation": {"prefill_instances": 1, "decode_instances": 1},
    })
    result = servesim.simulate(cfg)
    e = result.summary["energy"]
    assert set(e["pools"]) == {"prefill", "decode"}
    assert result.requests["energy_j"].sum() == pytest.approx(e["busy_j"], rel=0.02)


def test_prices_override_per_hardware_and_unknown_hardware_is_an_error():
    s = servesim.simulate(small_config(**{"pricing.usd_per_gpu_hour": {"h100-sxm": 10.0}})).summary
    assert s["cost"]["usd_per_hour"] == 10.0
    with pytest.raises(ConfigError, match="pricing.usd_per_gpu_hour.a100-80gb"):
        servesim.simulate(small_config(**{"pricing.usd_per_gpu_hour": {"a100-80gb": 1.0}}))


def test_carbon_follows_a_trace(tmp_path):
    base = servesim.simulate(small_config(**{"pricing.carbon_g_per_kwh": 100.0})).summary
    end = base["sim"]["simulated_s"]
    trace = tmp_path / "grid.csv"
    trace.write_text(f"time_s,g_per_kwh\n0,100\n{end / 2},300\n")
    s = servesim.simulate(small_config(**{"pricing.carbon_trace": str(trace)})).summary
    assert base["cost"]["co2e_g"] < s["cost"]["co2e_g"] < 3 * base["cost"]["co2e_g"]
    assert 100 < s["cost"]["carbon_g_per_kwh"] < 300


def test_a_bad_carbon_trace_exits_2_naming_file_and_line(tmp_path):
    trace = tmp_path / "grid.csv"
    trace.write_text("time_s,g_per_kwh\n0,100\n5,abc\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(small_config(**{"pricing.carbon_trace": str(trace)})))
    out = subprocess.run([sys.executable, "-m", "servesim", "run", str(cfg), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "grid.csv:3" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("changes, key", [
    ({"power.clock_mhz": 2500}, "power.clock_mhz"),
    ({"power.pools": {"nope": {"cap_w": 300}}}, "power.pools.nope"),
    ({"hardware": "tpu-v5p", "power.cap_w": 100}, "power.cap_w"),
    ({"power.budget": {"budget_w": 1000}}, "power.budget"),
    ({"power.budget": {"budget_w": 1000, "clock_mhz": 1200, "interval_s": 1e-300}},
     "power.budget.interval_s"),
])
def test_bad_power_settings_name_their_key(changes, key):
    with pytest.raises(ConfigError) as err:
        servesim.simulate(small_config(**changes))
    assert err.value.key.startswith(key)


def test_hardware_without_tdp_or_price_reports_nulls():
    s = servesim.simulate(small_config(hardware="tpu-v5p")).summary
    assert s["energy"]["total_j"] is None and s["cost"]["usd"] is None
    assert s["requests"]["completed"] == s["requests"]["arrived"]


def test_the_energy_examples_show_the_caps_asymmetry():
    def run_pair(name):
        fewer = {"workload.num_requests": 300}
        free = servesim.simulate(ROOT / f"configs/energy/{name}.yaml", **fewer).summary
        capped = servesim.simulate(ROOT / f"configs/energy/{name}_capped.yaml", **fewer).summary
        return free, capped

    free, capped = run_pair("prefill_heavy")
    prefill_ttft = capped["latency"]["ttft"]["p50"] / free["latency"]["ttft"]["p50"]
    prefill_e2e = capped["latency"]["e2e"]["p50"] / free["latency"]["e2e"]["p50"]
    free, capped = run_pair("decode_heavy")
    decode_tpot = capped["latency"]["tpot"]["p50"] / free["latency"]["tpot"]["p50"]
    decode_e2e = capped["latency"]["e2e"]["p50"] / free["latency"]["e2e"]["p50"]
    assert prefill_ttft > 1.5 and prefill_e2e > 1.5
    assert decode_tpot < 1.05 and decode_e2e < 1.05
    assert capped["energy"]["avg_power_w"] < free["energy"]["avg_power_w"]


def test_a_power_budget_caps_instances_and_costs_latency():
    cfg = small_config(**{
        "cluster.instances": 2, "workload.num_requests": 200, "workload.arrival.rate": 40.0,
    })
    free = servesim.simulate(cfg).summary
    budget = 0.8 * free["energy"]["avg_power_w"]
    capped = servesim.simulate(cfg, **{
        "power.budget": {"budget_w": budget, "interval_s": 0.2, "clock_mhz": 1000},
    }).summary
    stats = capped["power"]["budget"]
    assert stats["cap_events"] >= 1 and stats["capped_s"] > 0
    assert capped["energy"]["avg_power_w"] < free["energy"]["avg_power_w"]
    assert capped["latency"]["e2e"]["mean"] > free["latency"]["e2e"]["mean"]
    result = servesim.simulate(cfg, **{"power.budget": {"budget_w": budget, "interval_s": 0.2,
                                                        "clock_mhz": 1000}})
    last = max(result.requests["finish_s"].max(), result.requests["arrival_s"].max())
    assert result.summary["sim"]["simulated_s"] == pytest.approx(last)


def test_a_power_budget_reads_a_long_idle_stretch_at_once():
    """Requests days apart must not cost one event per controller interval in between: the idle
    readings are taken together, with the statistics of reading them one by one."""
    cfg = small_config(**{"workload.num_requests": 3, "workload.arrival.rate": 1e-5})
    budget = {"budget_w": 5000, "interval_s": 0.05, "cap_w": 300}
    result = servesim.simulate(cfg, **{"power.budget": budget})
    summary = result.summary
    assert summary["sim"]["simulated_s"] > 1e4  # ~2e5 s: four million readings, were they one by one
    assert summary["sim"]["events"] < 2000
    stats = summary["power"]["budget"]
    idle_w = summary["energy"]["pools"]["default"]["idle_w_per_instance"]
    assert stats["peak_w"] > idle_w
    assert stats["mean_w"] == pytest.approx(summary["energy"]["avg_power_w"], rel=1e-3)
