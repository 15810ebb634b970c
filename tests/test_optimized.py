"""`python -O` must not change results (issue 11 item 2): the simulator must never do work inside an
`assert`. Runs configs that exercise multi-step decode runs, preemption, caching and disaggregation in
a `python -O` subprocess and compares summary.json with a normal run (wall time aside)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import servesim
from servesim.core.files import jsonable
from tests.factories import small_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "preempting": small_config(**{"engine.kv_capacity_tokens": 3000, "workload.num_requests": 80}),
    "cached_disaggregated": small_config(
        **{
            "engine.prefix_caching": True,
            "cluster.disaggregation": {"prefill_instances": 1, "decode_instances": 2},
            "workload.sessions": {
                "turns": {"dist": "uniform", "min": 1, "max": 4},
                "system_prompt_tokens": 64,
            },
        }
    ),
}


def _without_wall(summary: dict) -> dict:
    summary = json.loads(json.dumps(summary))
    summary["sim"].pop("wall_s")
    return summary


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_python_O_gives_the_same_results(name, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIGS[name]))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, "-O", "-m", "servesim", "run", str(cfg), "--out", str(tmp_path / "o"), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    optimized = json.loads(out.stdout)
    normal = jsonable(servesim.simulate(str(cfg)).summary)
    if name == "preempting":  # the multi-step KV reservation that `-O` used to strip is exercised
        assert normal["kv"]["preemptions"] > 0
    assert _without_wall(optimized) == _without_wall(normal)
