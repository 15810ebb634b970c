"""The contract's example configs for the KV and agentic studies load, and run end to end (on a
short window here; the full runs are examples/studies/kv_studies.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servesim.cli import main
from servesim.simulation import simulate

ROOT = Path(__file__).resolve().parents[1]
MOONCAKE = ["mooncake_least_tokens", "mooncake_local_cache_aware", "mooncake_global_pool"]


@pytest.mark.parametrize("name", MOONCAKE)
def test_mooncake_configs_report_hits_per_tier(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = simulate(ROOT / "configs" / "kv" / f"{name}.yaml", **{"workload.trace.duration_s": 40})
    tiers = result.summary["kv"]["tiers"]
    assert set(tiers) == ({"gpu", "pool"} if name.endswith("pool") else {"gpu"})
    total = sum(t["hit_rate"] for t in tiers.values())
    assert total == pytest.approx(result.summary["kv"]["prefix_hit_rate"])


@pytest.mark.parametrize("name", ["no_retention", "ttl"])
def test_agentic_configs_run_from_the_cli(name, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    args = ["run", f"configs/agentic/{name}.yaml", "--out", str(out),
            "--set", "workload.programs.num_programs=4"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    programs = summary["programs"]
    assert programs["completed"] == 4
    assert set(programs["task_time"]) == {"mean", "p50", "p90", "p99"}
    assert summary["kv"]["retention"]["mode"] == ("none" if name == "no_retention" else "ttl")
