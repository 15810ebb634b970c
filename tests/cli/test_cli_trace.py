"""`servesim trace info | generate | plot` end to end, and their bad-input paths (exit 2, one line)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from servesim.cli import main
from servesim.config import load_config
from servesim.core.rng import stream
from servesim.workload import build_requests, read_trace
from tests.factories import small_config

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT / "traces"
INFO_KEYS = {"rows", "span_s", "rate_per_s", "interarrival_cv", "prompt_tokens", "output_tokens"}


def info_json(capsys, *args) -> dict:
    assert main(["trace", "info", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_keys_and_values_for_azure(capsys):
    info = info_json(capsys, TRACES / "azure2023" / "AzureLLMInferenceTrace_conv.csv")
    assert INFO_KEYS <= info.keys()
    assert info["format"] == "azure" and info["rows"] == 19366
    assert info["span_s"] == pytest.approx(3501.72, abs=0.01)
    assert info["rate_per_s"] == pytest.approx(19366 / info["span_s"])
    assert set(info["prompt_tokens"]) >= {"mean", "p50", "p90", "p99"}
    assert info["prompt_tokens"]["p50"] == 1020 and info["output_tokens"]["p50"] == 129
    assert "prefix_block_reuse" not in info


@pytest.mark.parametrize(
    "name, reuse", [("conversation_trace.jsonl", 0.366), ("synthetic_trace.jsonl", 0.640)]
)
def test_info_reproduces_mooncake_prefix_reuse(capsys, name, reuse):
    info = info_json(capsys, TRACES / "mooncake" / name)
    assert round(info["prefix_block_reuse"], 3) == reuse
    assert info["hash_block_size"] == 512


def test_info_on_a_length_file_has_no_clock(capsys):
    info = info_json(capsys, TRACES / "sharegpt" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv")
    assert info["rows"] == 30731
    assert info["span_s"] is None and info["rate_per_s"] is None and info["interarrival_cv"] is None


def test_info_human_output(capsys):
    assert main(["trace", "info", str(TRACES / "mooncake" / "synthetic_trace.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "rows              3993" in out and "prefix_block_reuse 0.6396" in out


def test_info_servegen_window_and_format_override(capsys):
    folder = TRACES / "servegen" / "language" / "m-large"
    info = info_json(capsys, folder, "--format", "servegen", "--start", 3600, "--duration", 600, "--seed", 3)
    assert info["format"] == "servegen"
    assert info["span_s"] <= 600
    again = info_json(capsys, folder, "--start", 3600, "--duration", 600, "--seed", 3)
    assert again["rows"] == info["rows"]


def test_info_skip_bad_rows_reports_counts(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:00:00.0,10,5\n2023-11-16 18:00:01.0,x,5\n2023-11-16 18:00:02.0,-3,5\n"
        "2023-11-16 18:00:03.0,7,0\n2023-11-16 18:00:04.0,8,6\n"
    )
    assert main(["trace", "info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}:3: column 'ContextTokens'" in err
    info = info_json(capsys, path, "--skip-bad-rows")
    assert info["rows"] == 2
    assert info["skipped_rows"] == {"non_numeric": 1, "negative": 1}
    assert info["dropped_rows"] == {"zero_tokens": 1}
    assert main(["trace", "info", str(path), "--skip-bad-rows"]) == 0
    assert "skipped bad rows: 2 (negative 1, non_numeric 1)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["trace", "info", "missing.csv"], "missing.csv: no such file"),
        (["trace", "info", "README.md"], "cannot tell the trace format"),
        (
            ["trace", "info", "traces/azure2023/AzureLLMInferenceTrace_code.csv", "--format", "nope"],
            "--format",
        ),
        (
            ["trace", "info", "traces/azure2023/AzureLLMInferenceTrace_code.csv", "--duration", "-1"],
            "--duration",
        ),
        (["trace"], "required"),
        (["trace", "generate", "configs/quickstart.yaml"], "--out"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, monkeypatch, args, message):
    monkeypatch.chdir(ROOT)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


# -- generate -------------------------------------------------------------------------------------


def write_config(tmp_path, data: dict) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_generate_writes_what_run_would_simulate_and_reads_back(tmp_path, capsys):
    classes = [
        {
            "name": "chat",
            "priority": 1,
            "slo": {"ttft_s": 0.5},
            "arrival": {"rate": 3.0},
            "sessions": {"turns": {"dist": "fixed", "value": 3}, "think_time": {"mean": 5.0}},
        },
        {"name": "bulk", "arrival": {"process": "gamma", "rate": 2.0, "cv": 2.0}},
    ]
    cfg_path = write_config(
        tmp_path, small_config(**{"workload.num_requests": 150, "workload.classes": classes})
    )
    out = tmp_path / "w.csv"
    assert main(["trace", "generate", str(cfg_path), "--out", str(out)]) == 0
    assert "wrote 150 requests" in capsys.readouterr().out
    frame = pd.read_csv(out)
    assert list(frame.columns[:3]) == ["arrival_s", "prompt_tokens", "output_tokens"]
    assert {"session_id", "class", "priority", "ttft_slo_s", "hash_ids", "hash_block_size"} <= set(
        frame.columns
    )

    cfg = load_config(cfg_path)
    expected = build_requests(cfg.workload, stream(cfg.seed, "workload"), cfg.resolve_path)
    np.testing.assert_allclose(frame["arrival_s"], expected.arrival_s)
    back = read_trace(out)  # the generic csv reader reads it back, hashes included
    assert back.format == "csv"
    np.testing.assert_array_equal(back.table.prompt_tokens, expected.prompt_tokens)
    assert back.table.prefix_hashes == [h for h in expected.prefix_hashes]
    assert list(back.table.class_name) == list(expected.class_name)


def test_generate_with_seed_and_set(tmp_path, capsys):
    cfg_path = write_config(tmp_path, small_config())
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["trace", "generate", str(cfg_path), "--out", str(a), "--seed", "1", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["rows"] == 60
    assert main(["trace", "generate", str(cfg_path), "--out", str(b), "--set", "workload.rate=40"]) == 0
    assert not a.read_text() == b.read_text()


def test_generate_bad_trace_exits_2_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00.0,10,5\nnot-a-time,1,1\n")
    cfg_path = write_config(tmp_path, small_config(**{"workload": {"trace": {"path": str(bad)}}}))
    out = tmp_path / "w.csv"
    assert main(["trace", "generate", str(cfg_path), "--out", str(out)]) == 2
    assert f"{bad}:3: column 'TIMESTAMP'" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".w.csv*"))


def test_run_surfaces_skipped_rows_on_stderr(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00.0,10,5\nx,1,1\n"
        "2023-11-16 18:00:01.0,20,4\n"
    )
    cfg = small_config(**{"workload": {"trace": {"path": str(bad), "skip_bad_rows": True}}})
    assert main(["run", str(write_config(tmp_path, cfg)), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 bad row(s): bad_timestamp 1" in err


def test_relative_trace_path_resolves_beside_the_config(tmp_path, monkeypatch, capsys):
    (tmp_path / "t.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0,10,2\n1.5,20,3\n")
    cfg_path = write_config(tmp_path, small_config(**{"workload": {"trace": {"path": "t.csv"}}}))
    monkeypatch.chdir(ROOT)
    assert main(["trace", "generate", str(cfg_path), "--out", str(tmp_path / "o.csv")]) == 0
    assert "wrote 2 requests" in capsys.readouterr().out


# -- plot -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    ["traces/azure2023/AzureLLMInferenceTrace_code.csv", "traces/sharegpt", "configs/quickstart.yaml"],
)
def test_plot_writes_a_png(tmp_path, monkeypatch, capsys, source):
    monkeypatch.chdir(ROOT)
    if source == "traces/sharegpt":
        source = "traces/sharegpt/sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
    out = tmp_path / "p.png"
    assert main(["trace", "plot", source, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "name", ["azure_conv", "mooncake_conv", "sharegpt_poisson", "multiclass_sessions", "servegen_mlarge"]
)
def test_example_trace_configs_run(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "o"
    args = ["run", f"configs/{name}.yaml", "--out", str(out), "--set", "workload.num_requests=120", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["requests"]["arrived"] == 120
    assert summary["requests"]["completed"] > 0
