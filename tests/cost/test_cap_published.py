"""The cap model against the published cap points, and the clock solve's roofline at low clocks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from servesim.catalog.specs import get_hardware
from servesim.core.errors import InputFileError
from servesim.cost.base import StepShape
from servesim.cost.cap_check import choose_core_share, compare, read_cap_points
from servesim.cost.power import PowerLimit, power_profile
from servesim.cost.power_calibrate import fit_power_profile, read_power_points
from servesim.cost.profile import family_profile
from tests.cost.test_energy_model import POWER_CSV, model_for

ROOT = Path(__file__).resolve().parents[2]
POINTS = ROOT / "data" / "measurements" / "published" / "cap_points.csv"
SCRIPT = ROOT / "benchmarks" / "cap_model.py"


def test_every_scored_published_cap_point_is_within_fifteen_percent():
    rows = compare(read_cap_points(POINTS))
    scored = [r for r in rows if r.point.scored]
    assert {r.point.phase for r in scored} == {"prompt", "token"} and len(scored) >= 10
    worst = max(scored, key=lambda r: abs(r.error_pct))
    assert abs(worst.error_pct) <= 15, worst


def test_every_held_out_published_dvfs_point_is_within_fifteen_percent():
    """The rows not used to choose the core-rail share: Samsi et al.'s 150 W caps (decode, TP 4) and
    Perseus's A100 clock sweep (compute-bound forward, TP 8), latency and power."""
    rows = [r for r in compare(read_cap_points(POINTS)) if r.point.source in ("samsi", "perseus")]
    held = [r for r in rows if r.point.split == "check"]
    assert {r.point.source for r in held} == {"samsi", "perseus"} and len(held) >= 11
    assert max(abs(r.error_pct) for r in held) <= 15
    assert max(abs(r.power_error_pct) for r in held if r.point.power_scored) <= 15


def test_the_shipped_core_rail_share_is_the_one_the_fit_rows_choose():
    hw = get_hardware("h200-sxm")
    points = read_power_points(POWER_CSV, hw, family_profile(hw.family))
    shipped = power_profile("hopper")
    share, _ = choose_core_share(
        lambda s: fit_power_profile(points, hw, voltage_floor=shipped.voltage_floor, memory_core_share=s),
        read_cap_points(POINTS), [round(0.05 * i, 2) for i in range(21)],
    )
    assert share == shipped.memory_core_share


def test_the_published_asymmetry_holds_at_splitwises_cap():
    """At 350 W per GPU a TP-8 prompt slows by more than a quarter, a full token batch not at all."""
    by_name = {r.point.point: r for r in compare(read_cap_points(POINTS))}
    assert by_name["sw-tp8-prompt-2048"].ratio > 1.25
    assert by_name["sw-tp8-token-b64"].ratio < 1.02


@pytest.mark.parametrize("column, value, message", [
    ("phase", "decode", "phase: expected one of prompt, token"),
    ("cap_w", "-5", "cap_w: expected a number > 0"),
    ("model", "no-such-model", "model"),
    ("split", "train", "split: expected one of fit, check or empty"),
    ("power_ratio", "lots", "power_ratio: expected a number"),
    ("base_clock_mhz", "0", "base_clock_mhz: expected a number > 0"),
    ("board_limit_w", "-400", "board_limit_w: expected a number > 0"),
    ("power_scored", "maybe", "power_scored: expected yes, no or empty"),
])
def test_a_malformed_published_point_names_the_file_and_line(tmp_path, column, value, message):
    lines = POINTS.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[3].split(",")
    cells[header.index(column)] = value
    lines[3] = ",".join(cells)
    bad = tmp_path / "points.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputFileError) as err:
        read_cap_points(bad)
    assert "points.csv:4" in str(err.value) and message in str(err.value)


def test_a_memory_bound_step_turns_compute_bound_below_its_ridge():
    """A 128-token prompt's GEMMs are memory-bound at full clock; a low enough clock makes their
    FLOPs the longer side, so the step stretches though no operator was compute-bound at full clock."""
    shape = StepShape([(128, 0)], 0, 0, 1)
    cost, _ = model_for(name="llama2-70b", tp=8)
    c = cost.breakdown(shape)
    assert c.hidden_compute_s > 0.3 * c.memory_s
    ridge = c.hidden_compute_s / c.memory_s  # the clock at which hidden FLOPs match memory time
    high, low = min(1.0, ridge * 1.3), ridge * 0.7  # both above the memory knee (0.3)
    assert low > 0.3
    _, above = model_for(name="llama2-70b", tp=8, limit=PowerLimit(clock_frac=high))
    _, below = model_for(name="llama2-70b", tp=8, limit=PowerLimit(clock_frac=low))
    other = c.total_s - c.compute_s - c.memory_s
    assert above.step_time(shape) == pytest.approx(c.compute_s / high + c.memory_s + other, rel=1e-9)
    expected = c.compute_s / low + c.hidden_compute_s / low + other
    assert below.step_time(shape) == pytest.approx(expected, rel=1e-9)


def test_the_cap_model_command_prints_the_table_and_fails_loudly_on_bad_input(tmp_path):
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "| sw-tp8-prompt-2048 | 8 | prompt |" in ok.stdout and "scored points within 15%" in ok.stdout
    assert "| perseus-gpt3-175b-fwd-855mhz | 8 | prompt |" in ok.stdout
    assert "| samsi-llama65b-out512-150w | 4 | token |" in ok.stdout
    assert "scored held out (not fit)" in ok.stdout
    bad = tmp_path / "points.csv"
    bad.write_text("point,phase\nx,prompt\n")
    err = subprocess.run([sys.executable, str(SCRIPT), "--points", str(bad)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert err.returncode == 2 and not err.stdout
    assert err.stderr.count("\n") == 1 and "points.csv:1: missing column(s)" in err.stderr
