"""Engine runs as input: reading and validating the folder, `servesim replay`, and
`servesim costmodel calibrate --engine-run`, end to end on a small real run (tests/data/enginerun)."""

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from servesim.cli import main
from servesim.cost.profile import load_profile
from servesim.enginerun import read_engine_run

RUN = Path(__file__).parents[1] / "data" / "enginerun"


def copy_run(tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(RUN, dst)
    return dst


def steps_lines(run: Path) -> list[str]:
    with gzip.open(run / "steps.csv.gz", "rt") as f:
        return f.read().splitlines()


def write_steps(run: Path, lines: list[str], plain: bool = False) -> None:
    (run / "steps.csv.gz").unlink()
    text = "\n".join(lines) + "\n"
    if plain:
        (run / "steps.csv").write_text(text)
    else:
        with gzip.open(run / "steps.csv.gz", "wt") as f:
            f.write(text)


def set_field(line: str, header: str, column: str, value: str) -> str:
    cells = line.split(",")
    cells[header.split(",").index(column)] = value
    return ",".join(cells)


def run_cli(capsys, argv):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


# -- reading -------------------------------------------------------------------------------------
def test_the_folder_reads_into_shapes_and_timings():
    run = read_engine_run(RUN)
    assert len(run.workload) == 20 and len(run.requests) == 20
    steps = run.steps
    assert set(np.unique(steps.kind)) == {"prefill", "decode", "mixed"}
    assert steps.gpu_s is not None and steps.enqueue_s is not None
    assert steps.decode_bucket is not None
    header = steps_lines(RUN)[0].split(",")
    first_decode = next(i for i, k in enumerate(steps.kind) if k == "decode")
    row = steps_lines(RUN)[first_decode + 1].split(",")
    n = int(row[header.index("num_decode_seqs")])
    shape = steps.shapes[first_decode]
    # engines count a decode's new token in its context; shapes count cached tokens
    assert shape.num_decodes == n
    assert shape.decode_ctx_sum == int(row[header.index("sum_decode_ctx")]) - n
    assert shape.max_decode_ctx == int(row[header.index("max_decode_ctx")]) - 1
    mixed = steps.shapes[next(i for i, k in enumerate(steps.kind) if k == "mixed")]
    assert mixed.prefill_chunks and mixed.num_decodes
    assert (run.requests["ttft_s"] > 0).all() and (run.requests["tpot_s"] > 0).all()


def test_plain_steps_csv_and_minimal_columns(tmp_path):
    """Only start_s, end_s, prefill_lens, num_decode_seqs, sum_decode_ctx are required."""
    run = copy_run(tmp_path)
    lines = steps_lines(run)
    header = lines[0].split(",")
    minimal = ("start_s", "end_s", "prefill_lens", "num_decode_seqs", "sum_decode_ctx")
    keep = [header.index(c) for c in minimal]
    write_steps(run, [",".join(line.split(",")[i] for i in keep) for line in lines], plain=True)
    (run / "requests.csv").unlink()
    loaded = read_engine_run(run)
    assert loaded.requests is None and loaded.steps.gpu_s is None
    full = read_engine_run(RUN).steps
    assert [s.decode_ctx_sum for s in loaded.steps.shapes] == [s.decode_ctx_sum for s in full.shapes]
    assert all(p == 0 for s in loaded.steps.shapes for _, p in s.prefill_chunks)


STEP_CASES = {
    "start_s": ("abc", "start_s: expected a number, got 'abc'"),
    "end_s": ("0.001", "end_s: must be after start_s"),
    "prefill_prefix": ("0+0+0", "prefill_prefix: 3 entries for"),
    "kind": ("decode", "kind: 'decode' but the step holds a mixed step"),
    "max_decode_ctx": ("999999", "max_decode_ctx: 999999 is impossible"),
    "num_decode_seqs": ("-3", "num_decode_seqs: expected an integer >= 0, got '-3'"),
    "prefill_lens": ("12+x", "prefill_lens: expected '+'-joined integers >= 0"),
}


@pytest.mark.parametrize("column", sorted(STEP_CASES))
def test_a_bad_step_row_exits_2_naming_file_and_line(tmp_path, capsys, column):
    run = copy_run(tmp_path)
    lines = steps_lines(run)
    kinds = read_engine_run(RUN).steps.kind
    target = next(i for i, k in enumerate(kinds) if k == "mixed" and i > 3) + 1  # a mixed step's line
    value, message = STEP_CASES[column]
    lines[target] = set_field(lines[target], lines[0], column, value)
    write_steps(run, lines)
    code, _, err = run_cli(capsys, ["replay", str(run), "--out", str(tmp_path / "o")])
    assert code == 2
    assert f"steps.csv.gz:{target + 1}: {message}" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "o").exists()


