"""Cheapest fleet for a load and SLO: `servesim placement` over hardware and designs, with the
cheapest plan, the Pareto front, dollar/energy objectives that refuse unpriced hardware."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from servesim.cli import main
from servesim.core.errors import ConfigError
from servesim.studies.fleet import cheapest_plan, front, plan_frame
from servesim.studies.provisioning import DollarsPerHour, EnergyPerRequest, PowerDraw
from tests.factories import small_config


def _row(label, cost, capacity, status="ok"):
    return {"label": label, "point": {"x": label}, "status": status, "cost": cost, "capacity": capacity,
            "economics": {"gpus": 1, "usd_per_hour": cost, "kwh_per_1k_requests": 0.01, "goodput_rps": 1}}


def test_cheapest_plan_is_the_lowest_cost_reaching_the_demand():
    rows = [_row("a", 1.0, 5.0), _row("b", 2.0, 12.0), _row("c", 3.0, 11.0), _row("d", 2.5, 30.0),
            _row("e", 0.5, None), _row("f", None, None, status="failed")]
    frame = plan_frame(rows)
    assert list(frame.label) == ["a", "b", "c", "d"]
    assert cheapest_plan(frame, 10.0)["label"] == "b"
    assert cheapest_plan(frame, 20.0)["label"] == "d"
    assert cheapest_plan(frame, 31.0) is None
    assert list(front(frame).label) == ["a", "b", "d"]  # c costs more than b and carries less


def test_objectives_refuse_hardware_without_price_or_power():
    cfg = pytest.importorskip("servesim.config").load_config(small_config(hardware="tpu-v5p"))
    with pytest.raises(ConfigError, match="tpu-v5p has no \\$/GPU-hour"):
        DollarsPerHour().cost(cfg, {})
    for objective in (EnergyPerRequest(), PowerDraw()):
        with pytest.raises(ConfigError, match="tpu-v5p has no power model"):
            objective.cost(cfg, {"energy": {"kwh_per_1k_requests": None, "avg_power_w": None}})


def test_fleet_search_one_command(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(small_config(**{"workload.arrival.rate": 8.0, "workload.num_requests": 40,
                                                  "slo": {"ttft_s": 0.5, "tpot_s": 0.05}})))
    designs = tmp_path / "designs.yaml"
    designs.write_text(yaml.safe_dump([
        {"cluster.instances": 1},
        {"cluster.instances": 2, "cluster.disaggregation": {"prefill_instances": 1, "decode_instances": 1}},
    ]))
    out, plot = tmp_path / "out", tmp_path / "front.png"
    args = ["placement", str(cfg), "--points", str(designs), "--grid", "hardware=a100-80gb,h100-sxm",
            "--target-attainment", "0.8", "--objective", "usd_per_hour", "--no-steady-check",
            "--rtol", "0.2", "--workers", "1", "--plot", str(plot), "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "cheapest plan carrying workload.arrival.rate=8" in text and "Pareto front ($/h" in text
    doc = json.loads((out / "placement.json").read_text())
    ok = [r for r in doc["placements"] if r["capacity"] is not None]
    assert len(ok) == 4 and plot.stat().st_size > 0
    for r in ok:
        econ = r["economics"]
        assert econ["usd_per_hour"] == pytest.approx(r["cost"]) and econ["kwh_per_1k_requests"] > 0
        assert econ["goodput_rps"] > 0
    feasible = [r for r in ok if r["capacity"] >= 8.0]
    assert doc["cheapest"]["cost"] == min(r["cost"] for r in feasible)
    frame = pd.DataFrame([{"cost": r["cost"], "capacity": r["capacity"]} for r in ok])
    assert len(doc["pareto"]) == len(front(frame.assign(label="", short="")))


def test_kwh_objective_prices_energy_per_request(capsys, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(small_config(**{"workload.num_requests": 40})))
    assert main(["placement", str(cfg), "--grid", "hardware=h100-sxm,tpu-v5p", "--target",
                 "latency.ttft.p90<=1", "--objective", "kwh", "--no-steady-check", "--rtol", "0.2",
                 "--workers", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    by_hw = {r["point"]["hardware"]: r for r in doc["placements"]}
    assert by_hw["h100-sxm"]["unit"] == "kWh/1k req" and by_hw["h100-sxm"]["cost"] > 0
    assert by_hw["tpu-v5p"]["status"] == "failed" and "no power model" in by_hw["tpu-v5p"]["error"]
