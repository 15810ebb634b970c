"""The public entry point: `simulate(config) -> SimulationResult`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

from servesim.build import Built, build
from servesim.config import SimConfig, load_config
from servesim.engine import run_cluster
from servesim.metrics import StepLog, request_frame, summarize
from servesim.metrics.kv_tiers import add_tier_columns
from servesim.metrics.programs import program_summary
from servesim.metrics.timeseries import instance_timeseries


@dataclass
class SimulationResult:
    config: SimConfig
    summary: dict
    requests: pd.DataFrame
    steps: pd.DataFrame
    tiers: pd.DataFrame | None = None
    """With prefix caching: per step, what each KV tier holds and cumulative hits and traffic."""

    def timeseries(self, interval_s: float | None = None) -> pd.DataFrame:
        """Per-instance queue length, running batch, KV usage and busy share over time bins
        (`servesim.metrics.timeseries`); `interval_s` defaults to `output.timeseries_interval_s`,
        else about 200 bins."""
        pools = self.summary.get("cluster", {}).get("pools")
        frame = instance_timeseries(
            self.steps,
            interval_s or self.config.output.timeseries_interval_s,
            self.summary["sim"]["simulated_s"],
            pools,
        )
        if self.tiers is not None and len(self.tiers):
            frame = add_tier_columns(frame, self.tiers)  # tier occupancy, hit and transfer rates
        return frame

    def save(self, out_dir: str | Path) -> Path:
        """Write summary.json, requests.csv, timeseries.csv and the resolved config.yaml."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(_jsonable(self.summary), indent=2) + "\n")
        if self.config.output.requests_csv:
            self.requests.to_csv(out / "requests.csv", index=False)
        if self.config.output.timeseries_csv:
            self.timeseries().to_csv(out / "timeseries.csv", index=False)
        (out / "config.yaml").write_text(dump_config(self.config))
        return out


def simulate(
    config: str | Path | Mapping[str, Any] | SimConfig, **overrides: Any
) -> SimulationResult:
    """Run one simulation. `overrides` are dotted keys: `simulate(cfg, **{"engine.scheduler": "srtf"})`."""
    return run(build(load_config(config, overrides)))


def run(built: Built, after_step=None) -> SimulationResult:
    """Simulate what `build` made; `after_step(instance)` runs after every step (for checks)."""
    cfg = built.config
    step_log = StepLog()
    stats = run_cluster(
        built.requests, built.parts, built.router, step_log, cfg.max_sim_time_s or math.inf,
        after_step=after_step, disaggregation=built.disaggregation,
    )
    # With a time limit, requests due after it never arrived: they are not part of this run.
    frame = request_frame(r for r in built.requests if r.arrival_time <= stats.simulated_s)
    kv_extra = {
        "kv": {
            "preemptions": stats.preemptions,
            "peak_usage_frac": stats.peak_kv_usage,
            "prefix_hit_rate": _prefix_hit_rate(frame),
            "capacity_tokens": built.kv_capacity_tokens,
        },
        "sim": {
            "seed": cfg.seed,
            "simulated_s": stats.simulated_s,
            "wall_s": stats.wall_s,
            "iterations": stats.iterations,
            "events": stats.events,
        },
        "cluster": {"instances": len(built.parts), "pools": built.pool_table()},
    }
    if built.kv_setup is not None:
        kv_extra["kv"].update(built.kv_setup.stats(int(frame["prompt_tokens"].sum())))
    if stats.kv_link is not None:
        kv_extra["cluster"]["kv_link"] = stats.kv_link
    summary = summarize(frame, cfg.slo.ttft_s, cfg.slo.tpot_s, stats.simulated_s, kv_extra)
    programs = program_summary(built.requests)
    if programs is not None:
        summary["programs"] = programs
    log = built.kv_setup.log if built.kv_setup is not None else None
    tiers = log.to_frame() if log is not None else None
    return SimulationResult(cfg, summary, frame, step_log.to_frame(), tiers)


def _prefix_hit_rate(frame: pd.DataFrame) -> float:
    total = frame["prompt_tokens"].sum()
    return float(frame["cached_tokens"].sum() / total) if total else 0.0


def dump_config(config: SimConfig) -> str:
    return yaml.safe_dump(_jsonable(config.model_dump(mode="json")), sort_keys=False)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value
