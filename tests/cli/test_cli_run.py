"""`servesim run` / `validate` end to end, and every bad-input path of the core (exit 2, one line)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from servesim.cli import main
from tests.factories import small_config

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
SUMMARY_KEYS = {
    "requests": {"arrived", "completed", "rejected", "unfinished"},
    "latency": {"ttft", "tpot", "e2e", "tbt_max"},
    "throughput": {"requests_per_s", "input_tokens_per_s", "output_tokens_per_s"},
    "slo": {"ttft_s", "tpot_s", "attainment", "goodput_rps"},
    "kv": {"preemptions", "peak_usage_frac", "prefix_hit_rate"},
    "sim": {"seed", "simulated_s", "wall_s", "iterations", "events"},
}
REQUEST_COLUMNS = (
    "request_id, arrival_s, prompt_tokens, output_tokens, instance, first_token_s, finish_s, ttft_s, "
    "tpot_s, e2e_s, tbt_max_s, preemptions, status, rejected_reason"
).split(", ")


def write_config(tmp_path, data: dict, name="c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_quickstart_writes_the_contract_files(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(QUICKSTART), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for section, keys in SUMMARY_KEYS.items():
        assert keys <= set(summary[section]), section
    for stat in summary["latency"].values():
        assert set(stat) == {"mean", "p50", "p90", "p99"}
    req = summary["requests"]
    assert req["arrived"] == 500 == req["completed"] + req["rejected"] + req["unfinished"]
    frame = pd.read_csv(out / "requests.csv")
    assert list(frame.columns[: len(REQUEST_COLUMNS)]) == REQUEST_COLUMNS
    assert len(frame) == 500
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["engine"]["scheduler"] == "fcfs" and resolved["seed"] == 42
    assert "attainment" in capsys.readouterr().out


def test_tpot_and_gap_follow_the_contract(tmp_path):
    out = tmp_path / "o"
    assert main(["run", str(write_config(tmp_path, small_config())), "--out", str(out)]) == 0
    f = pd.read_csv(out / "requests.csv")
    done = f[(f.status == "completed") & (f.output_tokens > 1)]
    expected = (done.e2e_s - done.ttft_s) / (done.output_tokens - 1)
    assert (abs(done.tpot_s - expected) < 1e-9).all()
    assert (done.tbt_max_s >= done.tpot_s - 1e-9).all()  # the longest gap is at least the mean gap


def test_json_and_overrides(tmp_path, capsys):
    cfg = write_config(tmp_path, small_config())
    code = main(["run", str(cfg), "--out", str(tmp_path / "o"), "--json",
                 "--set", "engine.max_num_seqs=4", "--seed", "3"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sim"]["seed"] == 3
    resolved = yaml.safe_load((tmp_path / "o" / "config.yaml").read_text())
    assert resolved["engine"]["max_num_seqs"] == 4


def test_validate_reports_without_running(tmp_path, capsys):
    cfg = write_config(tmp_path, small_config())
    assert main(["validate", str(cfg)]) == 0
    assert "ok" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_unservable_requests_are_rejected_with_a_reason(tmp_path):
    cfg = write_config(
        tmp_path,
        small_config(**{"engine.kv_capacity_tokens": 600, "engine.max_num_batched_tokens": 8192}),
    )
    out = tmp_path / "o"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    f = pd.read_csv(out / "requests.csv", keep_default_na=False)
    rejected = f[f.status == "rejected"]
    assert len(rejected) > 0
    assert set(rejected.rejected_reason) <= {"prompt_exceeds_kv_capacity", "request_exceeds_kv_capacity"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"]["rejected"] == len(rejected)


BAD_CONFIGS = [
    ({"engine": {"max_num_seqs": 0}}, "engine.max_num_seqs"),
    ({"engine": {"max_num_seq": 4}}, "engine.max_num_seq: unknown key"),
    ({"engine": {"max_num_seqs": "many"}}, "engine.max_num_seqs"),
    ({"workload": {"arrival": {"rate": -1}}}, "workload.arrival.rate"),
    ({"workload": {"arrival": {"process": "bursty"}}}, "workload.arrival.process"),
    ({"bogus": 1}, "bogus: unknown key"),
    ({"workload": {"trace": {"path": ""}}}, "workload.trace.path: String should have at least 1 character"),
    ({"workload": {"lengths": {"empirical": ""}}}, "workload.lengths.empirical: String should have at least"),
    ({"model": "gpt-9"}, "model: unknown models 'gpt-9'"),
    ({"hardware": "tpu-v9"}, "hardware: unknown hardware"),
    ({"engine": {"scheduler": "nope"}}, "engine.scheduler: unknown scheduler 'nope'; valid: "),
    ({"engine": {"scheduler": "no_such_module:X"}}, "engine.scheduler: cannot import"),
    ({"cluster": {"router": "nope"}}, "cluster.router: unknown router"),
    ({"cluster": {"tp": 3}}, "cluster.tp: 3 does not divide"),
    ({"model": "llama3-70b"}, "cluster.tp: llama3-70b weights need"),
    ({"engine": {"gpu_memory_utilization": 1.5}}, "engine.gpu_memory_utilization"),
    ({"workload": {"lengths": {"prompt": {"dist": "fixed"}}}}, "workload.lengths.prompt"),
]


@pytest.mark.parametrize("key, shown", [("bogus", "bogus"), ("", "''"), ("a b ", "'a b '"),
                                        ("\u00a1\U000add5d", "'\u00a1\\U000add5d'"), (None, "None"),
                                        (1, "1")])
def test_an_unknown_top_level_key_names_the_file_and_the_keys_it_could_be(tmp_path, capsys, key, shown):
    """An empty or unprintable key (random bytes that parse as YAML) named nothing; the file is
    named now, the key as written or quoted, and the top-level keys listed."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**small_config(), key: 1}, allow_unicode=True))
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {cfg}: {shown}: unknown key at the top level; expected one of seed, model")
    assert "\n" not in err


