"""Replay an engine run through the simulator: its workload, under its own settings (engine.yaml),
priced by a profile; then set the simulated latencies beside the real ones, and the cost model's
step times beside the real steps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from servesim.build import build
from servesim.config import load_config
from servesim.core.files import jsonable
from servesim.enginerun.compare import compare_requests, latency_stats, step_errors
from servesim.enginerun.folder import EngineRun, read_engine_run
from servesim.simulation import SimulationResult, run


@dataclass
class Replay:
    run: EngineRun
    result: SimulationResult
    comparison: dict[str, dict[str, float]]
    """{"real": {"ttft.p50": s, ...}, "sim": {...}, "error_pct": {...}}; real and errors empty
    without requests.csv."""
    steps: dict[str, dict[str, float]] | None
    """Step-time errors per step kind of the replay's cost model on the real steps, if logged."""

    def save(self, out: str | Path) -> Path:
        text = json.dumps(jsonable(self.report()), indent=2) + "\n"
        return self.result.save(out, extra={"comparison.json": lambda p: p.write_text(text)})

    def report(self) -> dict:
        out = dict(self.comparison)
        if self.steps is not None:
            out["steps"] = self.steps
        return out


def replay_engine_run(
    path: str | Path, profile: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Replay:
    run_ = read_engine_run(path)
    run_.settings()  # a bad key of engine.yaml is named as the file's, before the overrides
    data = dict(run_.config)
    data["workload"] = {"trace": {"path": str(run_.workload_path.resolve()), "format": "csv"}}
    settings = dict(overrides or {})
    if profile is not None:
        settings["cost.profile"] = str(Path(profile).resolve()) if Path(profile).exists() else str(profile)
    config = load_config(data, settings)
    config._base_dir = run_.path.resolve()  # paths inside engine.yaml are relative to the run
    built = build(config)
    result = run(built)
    if run_.requests is not None:
        comparison = compare_requests(run_.requests, result.requests)
    else:
        sim = result.requests[result.requests["status"] == "completed"]
        comparison = {"real": {}, "sim": latency_stats(sim), "error_pct": {}}
    steps = None
    if run_.steps is not None:
        steps = step_errors(run_.steps, built.parts[0].cost_model)
    return Replay(run_, result, comparison, steps)
