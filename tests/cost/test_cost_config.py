"""The `cost:` config section, layout checks before any simulation, and the shipped-profile accuracy."""

import pytest

from servesim.build import build, make_cost_model
from servesim.catalog import get_hardware, get_model
from servesim.cli import main
from servesim.config import load_config
from servesim.core.errors import ConfigError
from servesim.cost import RooflineCostModel
from servesim.cost.profile import family_profile, save_profile

SMALL = {"workload": {"num_requests": 5}}


def config(**overrides):
    return load_config(SMALL, overrides)


@pytest.mark.parametrize(
    "overrides, key, fragment",
    [
        ({"cluster.tp": 3}, "cluster.tp", "does not divide the 32 attention heads"),
        ({"model": "llama3-70b"}, "cluster.tp", "weights need"),
        ({"model": "deepseek-v3", "cluster.tp": 8}, "cluster.tp", "weights need"),
        ({"cluster.pp": 40}, "cluster.pp", "40 stages for the 32 layers"),
        ({"cost.expert_parallel": True}, "cost.expert_parallel", "has no experts"),
        ({"model": "qwen2.5-7b", "cluster.tp": 7}, "cluster.tp", "nor is a multiple of the 4 KV"),
        (
            {"model": "qwen1.5-moe-a2.7b", "cluster.tp": 8, "cost.expert_parallel": True},
            "cluster.tp",
            "60 experts",
        ),
        ({"cost.profile": "no/such/profile.yaml"}, "cost.profile", "not found"),
        ({"cost.model": "nope"}, "cost.model", "unknown cost model"),
    ],
)
def test_impossible_layouts_fail_before_simulation(overrides, key, fragment):
    with pytest.raises(ConfigError) as info:
        build(config(**overrides))
    assert info.value.key == key and fragment in str(info.value)


def test_cli_reports_layout_error_as_exit_2(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: llama3-70b\nhardware: h100-sxm\ncluster: {tp: 1}\nworkload: {num_requests: 3}\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("error: cluster.tp: llama3-70b weights need")
    assert not (tmp_path / "o").exists()


def test_build_uses_family_profile_and_cluster_layout():
    built = build(config(**{"model": "llama3-70b", "cluster.tp": 4, "cluster.pp": 2}))
    cost = built.parts[0].cost_model
    assert isinstance(cost, RooflineCostModel) and (cost.tp, cost.pp) == (4, 2)
    assert cost.profile == family_profile("hopper")
    a100 = make_cost_model(config(hardware="a100-80gb"), get_model("llama3-8b"), get_hardware("a100-80gb"))
    assert a100.profile == family_profile("ampere") != family_profile("hopper")


def test_cost_section_keys_reach_the_model(tmp_path):
    prof = tmp_path / "p.yaml"
    save_profile(family_profile("hopper").with_values(step_overhead_s=0.5), prof)
    cfg = config(
        **{
            "cost.profile": str(prof),
            "cost.host_overhead_s": 0.002,
            "cost.prefill_host_overhead_s": 0.02,
            "model": "mixtral-8x7b",
            "hardware": "h200-sxm",
            "cluster.tp": 2,
            "cost.expert_parallel": True,
        }
    )
    cost = build(cfg).parts[0].cost_model
    assert cost.profile.step_overhead_s == 0.5
    assert (cost.host_overhead_s, cost.prefill_host_overhead_s) == (0.002, 0.02)
    assert cost.layout.expert_parallel


def test_run_with_cost_section(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: qwen2.5-7b\nhardware: h200-sxm\ncost: {prefill_host_overhead_s: 0.01}\n"
        "workload: {num_requests: 20, arrival: {rate: 5}}\n"
    )
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--json"]) == 0
    assert '"completed": 20' in capsys.readouterr().out


def test_shipped_hopper_defaults_meet_the_accuracy_target(capsys):
    """Issue 3 target: MAPE <= 5% and worst row <= 20% on the shared H100 rows, shipped defaults."""
    import json

    code = main(
        [
            "costmodel",
            "validate",
            "--measurements",
            "data/measurements/h100/iterations.csv",
            "--hardware",
            "h100-sxm",
            "--json",
        ]
    )
    rep = json.loads(capsys.readouterr().out)
    assert code == 0 and rep["rows"] == 132
    assert rep["mape"] <= 5.0 and rep["max_ape"] <= 20.0


def test_masked_prefix_profile_by_name_reproduces_the_harness(capsys):
    """The harness's explicit-mask prefix kernel is one name away, and fits its rows tighter."""
    import json

    argv = ["costmodel", "validate", "--measurements", "data/measurements/h100/iterations.csv",
            "--hardware", "h100-sxm", "--json"]
    assert main(argv) == 0
    shipped = json.loads(capsys.readouterr().out)
    assert main(argv + ["--profile", "hopper-masked-prefix"]) == 0
    masked = json.loads(capsys.readouterr().out)
    assert masked["mape"] < shipped["mape"] <= 5.0


def test_a_prefix_cache_hit_never_makes_a_prefill_slower():
    """Shipped profile: skipping cached tokens only removes work (fresh and prefix chunks share kernels)."""
    from servesim.cost.base import StepShape

    cost = make_cost_model(load_config(config()), get_model("llama3.1-8b"), get_hardware("h100-sxm"))
    for prompt in (1024, 4096, 12000, 32000):
        fresh = cost.step_time(StepShape([(prompt, 0)]))
        for hit in (16, 512, prompt // 2, prompt - 16):
            assert cost.step_time(StepShape([(prompt - hit, hit)])) <= fresh, (prompt, hit)


@pytest.mark.parametrize("line, message", [
    ("gemm_compute_eff: 0", "gemm_compute_eff: must be > 0, got 0"),
    ("comm_bw_eff: 0.0", "comm_bw_eff: must be > 0, got 0"),
    ("split_kv_target_blocks: 0", "split_kv_target_blocks: must be > 0"),
    ("split_kv_max_splits: 0.5", "split_kv_max_splits: must be >= 1"),
    ("kernel_overhead_s: -1e-6", "kernel_overhead_s: must be >= 0"),
])
def test_a_profile_value_the_roofline_cannot_price_with_is_exit_2(tmp_path, capsys, line, message):
    """A zero efficiency (a truncated profile file reads `gemm_compute_eff: 0.`) was a division by
    zero, reported as an internal error; it names the file and the parameter instead."""
    profile = tmp_path / "p.yaml"
    profile.write_text(f"parameters:\n  {line}\n")
    argv = ["costmodel", "validate", "--profile", str(profile),
            "--measurements", "data/measurements/h100/iterations.csv"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {profile}: ") and message in err and "\n" not in err
