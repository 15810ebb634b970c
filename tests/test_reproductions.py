"""The configs of docs/reproductions.md run, and their commands parse and search (kept tiny here)."""

import json
from pathlib import Path

import pytest

from servesim.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ROOT / "configs" / "papers"


@pytest.mark.parametrize("name", ["sarathi_mistral7b_arxiv.yaml", "distserve_opt13b_sharegpt.yaml"])
def test_paper_configs_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "run"
    assert main(["run", str(PAPERS / name), "--set", "workload.num_requests=30", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["latency"]["itl"]["p99"] > 0 and summary["latency"]["queue"]["p50"] >= 0


def test_sarathi_command_compares_the_schedulers(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code = main(["capacity", str(PAPERS / "sarathi_mistral7b_arxiv.yaml"),
                 "--points", str(PAPERS / "sarathi_schedulers.yaml"),
                 "--target", "latency.itl.p99<=0.1", "--target", "latency.queue.p50<=2",
                 "--set", "workload.num_requests=40", "--no-steady-check", "--rtol", "0.3",
                 "--workers", "1", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["placements"]
    assert {r["point"].get("engine.chunk_size") for r in rows} == {None, 512, 2048}
    assert all(r["status"] == "ok" and r["cost"] == 1 for r in rows)
