"""Regression tests for issue 11: results that were silently wrong, crashes on bad input, half-written
outputs. Each test failed before its fix."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
import yaml

import servesim
from servesim.cli import main
from tests.conftest import small_config

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "servesim"


# -- 1. a wheel carries every data file the code reads ------------------------------------------------
def test_package_data_covers_every_data_file():
    from setuptools.config.pyprojecttoml import read_configuration

    globs = read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]["package-data"]["servesim"]
    data = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc")]
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
