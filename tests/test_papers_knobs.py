"""The knobs published studies need: per-pool engine limits, length filters, `--set` on names and
lists, inline specs in `costmodel price`, per-point run files in sweeps, placement searches."""

import json

import numpy as np
import pandas as pd
import pytest

from servesim import simulate
from servesim.build import build
from servesim.cli import main
from servesim.config import load_config
from servesim.core.errors import ConfigError
from tests.factories import write_config

SMALL = {
    "seed": 2,
    "model": "llama3-8b",
    "hardware": "h100-sxm",
    "workload": {"num_requests": 40, "arrival": {"rate": 10.0},
                 "lengths": {"prompt": {"dist": "uniform", "min": 100, "max": 3000},
                             "output": {"dist": "uniform", "min": 10, "max": 400}}},
}
DISAGG = {"prefill_instances": 1, "decode_instances": 2,
          "prefill_engine": {"max_num_seqs": 128, "max_num_batched_tokens": 4096},
          "decode_engine": {"max_num_seqs": 1024, "scheduler": "srtf"}}


# -- per-pool engines ----------------------------------------------------------------------------
def test_disaggregated_pools_get_their_own_limits_and_scheduler():
    built = build(load_config(SMALL, {"cluster.disaggregation": DISAGG}))
    (pre,) = [p for p in built.parts if p.role == "prefill"]
    dec = [p for p in built.parts if p.role == "decode"]
    assert pre.scheduler.limits.max_num_seqs == 128 and pre.scheduler.limits.max_num_batched_tokens == 4096
    assert all(d.scheduler.limits.max_num_seqs == 1024 for d in dec)
    assert {type(d.scheduler.policy).__name__ for d in dec} == {"SRTFPolicy"}
    assert type(pre.scheduler.policy).__name__ == "FCFSPolicy"
    summary = simulate(load_config(SMALL, {"cluster.disaggregation": DISAGG})).summary
    assert summary["requests"]["completed"] == 40


def test_pool_engines_in_cluster_pools():
    pools = [{"name": "big", "engine": {"max_num_seqs": 8}}, {"name": "small"}]
    built = build(load_config(SMALL, {"cluster.pools": pools}))
    assert [p.scheduler.limits.max_num_seqs for p in built.parts] == [8, 256]