FILE_CASES = [
    ("workload.csv", 4, "prompt_tokens", "0", "workload.csv:4: prompt_tokens: must be >= 1"),
    ("workload.csv", 3, "arrival_s", "nan", "workload.csv:3: arrival_s: expected a number, got 'nan'"),
    ("requests.csv", 5, "request_id", "9999", "requests.csv:5: request_id: not in workload.csv"),
    ("requests.csv", 2, "first_token_s", "0.0", "requests.csv:2: first_token_s: before arrival_s"),
]


@pytest.mark.parametrize("name,line,column,value,message", FILE_CASES)
def test_bad_workload_and_request_rows_exit_2(tmp_path, capsys, name, line, column, value, message):
    run = copy_run(tmp_path)
    lines = (run / name).read_text().splitlines()
    lines[line - 1] = set_field(lines[line - 1], lines[0], column, value)
    (run / name).write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(capsys, ["replay", str(run), "--out", str(tmp_path / "o")])
    assert code == 2 and message in err


def test_missing_files_and_columns_exit_2(tmp_path, capsys):
    run = copy_run(tmp_path)
    (run / "engine.yaml").unlink()
    code, _, err = run_cli(capsys, ["replay", str(run)])
    assert code == 2 and "engine.yaml: missing" in err
    run = copy_run(tmp_path / "b")
    lines = (run / "workload.csv").read_text().splitlines()
    (run / "workload.csv").write_text("\n".join(x.rsplit(",", 1)[0] for x in lines) + "\n")
    code, _, err = run_cli(capsys, ["replay", str(run)])
    assert code == 2 and "workload.csv:1: missing column(s) output_tokens" in err
    code, _, err = run_cli(capsys, ["replay", str(tmp_path / "nowhere")])
    assert code == 2 and "not an engine run folder" in err


def test_engine_yaml_keys_are_config_keys(tmp_path, capsys):
    run = copy_run(tmp_path)
    text = (run / "engine.yaml").read_text().replace("block_size: 16", "block_sise: 16")
    (run / "engine.yaml").write_text(text)
    code, _, err = run_cli(capsys, ["replay", str(run), "--out", str(tmp_path / "o")])
    assert code == 2 and "engine.yaml: engine.block_sise: unknown key" in err


# -- replay ----------------------------------------------------------------------------------------
def test_replay_compares_real_and_simulated(tmp_path, capsys):
    out = tmp_path / "o"
    code, text, _ = run_cli(capsys, ["replay", str(RUN), "--out", str(out), "--json"])
    assert code == 0
    report = json.loads(text)
    for key in ("ttft.p50", "ttft.p90", "tpot.p50", "tpot.p90", "e2e.mean", "tbt_max.p99"):
        assert report["real"][key] > 0 and report["sim"][key] > 0
        expected = (report["sim"][key] / report["real"][key] - 1) * 100
        assert report["error_pct"][key] == pytest.approx(expected)
    steps = report["steps"]
    assert set(steps) == {"prefill", "decode", "mixed", "all", "1 chunk", "2+ chunks"}
    assert steps["all"]["steps"] == 890
    # the steps with prompts again, by how many chunks they carry (12 of them two or more)
    with_chunks = steps["prefill"]["steps"] + steps["mixed"]["steps"]
    assert steps["1 chunk"]["steps"] + steps["2+ chunks"]["steps"] == with_chunks
    assert steps["2+ chunks"]["steps"] == 12
    assert (out / "summary.json").exists() and (out / "comparison.json").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"]["completed"] == 20
    code, text, _ = run_cli(capsys, ["replay", str(RUN), "--out", str(out)])
    assert code == 0 and "ttft error" in text and "step times vs the cost model" in text


