"""End to end through the CLI: every policy and predictor runs; bad policy input exits 2."""

import json
from pathlib import Path

import pytest

from servesim.cli import main

ROOT = Path(__file__).resolve().parents[2]
QUICK = str(ROOT / "configs" / "quickstart.yaml")
SMALL = ["--set", "workload.num_requests=40", "--set", "workload.arrival.rate=30"]


def run(tmp_path, *sets):
    args = ["run", QUICK, "--out", str(tmp_path / "out"), *SMALL]
    for s in sets:
        args += ["--set", s]
    return main(args)


@pytest.mark.parametrize(
    "sets",
    [
        ["engine.scheduler=chunked_prefill", "engine.chunked_prefill={max_prefills: 2}"],
        ["engine.scheduler=srtf", "engine.srtf.aging_s=5"],
        ["engine.scheduler=srtf", "engine.predictor={name: noisy_oracle, sigma: 0.5}"],
        ["engine.scheduler=srtf", "engine.predictor={name: bucket, accuracy: 0.6}"],
        ["engine.scheduler=srtf", "engine.predictor=mean"],
        ["engine.scheduler=edf", "engine.edf={admission_control: true, headroom: 0.5}"],
        ["engine.scheduler=priority", "engine.priority={class_priority: {default: 1}}"],
        ["engine.scheduler=srtf", "engine.batching=chunked", "engine.kv_allocation=chunk"],
        ["engine.scheduler=edf", "engine.batching={name: chunked, max_prefills: 1}"],
        ["engine.predictor=noisy_oracle", "engine.predictor.sigma=1.5"],
        ["engine.scheduler=fcfs", "engine.preemption=swap", "engine.kv_capacity_tokens=20000"],
    ],
    ids=lambda s: s[0].split("=")[1] + ("+" + s[1].split("=")[0] if len(s) > 1 else ""),
)
def test_every_policy_runs(tmp_path, sets):
    assert run(tmp_path, *sets) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    req = summary["requests"]
    assert req["arrived"] == 40 == req["completed"] + req["rejected"] + req["unfinished"]
    assert req["unfinished"] == 0
    config = (tmp_path / "out" / "config.yaml").read_text()
    assert sets[0].split("=")[1] in config


def test_example_plugin_runs_from_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    plugin = "engine.scheduler=examples.custom_scheduler:ShortestPromptFirst"
    assert run(tmp_path, plugin, "engine.scheduler.bucket_tokens=64", "engine.batching=chunked") == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["requests"]["completed"] == 40


