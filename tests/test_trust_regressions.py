"""Regression tests for issue 11: results that were silently wrong, crashes on bad input, half-written
outputs. Each test failed before its fix."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
import yaml

import servesim
from servesim.cli import main
from tests.compiled import pure_python_only
from tests.factories import small_config

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "servesim"


# -- 1. a wheel carries every data file the code reads ------------------------------------------------
def test_package_data_covers_every_data_file():
    from setuptools.config.pyprojecttoml import read_configuration

    globs = read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]["package-data"]["servesim"]
    data = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc", ".so", ".pyd")]  # (.so: compiled core)
    assert any(p.startswith("cost/profiles/") for p in data)
    missing = [p for p in data if not any(fnmatch.fnmatch(p, g) or fnmatch.fnmatch(p, g.replace("**/", ""))
                                          for g in globs)]
    assert not missing, f"left out of the wheel: {missing}"


def test_missing_shipped_profiles_is_an_error_not_silent_defaults(monkeypatch, tmp_path):
    from servesim.cost import profile

    monkeypatch.setattr(profile, "PROFILE_DIR", tmp_path)
    with pytest.raises(RuntimeError, match="reinstall"):
        profile.family_profile.__wrapped__("hopper")


# -- 5. timeseries.csv's queue obeys Little's law -------------------------------------------------------
def test_timeseries_waiting_queue_obeys_littles_law():
    result = servesim.simulate(small_config(**{"workload.arrival.rate": 1.0, "workload.num_requests": 80}))
    ts, req = result.timeseries(), result.requests
    span = result.summary["sim"]["simulated_s"]
    width = float(ts["time_s"].iloc[1] - ts["time_s"].iloc[0])
    little = float((req["first_scheduled_s"] - req["arrival_s"]).sum()) / span
    assert little > 0
    assert (ts["num_waiting"] * width).sum() / span == pytest.approx(little, rel=1e-6)


# -- 6. exit codes: 3 for a bug (with a short traceback), 130 for Ctrl-C ------------------------------
@pure_python_only  # counts traceback lines
def test_internal_error_exits_3_and_says_it_is_a_bug(monkeypatch, capsys, tmp_path):
    import servesim.simulation as sim

    def broken(*a, **k):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(sim, "run", broken)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(small_config()))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 3
    err = capsys.readouterr().err
    assert "ZeroDivisionError: boom" in err and "this is a bug" in err
    assert err.count("File ") <= 4  # a short traceback
    assert not (tmp_path / "o").exists()


def test_interrupt_exits_130_without_traceback(monkeypatch, capsys, tmp_path):
    import servesim.simulation as sim

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sim, "run", interrupted)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(small_config()))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "interrupted" in err


# -- 7. disaggregated pools survive the dump/reload that run, sweep and compare do -------------------
HETERO_POOLS = {
    "pools": [
        {"name": "p", "role": "prefill", "instances": 1, "hardware": "h100-sxm"},
        {"name": "d", "role": "decode", "instances": 2, "hardware": "h200-sxm"},
    ],
    "disaggregation": {"kv_link": {"bandwidth_gb_s": 25}},
}


def test_disaggregated_pools_reload_from_their_dump(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(small_config(cluster=HETERO_POOLS)))
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 0
    assert main(["validate", str(tmp_path / "o" / "config.yaml")]) == 0
    out = tmp_path / "sweep"
    assert main(["sweep", str(cfg), "--grid", "seed=1,2", "--workers", "1", "--out", str(out),
                 "--no-progress"]) == 0


# -- 9. kill -9 of a sweep takes its workers with it; Ctrl-C stops them without tracebacks ------------
def _children(pid: int) -> set[int]:
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.add(int(stat.parent.name))
    return kids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_killed_sweep_leaves_no_workers(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(small_config(**{"workload.num_requests": 20000,
                                                  "workload.arrival.rate": 200.0})))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "servesim", "sweep", str(cfg), "--grid", "seed=1,2,3,4", "--workers", "2",
         "--out", str(tmp_path / "s"), "--no-progress"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while time.monotonic() < deadline and len(workers) < 2 and proc.poll() is None:
        workers = _children(proc.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "the sweep never started its workers"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()
             and "Z" not in Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0]]
    for w in alive:  # do not leak them even when the test fails
        os.kill(w, signal.SIGKILL)
    assert not alive, "workers outlived their killed sweep"


# -- 8. outputs: checked before simulating, written all or nothing, never mixed ------------------------
def _write_cfg(tmp_path, **changes) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(small_config(**changes)))
    return cfg


def test_out_that_is_a_file_fails_before_simulating(tmp_path, monkeypatch, capsys):
    import servesim.simulation as sim

    ran = []
    monkeypatch.setattr(sim, "run", lambda *a, **k: ran.append(1))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = _write_cfg(tmp_path)
    assert main(["run", str(cfg), "--out", str(blocker)]) == 2
    assert main(["run", str(cfg), "--out", str(blocker / "sub")]) == 2
    assert main(["timeline", str(cfg), "--out", str(blocker / "t.json")]) == 2
    assert not ran
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: --out:") for line in err)


def test_calibrate_creates_the_missing_parent_of_out(tmp_path):
    meas = ROOT / "data" / "measurements" / "h100" / "iterations.csv"
    out = tmp_path / "new" / "deeper" / "p.yaml"
    assert main(["costmodel", "calibrate", "--measurements", str(meas), "--hardware", "h100-sxm",
                 "--params", "step_overhead_s", "--out", str(out)]) == 0
    assert out.exists() and not list(out.parent.glob(".*"))


def test_failed_write_leaves_the_previous_run_untouched(tmp_path, monkeypatch):
    cfg = _write_cfg(tmp_path)
    out = tmp_path / "o"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    import pandas as pd

    from servesim.metrics.columns import Columns

    def full_disk(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    monkeypatch.setattr(Columns, "write_csv", full_disk)  # a run's CSVs are written without pandas
    assert main(["run", str(cfg), "--out", str(out), "--seed", "9"]) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left


def test_run_into_an_existing_folder_never_mixes_runs(tmp_path, capsys):
    cfg = _write_cfg(tmp_path)
    out = tmp_path / "o"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    assert (out / "requests.csv").exists()
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out), "--set", "output.requests_csv=false"]) == 0
    assert not (out / "requests.csv").exists()
    assert "requests.csv" not in capsys.readouterr().out


# -- 9. numbers that slipped through, and files that are not UTF-8 ------------------------------------
@pytest.mark.parametrize("key,value", [
    ("workload.arrival.rate_schedule", {"kind": "piecewise", "points": [[0, 1], [5, float("nan")]]}),
    ("workload.lengths.prompt", {"dist": "lognormal", "mean": float("inf")}),
    ("workload.sessions", {"think_time": {"mean": float("nan")}}),
    ("hardware", {"base": "h100-sxm", "hbm_tb_s": float("nan")}),
    ("hardware", {"base": "h100-sxm", "hbm_tb_s": 0}),
    ("engine.kv_capacity_tokens", 3),
    ("workload.arrival", {"process": "gamma", "cv": 1e-300}),
    ("workload", {"duration_s": 1e9, "arrival": {"rate": 1e6}}),
])
def test_bad_numbers_are_bad_input(key, value, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    data = small_config()
    data.pop("workload") if key == "workload" else None
    cfg.write_text(yaml.safe_dump({**data}))
    from servesim.config.loader import set_dotted

    set_dotted(data, key, value)
    cfg.write_text(yaml.safe_dump(data))
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: {key.split('.')[0]}")


def test_tiny_timeseries_bins_fail_before_the_run(tmp_path, capsys):
    cfg = _write_cfg(tmp_path, **{"output.timeseries_interval_s": 1e-9})
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "output.timeseries_interval_s" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    from servesim.cost.profile import load_profile

    p = tmp_path / "p.yaml"
    p.write_text("kernel_overhead_s: 3e-6\n")
    assert load_profile(p).kernel_overhead_s == 3e-6


@pytest.mark.parametrize("command", [
    ["validate", "{f}"], ["compare", "{f}", "{f}"], ["costmodel", "validate", "--measurements", "{f}"],
    ["sweep", "{cfg}", "--points", "{f}", "--out", "{tmp}/s"],
])
def test_non_utf8_files_name_the_file(command, tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_bytes(b"seed: 1\n\xff\xfe bad\n")
    cfg = _write_cfg(tmp_path)
    args = [a.format(f=f, cfg=cfg, tmp=tmp_path) for a in command]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{f}:2: not UTF-8" in err


# -- 10. messages name what the user wrote ---------------------------------------------------------------
def test_messages_name_the_right_key(tmp_path, capsys):
    cfg = _write_cfg(tmp_path)
    price = ["costmodel", "price", "--model", "llama3-8b", "--hardware", "h100-sxm"]
    assert main([*price, "--decodes", "-5"]) == 2
    assert main(["validate", str(cfg), "--set", "engine.gpu_memory_utilization=0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: --decodes:")
    assert err[1].startswith("error: engine.gpu_memory_utilization:")


def test_library_errors_name_parameters_and_the_cli_names_flags(tmp_path, capsys):
    from servesim.core.errors import ConfigError
    from servesim.studies.paired import paired_compare

    with pytest.raises(ConfigError, match=r"^seeds: "):
        paired_compare(small_config(), {}, {"seed": 1}, seeds=1)
    cfg = _write_cfg(tmp_path)
    assert main(["compare", "--paired", str(cfg), "--set-b", "seed=3", "--seeds", "1"]) == 2
    assert capsys.readouterr().err.startswith("error: --seeds: ")
    for command in (["--help"], ["run", "--help"], ["costmodel", "calibrate", "--help"]):
        with pytest.raises(SystemExit) as stop:
            main(command)
        assert stop.value.code == 0
        out = capsys.readouterr().out
        assert "docs/interface.md" in out and "INTERFACE.md" not in out


# -- progress: drawn on a terminal by a library (tqdm), silent when piped --------------------------
def test_progress_is_silent_when_piped(tmp_path, capsys):
    cfg = _write_cfg(tmp_path)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 0
    assert main(["capacity", str(cfg), "--target-attainment", "0.5", "--max-evals", "3"]) in (0, 1)
    assert capsys.readouterr().err == ""


def test_progress_is_drawn_on_a_terminal(monkeypatch):
    import io
    import sys
    from types import SimpleNamespace

    from servesim.progress import SimulationProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = SimulationProgress(10.0, delay=0.0)
    assert bar.active
    bar(SimpleNamespace(env=SimpleNamespace(now=5.0)))
    bar.close()
    assert "simulating" in term.getvalue() and "5" in term.getvalue()