def test_replay_with_a_profile_and_overrides(tmp_path, capsys):
    profile = Path(__file__).parents[1] / "data" / "profile_split_kv.yaml"
    base = ["replay", str(RUN), "--out", str(tmp_path / "o"), "--json"]
    _, shipped, _ = run_cli(capsys, base)
    _, engine, _ = run_cli(capsys, base + ["--profile", str(profile)])
    shipped, engine = json.loads(shipped), json.loads(engine)
    # the engine's own profile prices its steps far better than the data-free one
    assert abs(engine["steps"]["all"]["total_pct"]) < 10 < abs(shipped["steps"]["all"]["total_pct"])
    _, slow, _ = run_cli(capsys, base + ["--profile", str(profile), "--set", "cost.host_overhead_s=0.05"])
    assert json.loads(slow)["sim"]["tpot.p50"] == pytest.approx(0.05)


def test_replay_without_requests_csv_has_no_comparison(tmp_path, capsys):
    run = copy_run(tmp_path)
    (run / "requests.csv").unlink()
    code, text, _ = run_cli(capsys, ["replay", str(run), "--out", str(tmp_path / "o"), "--json"])
    report = json.loads(text)
    assert code == 0 and report["real"] == {} and report["error_pct"] == {}
    assert report["sim"]["ttft.p50"] > 0


# -- calibrate --engine-run -----------------------------------------------------------------------
def test_calibrate_on_an_engine_run_writes_the_engine_layer(tmp_path, capsys):
    prof = tmp_path / "p.yaml"
    argv = ["costmodel", "calibrate", "--engine-run", str(RUN), "--hardware", "h200-sxm"]
    argv += ["--model", "llama3-8b", "--out", str(prof), "--decode-attention", "split_kv", "--json"]
    code, text, _ = run_cli(capsys, argv)
    assert code == 0
    out = json.loads(text)
    report = out["engine_run"]
    assert report["decode_attention"] == "split_kv"
    assert report["after"]["all"]["mape"] < report["before"]["all"]["mape"] / 2
    assert any(name.startswith("host.eager.enqueue") for name in out["fitted"])
    profile = load_profile(prof)
    assert profile.decode_attention == "split_kv"
    assert profile.engine.graph_batch_sizes == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert profile.engine.coefficient("eager.enqueue.const") > 0.005  # eager Python launches: ms
    assert profile.engine.coefficient("graph.enqueue.const") < 0.001  # one graph launch
    data = yaml.safe_load(prof.read_text())
    assert set(data) == {"parameters", "engine"}
    # the run's engine.yaml says how its engine called prefill attention: the profile keeps it
    assert data["engine"]["prefill_attention"] == "batched"
    code, text, _ = run_cli(capsys, ["replay", str(RUN), "--profile", str(prof), "--json"])
    assert code == 0 and abs(json.loads(text)["steps"]["all"]["total_pct"]) < 5


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--model", "nope"], "--model: unknown model"),
        (["--model", "llama3-8b", "--decode-attention", "wide"], "--decode-attention: expected one of"),
        (["--model", "llama3-8b", "--graph-batch-sizes", "1,x"], "--graph-batch-sizes: expected"),
        ([], "--engine-run needs --model"),
    ],
)
def test_calibrate_engine_run_arguments_are_checked(tmp_path, capsys, extra, message):
    argv = ["costmodel", "calibrate", "--engine-run", str(RUN), "--hardware", "h200-sxm"]
    code, _, err = run_cli(capsys, argv + ["--out", str(tmp_path / "p.yaml")] + extra)
    assert code == 2 and message in err and not (tmp_path / "p.yaml").exists()


def test_calibrate_engine_run_needs_a_step_log(tmp_path, capsys):
    run = copy_run(tmp_path)
    (run / "steps.csv.gz").unlink()
    argv = ["costmodel", "calibrate", "--engine-run", str(run), "--hardware", "h200-sxm", "--model"]
    code, _, err = run_cli(capsys, argv + ["llama3-8b", "--out", str(tmp_path / "p.yaml")])
    assert code == 2 and "calibration needs the step log" in err