@pytest.mark.parametrize(
    "sets, message",
    [
        (
            ["engine.scheduler=nope"],
            "engine.scheduler: unknown scheduler 'nope'; valid: chunked_prefill, edf, fcfs, priority, srtf",
        ),
        (
            ["engine.predictor=psychic"],
            "engine.predictor: unknown predictor 'psychic'; valid: bucket, mean, noisy_oracle, oracle",
        ),
        (["engine.predictor={sigma: 1}"], "engine.predictor.sigma: unknown key"),  # oracle's
        (["engine.predictor={name: noisy_oracle, sigma: -1}"], "engine.predictor.sigma: "),
        (["engine.predictor={name: bucket, boundaries: [5, 3]}"], "engine.predictor.boundaries: "),
        (["engine.scheduler=srtf", "engine.srtf.aging_s=-1"], "engine.srtf.aging_s: "),
        (["engine.scheduler={name: srtf, aging_s: -1}"], "engine.scheduler.aging_s: "),
        (["engine.scheduler=srtf", "engine.scheduler.agin_s=1"], "engine.scheduler.agin_s: unknown key"),
        (["engine.scheduler={name: ''}"], "engine.scheduler: a component block needs `name:`"),
        (
            ["engine.batching=nope"],
            "engine.batching: unknown batching 'nope'; valid: chunked, whole",
        ),
        (["engine.batching={name: chunked, max_prefills: 0}"], "engine.batching.max_prefills: "),
        (
            ["engine.scheduler=chunked_prefill", "engine.batching=mylab:Batching"],
            "engine.batching: scheduler chunked_prefill means fcfs with chunked batching",
        ),
        (["engine.kv_allocation=block"], "engine.kv_allocation: "),
        (["engine.kv_watermark=1"], "engine.kv_watermark: "),
        (["engine.predictor.sigma=1"], "engine.predictor.sigma: unknown key"),  # oracle has none
        (["cluster.router={name: power_of_two, load: work}"], "cluster.router.load: "),
        (["engine.srtf.aging_s=0"], "engine.srtf.aging_s: "),  # checked even when not selected
        (
            ["engine.scheduler=edf", "engine.edf={admision_control: true}"],
            "engine.edf.admision_control: unknown key",
        ),
        (["engine.chunked_prefill.max_prefills=0"], "engine.chunked_prefill.max_prefills: "),
        (["engine.priority={class_priority: {online: high}}"],
         "engine.priority.class_priority.online: "),
        (["engine.priority={classes: {online: 0}}"], "replaced by `class_priority`"),
        (
            ["engine.scheduler={name: srtf, aging_s: 1}", "engine.srtf.aging_s=2"],
            "engine.srtf: parameters of srtf are also given in engine.scheduler",
        ),
        (["engine.scheduler_params={x: 1}"], "engine.scheduler_params.x: unknown key"),
        (["engine.preemption=drop"], "engine.preemption: "),
        (["engine.scheduler=no_such_module_xyz:Policy"], "cannot import 'no_such_module_xyz'"),
        (
            ["engine.scheduler=collections:OrderedDict"],
            "collections:OrderedDict is not a scheduler: missing method(s) rank_key",
        ),
        (["engine.scheduler=examples.custom_scheduler:Nope"], "has no attribute 'Nope'"),
    ],
)
def test_bad_policy_input_exits_2_with_the_key(tmp_path, capsys, monkeypatch, sets, message):
    monkeypatch.chdir(ROOT)
    assert run(tmp_path, *sets) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written half-way


def test_plugin_whose_constructor_breaks_the_protocol(tmp_path, capsys, monkeypatch):
    (tmp_path / "badplugin.py").write_text(
        "class Policy:\n"
        "    def __init__(self, needs_this):\n        pass\n"
        "    def rank_key(self, request, now): return (request.request_id,)\n"
    )
    monkeypatch.chdir(tmp_path)
    assert run(tmp_path, "engine.scheduler=badplugin:Policy") == 2
    assert "engine.scheduler: cannot construct badplugin:Policy" in capsys.readouterr().err


def test_validate_checks_policy_blocks(capsys):
    assert main(["validate", QUICK, "--set", "engine.edf.headroom=0"]) == 2
    assert "engine.edf.headroom: " in capsys.readouterr().err


def test_benchmark_config_serves_sharegpt_pairs(tmp_path, monkeypatch):
    """configs/sched_sharegpt.yaml (the scheduler comparison) resamples whole (prompt, output)
    rows of the shipped ShareGPT length file, so a table row is one `servesim run --set`."""
    import pandas as pd

    monkeypatch.chdir(ROOT)
    out = tmp_path / "o"
    args = ["run", "configs/sched_sharegpt.yaml", "--out", str(out), "--set", "engine.scheduler=srtf"]
    assert main(args + ["--set", "workload.num_requests=150"]) == 0
    served = pd.read_csv(out / "requests.csv")[["prompt_tokens", "output_tokens"]]
    table = pd.read_csv(ROOT / "traces" / "sharegpt" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv")
    rows = set(zip(table.num_prefill_tokens, table.num_decode_tokens))
    assert len(served) == 150
    assert all(pair in rows for pair in zip(served.prompt_tokens, served.output_tokens))