@pytest.mark.parametrize("assignment", [".foo=1", "engine..x=1", "engine.=1"])
def test_a_dotted_key_with_an_empty_part_is_exit_2_naming_it(tmp_path, capsys, assignment):
    cfg = write_config(tmp_path, {})
    assert main(["validate", str(cfg), "--set", assignment]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {assignment.split('=')[0]}: expected a dotted config key (a part is empty)"


@pytest.mark.parametrize("data,message", BAD_CONFIGS)
def test_bad_config_exits_2_naming_the_key(tmp_path, capsys, data, message):
    cfg = write_config(tmp_path, data)
    out = tmp_path / "out"
    for argv in (["run", str(cfg), "--out", str(out)], ["validate", str(cfg)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["run", "missing.yaml"], "missing.yaml: cannot read config"),
        (["run", "{cfg}", "--set", "engine.max_num_seqs"], "expected KEY=VALUE"),
        (["run", "{cfg}", "--set", "engine.max_num_seqs=-3"], "engine.max_num_seqs"),
        (["run", "{cfg}", "--set", "seed.x=1"], "seed: is a value"),
        (["run", "{cfg}", "--seed", "abc"], "invalid int value"),
        (["run"], "required"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, capsys, argv, message):
    cfg = write_config(tmp_path, small_config())
    argv = [a.replace("{cfg}", str(cfg)) for a in argv]
    assert main(argv + ["--out", str(tmp_path / "o")] if argv[:1] == ["run"] and len(argv) > 1 else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not (tmp_path / "o").exists()


def test_invalid_yaml_names_the_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("seed: 1\nengine: {max_num_seqs: 4\n")
    assert main(["validate", str(path)]) == 2
    assert "broken.yaml:" in capsys.readouterr().err


def test_console_script_exit_code(tmp_path):
    cfg = write_config(tmp_path, {"engine": {"max_num_seqs": 0}})
    proc = subprocess.run(
        [sys.executable, "-m", "servesim", "validate", str(cfg)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "engine.max_num_seqs" in proc.stderr
