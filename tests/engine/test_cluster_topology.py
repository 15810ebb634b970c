"""Cluster shapes from the config: pools (heterogeneous), disaggregation shorthand, the instance
count rule, bad input through the CLI, and the per-instance time series."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from servesim.build import build
from servesim.cli import main
from servesim.config import load_config
from servesim.metrics import instance_timeseries
from servesim.simulation import simulate
from servesim.studies.plots import instance_timeline
from tests.factories import small_config


def test_heterogeneous_pools_get_their_own_hardware_tp_and_capacity():
    cfg = small_config(**{"cluster.pools": [
        {"name": "fast", "instances": 1, "hardware": "h200-sxm", "tp": 2},
        {"name": "slow", "instances": 2, "hardware": "a100-80gb"},
    ], "cluster.router": "least_tokens"})
    built = build(load_config(cfg))
    assert [p.pool for p in built.parts] == ["fast", "slow", "slow"]
    assert built.parts[0].cost_model.tp == 2 and built.parts[1].cost_model.tp == 1
    caps = {p["name"]: p["kv_capacity_tokens"] for p in built.pool_table()}
    assert caps["fast"] > caps["slow"]
    assert built.config.cluster.instances == 3
    result = simulate(cfg)
    assert result.summary["requests"]["completed"] == 60
    assert set(result.requests["instance"]) == {0, 1, 2}
    assert [p["first_instance"] for p in result.summary["cluster"]["pools"]] == [0, 1]


def test_disaggregated_pools_may_differ_in_hardware_and_tp():
    cfg = small_config(**{"cluster.disaggregation": {
        "prefill_instances": 1, "decode_instances": 2, "prefill_hardware": "h200-sxm",
        "decode_hardware": "a100-80gb", "prefill_tp": 2}})
    built = build(load_config(cfg))
    assert [(p.role, p.hardware.name, p.tp) for p in built.pools] == [
        ("prefill", "h200-sxm", 2), ("decode", "a100-80gb", 1)]
    assert simulate(cfg).summary["requests"]["completed"] == 60


def test_pools_with_roles_form_a_disaggregated_cluster():
    cfg = small_config(**{"cluster.pools": [
        {"name": "p", "instances": 2, "role": "prefill"},
        {"name": "d", "instances": 1, "role": "decode", "hardware": "h200-sxm"}],
        "cluster.disaggregation": {"kv_link": {"bandwidth_gb_s": 10}}})
    result = simulate(cfg)
    assert set(result.requests["instance"]) == {2}
    assert result.summary["cluster"]["kv_link"]["transfers"] == 60


def test_set_creates_the_disaggregation_block_and_instances_are_derived(tmp_path):
    data = small_config()
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "o"
    argv = ["run", str(path), "--out", str(out), "--set", "cluster.disaggregation.prefill_instances=2"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cluster"]["instances"] == 3  # 2 prefill + the default 1 decode
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert "instances" not in resolved["cluster"]  # derived, so a rerun may resize the pools
    assert main(["run", str(out / "config.yaml"), "--out", str(tmp_path / "o2"),
                 "--set", "cluster.disaggregation.decode_instances=2"]) == 0


@pytest.mark.parametrize("changes,message", [
    ({"cluster.disaggregation": {"prefill_instances": 0}},
     "cluster.disaggregation.prefill_instances: Input should be greater than or equal to 1"),
    ({"cluster.disaggregation": {"decode_instances": 0}}, "cluster.disaggregation.decode_instances"),
    ({"cluster.disaggregation": {"kv_link": {"bandwidth_gb_s": 0}}},
     "cluster.disaggregation.kv_link.bandwidth_gb_s: Input should be greater than 0"),
    ({"cluster.disaggregation": {"kv_link": {"bandwidth_gb_s": -5}}},
     "cluster.disaggregation.kv_link.bandwidth_gb_s"),
    ({"cluster.router": "nope"}, "cluster.router: unknown router 'nope'"),
    ({"cluster.disaggregation": {"decode_router": "nope"}},
     "cluster.disaggregation.decode_router: unknown router 'nope'"),
    ({"cluster.disaggregation": {"decode_router_params": {"x": 1}}},
     "cluster.disaggregation.decode_router_params.x: unknown key"),
    ({"cluster.instances": 5, "cluster.disaggregation": {"prefill_instances": 2}},
     "cluster.instances: must equal the instances of the pools (3)"),
    ({"cluster.pools": [{"name": "a", "instances": 0}]}, "cluster.pools.0.instances"),
    ({"cluster.pools": [{"name": "a"}, {"name": "a"}]}, "cluster.pools.1.name: duplicate"),
    ({"cluster.pools": [{"name": "a", "role": "prefill"}]}, "cluster.pools: a disaggregated"),
    ({"cluster.pools": [{"name": "a", "role": "prefill"}, {"name": "b", "role": "decode"}]},
     "cluster.disaggregation: prefill/decode pools need this block"),
    ({"cluster.pools": [{"name": "a", "hardware": "tpu-v9"}]}, "cluster.pools.0.hardware: unknown"),
    ({"cluster.disaggregation": {"decode_tp": 3}}, "cluster.disaggregation.decode_tp: 3 does not divide"),
])
def test_bad_cluster_config_exits_2_naming_the_key(tmp_path, capsys, changes, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(small_config(**changes)))
    out = tmp_path / "out"
    for argv in (["run", str(path), "--out", str(out)], ["validate", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err
    assert not out.exists()


def test_timeseries_is_the_time_weighted_step_function():
    steps = pd.DataFrame({
        "instance": [0, 0, 0],
        "start_s": [0.0, 1.0, 3.0],
        "end_s": [1.0, 2.0, 4.0],
        "num_steps": [1, 1, 1], "num_prefill_tokens": [0, 0, 0], "num_decodes": [1, 1, 1],
        "num_running": [2, 4, 0], "num_waiting": [1, 0, 0], "kv_usage": [0.1, 0.3, 0.0],
    })
    ts = instance_timeseries(steps, interval_s=2.0, end_s=4.0, num_instances=2)
    zero = ts[ts["instance"] == 0].reset_index(drop=True)
    # [0,2): 0 until t=1, then 2 until t=2 -> mean 1; [2,4): 4 until t=4 -> 4.
    assert zero["num_running"].tolist() == [1.0, 4.0]
    assert zero["busy_frac"].tolist() == [1.0, 0.5]
    assert zero["kv_usage"].tolist() == pytest.approx([0.05, 0.3])
    assert (ts[ts["instance"] == 1][["num_running", "busy_frac"]] == 0).all().all()


def test_run_writes_timeseries_per_instance_and_plots(tmp_path):
    cfg = small_config(**{"cluster.disaggregation": {"prefill_instances": 1, "decode_instances": 2},
                          "output.timeseries_interval_s": 0.5})
    result = simulate(cfg)
    out = result.save(tmp_path / "o")
    ts = pd.read_csv(out / "timeseries.csv")
    assert list(ts.columns) == ["time_s", "instance", "pool", "num_waiting", "num_running",
                                "kv_usage", "busy_frac", "power_w"]
    assert set(ts["instance"]) == {0, 1, 2} and set(ts["pool"]) == {"prefill", "decode"}
    assert np.allclose(np.diff(ts[ts["instance"] == 0]["time_s"]), 0.5)
    decode = ts[ts["pool"] == "decode"]
    assert decode["num_running"].max() > 0 and ts["kv_usage"].between(0, 1).all()
    assert ts[ts["pool"] == "prefill"]["busy_frac"].max() > 0
    instance_timeline(result).savefig(tmp_path / "ts.png")
    assert (tmp_path / "ts.png").stat().st_size > 10_000