@pytest.mark.parametrize("override, key", [
    ({"cluster.disaggregation": {**DISAGG, "decode_engine": {"max_num_seqz": 1}}},
     "cluster.disaggregation.decode_engine.max_num_seqz"),
    ({"cluster.disaggregation": {**DISAGG, "prefill_engine": {"max_num_seqs": 0}}},
     "cluster.disaggregation.prefill_engine.max_num_seqs"),
    ({"cluster.pools": [{"name": "a", "engine": {"preemption": "drop"}}]},
     "cluster.pools.0.engine.preemption"),
])
def test_bad_pool_engine_keys_are_named(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(SMALL, override)
    assert err.value.key == key


def test_pool_engine_config_round_trips_through_the_dump(tmp_path):
    from servesim.simulation import dump_config

    cfg = load_config(SMALL, {"cluster.disaggregation": DISAGG})
    again = load_config(__import__("yaml").safe_load(dump_config(cfg)))
    assert again.pool_engines()[1].scheduler == "srtf"


# -- length filters -----------------------------------------------------------------------------
@pytest.mark.parametrize("action", ["drop", "clip", "reject"])
def test_length_filter_actions(action):
    f = {"max_total_tokens": 1500, "action": action}
    result = simulate(load_config(SMALL, {"workload.filter": f}))
    s, r = result.summary, result.requests
    total = r["prompt_tokens"] + r["output_tokens"]
    plain = simulate(load_config(SMALL)).requests
    over = int(((plain["prompt_tokens"] + plain["output_tokens"]) > 1500).sum())
    assert over > 0
    assert s["requests"]["arrived"] == 40  # the count and the arrival times stay the config's
    assert np.allclose(r["arrival_s"], plain["arrival_s"])
    if action == "drop":
        assert (total <= 1500).all() and s["workload"]["dropped"] >= over
    elif action == "clip":
        assert (total <= 1500).all() and s["workload"]["clipped"] == over
        kept = (plain["prompt_tokens"] + plain["output_tokens"]) <= 1500
        assert (r["prompt_tokens"][kept] == plain["prompt_tokens"][kept]).all()
    else:
        rejected = r[r["status"] == "rejected"]
        assert len(rejected) == over == s["workload"]["rejected"] == s["requests"]["rejected"]
        assert set(rejected["rejected_reason"]) == {"exceeds_length_filter"}
    assert s["requests"]["arrived"] == s["requests"]["completed"] + s["requests"]["rejected"]


def test_filter_to_the_model_context_and_on_a_trace(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,100,10\n1,9000,10\n2,50,5\n")
    cfg = {**SMALL, "workload": {"trace": {"path": str(trace), "format": "csv"},
                                 "filter": {"max_total_tokens": "model"}}}
    s = simulate(cfg).summary  # llama3-8b: 8,192 tokens of context
    assert s["workload"] == {"dropped": 1, "clipped": 0, "rejected": 0} and s["requests"]["arrived"] == 2


def test_filter_that_no_draw_can_meet_is_refused():
    lengths = {"prompt": {"dist": "fixed", "value": 500}, "output": {"dist": "fixed", "value": 5}}
    fixed = {"workload.lengths": lengths,
             "workload.filter": {"max_prompt_tokens": 100}}
    with pytest.raises(ConfigError, match="cannot draw lengths within workload.filter"):
        simulate(load_config(SMALL, fixed))
    with pytest.raises(ConfigError, match="max_total_tokens"):
        load_config(SMALL, {"workload.filter": {"action": "drop"}})


# -- --set on names and lists ------------------------------------------------------------------------
def test_set_replaces_a_name_with_a_mapping_and_indexes_lists():
    cfg = load_config(SMALL, {"model.weight_dtype": "fp8", "hardware.hbm_gib": 100})
    assert cfg.model == {"base": "llama3-8b", "weight_dtype": "fp8"}
    assert cfg.hardware == {"base": "h100-sxm", "hbm_gib": 100}
    cfg = load_config(SMALL, {"engine.predictor.name": "noisy_oracle", "engine.predictor.sigma": 0.2})
    assert cfg.engine.predictor == {"name": "noisy_oracle", "sigma": 0.2}
    cfg = load_config({**SMALL, "cluster": {"pools": [{"name": "a"}, {"name": "b"}]}},
                      {"cluster.pools.1.tp": 2, "cluster.pools.0.engine.max_num_seqs": 16})
    assert cfg.cluster.pools[1].tp == 2 and cfg.cluster.pools[0].engine == {"max_num_seqs": 16}
    with pytest.raises(ConfigError, match="cluster.pools.5"):
        load_config({**SMALL, "cluster": {"pools": [{"name": "a"}]}}, {"cluster.pools.5.tp": 2})


def test_cli_run_with_a_quantised_variant(tmp_path):
    code = main(["run", str(write_config(tmp_path)), "--set", "model.weight_dtype=fp8",
                 "--set", "model.act_dtype=fp8", "--out", str(tmp_path / "o")])
    assert code == 0


# -- costmodel price ---------------------------------------------------------------------------------
def test_price_accepts_inline_specs_and_overrides(capsys):
    args = ["costmodel", "price", "--hardware", "h100-sxm", "--decodes", "32", "--ctx", "2048", "--json"]
    assert main([*args, "--model", "llama3-8b"]) == 0
    base = json.loads(capsys.readouterr().out)["total_s"]
    assert main([*args, "--model", "llama3-8b", "--set", "model.weight_dtype=int4"]) == 0
    int4 = json.loads(capsys.readouterr().out)["total_s"]
    assert main([*args, "--model", "{base: llama3-8b, weight_dtype: int4}"]) == 0
    inline = json.loads(capsys.readouterr().out)["total_s"]
    assert int4 == inline < base
    assert main([*args, "--model", "llama3-8b", "--set", "hardware.hbm_tb_s=6.7"]) == 0
    assert json.loads(capsys.readouterr().out)["total_s"] < base


@pytest.mark.parametrize("extra", [["--set", "tp=2"], ["--set", "model.nope=1"], ["--model", "[1, 2]"]])
def test_price_bad_overrides_exit_2(extra, capsys):
    args = ["costmodel", "price", "--hardware", "h100-sxm", "--model", "llama3-8b", *extra]
    assert main(args) == 2
    assert capsys.readouterr().err.count("\n") == 1


# -- sweeps keep each point's run ---------------------------------------------------------------------
def test_sweep_keep_runs_writes_each_points_files(tmp_path):
    out = tmp_path / "sw"
    code = main(["sweep", str(write_config(tmp_path)), "--grid", "workload.arrival.rate=5,10",
                 "--keep-runs", "--workers", "1", "--no-progress", "--out", str(out)])
    assert code == 0
    frame = pd.read_csv(out / "sweep.csv")
    for i, row in frame.iterrows():
        folder = out / "runs" / f"{i:04d}"
        assert row["run_dir"] == str(folder)
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["slo"]["attainment"] == pytest.approx(row["slo.attainment"])
        assert len(pd.read_csv(folder / "requests.csv")) == summary["requests"]["arrived"]


# -- placement -------------------------------------------------------------------------------------------
def test_placement_ranks_capacity_per_gpu(tmp_path, capsys):
    cfg = write_config(tmp_path, workload={"num_requests": 60, "arrival": {"rate": 10.0},
                       "lengths": {"prompt": {"dist": "fixed", "value": 600},
                                   "output": {"dist": "fixed", "value": 60}}},
                       cluster={"disaggregation": {"prefill_instances": 1, "decode_instances": 1}})
    out = tmp_path / "pl"
    code = main(["placement", str(cfg), "--grid", "cluster.disaggregation.prefill_tp=1,2",
                 "--grid", "cluster.disaggregation.decode_instances=1,2", "--target", "latency.ttft.p90<=0.3",
                 "--no-steady-check", "--rtol", "0.1", "--workers", "1", "--json", "--out", str(out)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["placements"]
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    key = "cluster.disaggregation."
    gpus = {(r["point"][key + "prefill_tp"], r["point"][key + "decode_instances"]): r["cost"] for r in rows}
    assert gpus == {(1, 1): 2, (1, 2): 3, (2, 1): 3, (2, 2): 4}
    per = [r["per_unit"] for r in rows]
    assert per == sorted(per, reverse=True)
    assert all(r["per_unit"] == pytest.approx(r["capacity"] / r["cost"]) for r in rows)
    assert (out / "placement.csv").exists() and json.loads((out / "placement.json").read_text()) == doc


def test_placement_reports_a_layout_that_does_not_fit(tmp_path):
    from servesim.studies.capacity import parse_target
    from servesim.studies.placement import plan_placements, run_placements

    cfg = write_config(tmp_path, model="llama3-70b")
    keys, tasks = plan_placements(cfg, {"cluster.tp": [1, 4]}, None, [parse_target("latency.ttft.p90<=1")],
                                  steady=None, rel_tol=0.2)
    rows = run_placements(tasks, workers=1)
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["point"]["cluster.tp"] for r in failed] == [1] and "GiB" in failed[0]["error"]
    assert rows[-1]["status"] == "failed"  # failed points sort last


def test_unknown_objective_fails_before_running(tmp_path):
    from servesim.studies.capacity import parse_target
    from servesim.studies.placement import plan_placements

    with pytest.raises(ConfigError, match="unknown objective"):
        plan_placements(write_config(tmp_path), {"cluster.tp": [1]}, None,
                        [parse_target("latency.ttft.p90<=1")], objective="dollars")


def test_dollar_and_power_objectives_price_a_placement(tmp_path):
    from servesim.studies.capacity import parse_target
    from servesim.studies.placement import plan_placements, run_placements

    cfg = write_config(tmp_path)
    rows = {}
    for objective in ("gpus", "usd_per_hour", "kw"):
        _, tasks = plan_placements(cfg, {"hardware": ["h100-sxm", "a100-80gb"]}, None,
                                   [parse_target("latency.ttft.p90<=1")], steady=None, rel_tol=0.2,
                                   objective=objective)
        rows[objective] = {r["point"]["hardware"]: r for r in run_placements(tasks, workers=1)}
    h100, a100 = rows["usd_per_hour"]["h100-sxm"], rows["usd_per_hour"]["a100-80gb"]
    assert h100["unit"] == "$/h" and h100["cost"] > a100["cost"] > 0
    assert rows["kw"]["h100-sxm"]["unit"] == "kW" and 0 < rows["kw"]["h100-sxm"]["cost"] < 1.0
    assert rows["gpus"]["h100-sxm"]["cost"] == 1
    assert h100["capacity"] == rows["gpus"]["h100-sxm"]["capacity"]
