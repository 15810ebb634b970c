"""servesim sweep: point expansion, validation, failures, resume after interruption, backends."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from servesim.cli import main
from servesim.core.errors import ConfigError
from servesim.studies import sweep as sweep_mod
from servesim.studies.executor import ray_available
from servesim.studies.points import expand, format_value, parse_grid
from servesim.studies.sweep import plan_sweep, read_rows, run_sweep
from tests.factories import write_config

VOLATILE = ["sim.wall_s"]  # machine-dependent: the only column two identical sweeps may differ in


def _same_results(a: Path, b: Path) -> None:
    fa, fb = pd.read_csv(a).drop(columns=VOLATILE), pd.read_csv(b).drop(columns=VOLATILE)
    pd.testing.assert_frame_equal(fa, fb)


# -- expansion -----------------------------------------------------------------------------------
def test_grid_values_parse_as_yaml_and_cross_product_orders_last_axis_fastest():
    grid = parse_grid(["engine.scheduler=fcfs,x", "workload.arrival.rate=4,8.5"])
    assert grid == {"engine.scheduler": ["fcfs", "x"], "workload.arrival.rate": [4, 8.5]}
    keys, points = expand(grid, seeds=[1, 2])
    assert keys == ["engine.scheduler", "workload.arrival.rate", "seed"]
    assert len(points) == 8
    assert points[:3] == [
        {"engine.scheduler": "fcfs", "workload.arrival.rate": 4, "seed": 1},
        {"engine.scheduler": "fcfs", "workload.arrival.rate": 4, "seed": 2},
        {"engine.scheduler": "fcfs", "workload.arrival.rate": 8.5, "seed": 1},
    ]
    assert format_value(8.0) == "8.0" and format_value(True) == "true" and format_value("a") == "a"


@pytest.mark.parametrize(
    "specs, message",
    [
        ([], "empty grid"),
        (["engine.scheduler="], "empty value"),
        (["noequals"], "expected KEY=V1,V2"),
        (["a=1,1"], "repeated"),
        (["a=1", "a=2"], "given twice"),
    ],
)
def test_bad_grids_are_config_errors(specs, message):
    with pytest.raises(ConfigError, match=message):
        expand(parse_grid(specs))


def test_points_file_is_crossed_with_the_grid(tmp_path):
    cfg = write_config(tmp_path)
    pts = tmp_path / "points.yaml"
    pts.write_text("- {engine: {max_num_seqs: 8}}\n- {engine.max_num_seqs: 64, cluster.instances: 2}\n")
    out = tmp_path / "out"
    code = main(["sweep", str(cfg), "--points", str(pts), "--grid", "workload.arrival.rate=5,40",
                 "--out", str(out), "--workers", "1", "--no-progress"])
    assert code == 0
    frame = pd.read_csv(out / "sweep.csv")
    assert list(frame.columns[:3]) == ["engine.max_num_seqs", "cluster.instances", "workload.arrival.rate"]
    assert len(frame) == 4 and (frame["status"] == "ok").all()
    assert frame["cluster.instances"].isna().sum() == 2  # left at the config's value: empty cell


# -- bad input -----------------------------------------------------------------------------------
def test_a_points_key_outside_the_config_names_the_file_and_the_point(tmp_path, capsys):
    """A point's key 0.5 (a YAML number) became config key `0` with `.5` under it, and the error
    named `0` alone; the points file and the point are named instead."""
    pts = tmp_path / "points.yaml"
    pts.write_text("- {seed: 1}\n- {seed: 2, 0.5: null}\n")
    code = main(["sweep", str(write_config(tmp_path)), "--points", str(pts), "--out", str(tmp_path / "o"),
                 "--workers", "1", "--no-progress"])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"error: {pts}: point 2: '0.5': unknown key at the top level"


def test_a_points_key_with_an_empty_part_names_the_file_and_the_point(tmp_path, capsys):
    """`{seed: 2, .ttft_s: 0.5}` (a mutated `slo.ttft_s`) made a top-level key "" that the error
    could not name; the points file and the point are named instead."""
    pts = tmp_path / "points.yaml"
    pts.write_text("- {seed: 1}\n- {seed: 2, .ttft_s: 0.5}\n")
    code = main(["sweep", str(write_config(tmp_path)), "--points", str(pts), "--out", str(tmp_path / "o"),
                 "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == (f"error: {pts}: point 2: '.ttft_s': expected a dotted config key "
                                 "(a part is empty)")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--grid", "engine.max_num_seq=8,16"], "engine.max_num_seq: unknown key"),
        (["--grid", "engine.max_num_seqs=8,0"], "engine.max_num_seqs"),
        ([], "empty grid"),
        (["--grid", "seed=1,2", "--seeds", "2"], "not both"),
        (["--grid", "seed=1", "--workers", "0"], "--workers"),
    ],
)
def test_bad_sweeps_exit_2_and_write_nothing(tmp_path, capsys, extra, message):
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", str(cfg), "--out", str(out), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_existing_output_needs_resume(tmp_path, capsys):
    cfg = write_config(tmp_path)
    args = ["sweep", str(cfg), "--grid", "seed=1", "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(args) == 0
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


def test_failed_point_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    cfg = write_config(tmp_path)
    out = tmp_path / "o"
    code = main(["sweep", str(cfg), "--grid", "engine.scheduler=fcfs,nosuch", "--seeds", "2",
                 "--out", str(out), "--workers", "2", "--no-progress"])
    assert code == 1
    frame = pd.read_csv(out / "sweep.csv")
    assert list(frame["status"]) == ["ok", "ok", "failed", "failed"]
    assert frame.loc[2, "error"].startswith("ConfigError: engine.scheduler: unknown scheduler 'nosuch'")
    assert frame.loc[2, "slo.attainment"] != frame.loc[2, "slo.attainment"]  # NaN
    assert "first failure" in capsys.readouterr().out


def test_json_output_and_columns(tmp_path, capsys):
    cfg = write_config(tmp_path)
    out = tmp_path / "o"
    assert main(["sweep", str(cfg), "--grid", "workload.arrival.rate=5,10", "--out", str(out),
                 "--workers", "1", "--no-progress", "--json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert doc["points"] == 2 and doc["ok"] == 2 and doc["failed"] == 0
    with open(out / "sweep.csv") as f:
        header = next(csv.reader(f))
    assert header[0] == "workload.arrival.rate" and header[1] == "requests.arrived"
    assert "latency.ttft.p99" in header and header[-2:] == ["status", "error"]


def test_parallel_processes_match_one_process(tmp_path):
    cfg = write_config(tmp_path)
    plan = plan_sweep(cfg, {"workload.arrival.rate": [5, 20, 40]}, seeds=2)
    run_sweep(plan, tmp_path / "one", workers=1, progress=False)
    run_sweep(plan, tmp_path / "two", workers=2, progress=False)
    _same_results(tmp_path / "one" / "sweep.csv", tmp_path / "two" / "sweep.csv")


# -- resume ----------------------------------------------------------------------------------------
def test_interrupted_sweep_resumes_without_redoing_finished_points(tmp_path, monkeypatch):
    cfg = write_config(tmp_path)
    plan = plan_sweep(cfg, {"workload.arrival.rate": [5, 10, 20, 40]}, seeds=2)
    run_sweep(plan, tmp_path / "full", workers=1, progress=False)

    real = sweep_mod.evaluate
    calls = []
    interrupt_at = [4]

    def interrupted(config):
        calls.append(config)
        if len(calls) == interrupt_at[0]:
            raise KeyboardInterrupt
        return real(config)

    monkeypatch.setattr(sweep_mod, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, tmp_path / "part", workers=1, progress=False)
    assert len(read_rows(tmp_path / "part" / "sweep.csv", plan.keys)) == 3  # finished, kept

    calls.clear()
    interrupt_at[0] = -1
    run_sweep(plan, tmp_path / "part", workers=1, progress=False, resume=True)
    assert len(calls) == 5  # only the 5 unfinished points ran again
    _same_results(tmp_path / "full" / "sweep.csv", tmp_path / "part" / "sweep.csv")


def test_killed_sweep_resumes_to_the_same_csv(tmp_path):
    """A real SIGKILL of `servesim sweep` mid-run, then --resume: nothing lost, nothing redone."""
    cfg = write_config(tmp_path, workload={**_bigger_workload()})
    out = tmp_path / "killed"
    grid = ["--grid", "workload.arrival.rate=5,10,20,30,40,60"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(sweep_mod.__file__).parents[2]),
                                                       os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "servesim", "sweep", str(cfg), *grid, "--workers", "1",
         "--out", str(out), "--no-progress"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    csv_path = out / "sweep.csv"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if csv_path.exists() and csv_path.read_text().count("\n") >= 3:  # header + 2 rows
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = csv_path.read_text().count("\n") - 1
    assert 2 <= done_before < 6, "the sweep should have been killed part-way"

    assert main(["sweep", str(cfg), *grid, "--workers", "1", "--out", str(out), "--resume",
                 "--no-progress"]) == 0
    assert main(["sweep", str(cfg), *grid, "--workers", "1", "--out", str(tmp_path / "full"),
                 "--no-progress"]) == 0
    _same_results(tmp_path / "full" / "sweep.csv", csv_path)


def _bigger_workload():
    from tests.factories import STUDY_SMALL

    return {**STUDY_SMALL["workload"], "num_requests": 700}


def test_torn_last_line_is_dropped_on_resume(tmp_path):
    cfg = write_config(tmp_path)
    plan = plan_sweep(cfg, {"workload.arrival.rate": [5, 10, 20]})
    run_sweep(plan, tmp_path / "a", workers=1, progress=False)
    path = tmp_path / "a" / "sweep.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:25])  # a kill in the middle of a row
    assert len(read_rows(path, plan.keys)) == 1
    run_sweep(plan, tmp_path / "a", workers=1, progress=False, resume=True)
    run_sweep(plan, tmp_path / "b", workers=1, progress=False)
    _same_results(tmp_path / "b" / "sweep.csv", path)


def test_resume_refuses_a_different_sweep(tmp_path, capsys):
    cfg = write_config(tmp_path)
    out = str(tmp_path / "o")
    assert main(["sweep", str(cfg), "--grid", "seed=1,2", "--out", out, "--no-progress"]) == 0
    assert main(["sweep", str(cfg), "--grid", "workload.arrival.rate=1", "--out", out,
                 "--resume", "--no-progress"]) == 2
    assert main(["sweep", str(cfg), "--grid", "seed=1,2", "--set", "slo.ttft_s=2", "--out", out,
                 "--resume", "--no-progress"]) == 2
    assert "different base config" in capsys.readouterr().err


# -- Ray -------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not ray_available(), reason="ray not installed (pip install 'servesim[ray]')")
def test_ray_backend_matches_local(tmp_path):
    cfg = write_config(tmp_path)
    grid = ["--grid", "workload.arrival.rate=5,40", "--seeds", "2"]
    assert main(["sweep", str(cfg), *grid, "--out", str(tmp_path / "ray"), "--backend", "ray",
                 "--workers", "2", "--no-progress"]) == 0
    assert main(["sweep", str(cfg), *grid, "--out", str(tmp_path / "local"), "--workers", "1",
                 "--no-progress"]) == 0
    _same_results(tmp_path / "local" / "sweep.csv", tmp_path / "ray" / "sweep.csv")


def test_address_without_ray_backend_is_bad_input(tmp_path, capsys):
    cfg = write_config(tmp_path)
    assert main(["sweep", str(cfg), "--grid", "seed=1", "--out", str(tmp_path / "o"),
                 "--address", "auto", "--no-progress"]) == 2
    assert "--address" in capsys.readouterr().err
