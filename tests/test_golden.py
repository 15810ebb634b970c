"""Golden file: the quickstart's summary.json, number for number (`pytest --update-golden`
rewrites it; a change that moves it says why in its commit). The same file is CI's regression
baseline (`.ci/run`: `servesim compare ... --rtol 0.02`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from servesim import simulate

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "benchmarks" / "baselines" / "quickstart_summary.json"
MACHINE_DEPENDENT = {"sim.wall_s"}


def flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_quickstart_summary_matches_the_golden_file(tmp_path, request, monkeypatch):
    monkeypatch.chdir(ROOT)
    summary_path = simulate("configs/quickstart.yaml").save(tmp_path) / "summary.json"
    if request.config.getoption("--update-golden"):
        GOLDEN.write_text(summary_path.read_text())
    new = flatten(json.loads(summary_path.read_text()))
    old = flatten(json.loads(GOLDEN.read_text()))
    assert sorted(new) == sorted(old), "summary keys differ from the golden file"
    changed = [
        f"{key}: {old[key]!r} -> {new[key]!r}"
        for key in sorted(new)
        if key not in MACHINE_DEPENDENT and not _same(old[key], new[key])
    ]
    assert not changed, "quickstart moved (pytest --update-golden to accept):\n" + "\n".join(changed)


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (a is None and b is None) or (
            a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        )
    return a == b


def test_the_golden_comparison_can_fail():
    assert not _same(1.0, 1.0 + 1e-6) and _same(2.0, 2.0 + 1e-12) and not _same("a", "b")
    with pytest.raises(AssertionError):
        assert sorted(flatten({"a": {"b": 1}})) == sorted(flatten({"a": {"c": 1}}))
