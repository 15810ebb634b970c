"""The public entry point: `simulate(config) -> SimulationResult`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import yaml

from servesim.build import Built, build
from servesim.config import SimConfig, load_config
from servesim.core.files import jsonable, write_folder
from servesim.cost.isolated import isolated_decode, isolated_prefill
from servesim.engine import run_cluster
from servesim.engine.stream import RequestStream
from servesim.metrics import StepLog, summarize
from servesim.metrics.columns import Columns
from servesim.metrics.energy import energy_in_intervals, energy_summary, instance_energy, request_energy
from servesim.metrics.gaps import TokenGaps
from servesim.metrics.kv_tiers import add_tier_columns
from servesim.metrics.pricing import cost_summary
from servesim.metrics.programs import program_summary
from servesim.metrics.summary import request_columns
from servesim.metrics.timeseries import check_size, timeseries_columns, with_elastic_columns
from servesim.workload.filters import REJECT_REASON

if TYPE_CHECKING:  # pandas is imported only when a frame is asked for (a third of a short run's start)
    import pandas as pd

    from servesim.metrics.lifecycle import LifecycleLog  # elastic runs import it

RUN_FILES = ("summary.json", "requests.csv", "timeseries.csv", "config.yaml", "comparison.json",
             "lifecycle.csv", "migrations.csv")
"""Files a run folder may hold (`comparison.json`: `servesim replay`; `lifecycle.csv`, `migrations.csv`:
elastic runs); a new run removes the ones it does not write, so a folder never mixes two runs."""


@dataclass
class SimulationResult:
    """A finished run: its summary, request and step columns, and what `save` writes."""

    config: SimConfig
    summary: dict
    request_columns: Columns
    """requests.csv's rows as numpy columns; `requests` is the same as a DataFrame."""
    step_columns: Columns
    """The step log as numpy columns; `steps` is the same as a DataFrame."""
    written: list[str] = field(default_factory=list)
    """The files the last `save` wrote."""
    lifecycle: LifecycleLog | None = None
    """Elastic runs: instance states, slowdowns and migrations over time (metrics.lifecycle)."""
    tiers: pd.DataFrame | None = None
    """With prefix caching: per step, what each KV tier holds and cumulative hits and traffic."""

    @cached_property
    def requests(self) -> pd.DataFrame:
        """One row per arrived request (requests.csv; `metrics.summary.REQUEST_COLUMNS`)."""
        return self.request_columns.to_frame()

    @cached_property
    def steps(self) -> pd.DataFrame:
        """The step log: one row per step or run of identical steps (`metrics.steps.COLUMNS`)."""
        cols = self.step_columns
        return Columns({c: cols[c].astype(np.int64) if cols[c].dtype.kind == "i" else cols[c]
                        for c in cols}).to_frame()  # integers as int64, as the log's frame has them

    def timeseries(self, interval_s: float | None = None) -> pd.DataFrame:
        """Per-instance queue length, running batch, KV usage and busy share over time bins
        (`servesim.metrics.timeseries`); `interval_s` defaults to `output.timeseries_interval_s`,
        else about 200 bins."""
        return _as_frame(self._timeseries(interval_s))

    def _timeseries(self, interval_s: float | None = None):
        """`timeseries()` as `Columns` when nothing needs pandas (no elastic or tier columns)."""
        pools = self.summary.get("cluster", {}).get("pools")
        end = self.summary["sim"]["simulated_s"]
        frame = timeseries_columns(
            self.step_columns, interval_s or self.config.output.timeseries_interval_s, end, pools,
            requests=self.request_columns,
            num_instances=self.summary.get("cluster", {}).get("slots"),
            idle_w=self.summary.get("cluster", {}).get("idle_w"),
        )
        if self.lifecycle is None and (self.tiers is None or not len(self.tiers)):
            return frame
        frame = frame.to_frame()
        if self.lifecycle is not None:
            frame = with_elastic_columns(frame, self.lifecycle, end)
        if self.tiers is not None and len(self.tiers):
            frame = add_tier_columns(frame, self.tiers)  # tier occupancy, hit and transfer rates
        return frame

    def save(self, out_dir: str | Path, extra: dict | None = None) -> Path:
        """Write summary.json, requests.csv, timeseries.csv and the resolved config.yaml (and `extra`
        files, name -> `write(path)`), all or nothing; an earlier run's files that this run does not
        write are removed."""
        self.written = write_folder(out_dir, {**self._files(), **(extra or {})}, RUN_FILES)
        return Path(out_dir)

    def _files(self) -> dict:
        summary = json.dumps(jsonable(self.summary), indent=2) + "\n"
        files = {"summary.json": lambda p: p.write_text(summary)}
        if self.config.output.requests_csv:
            files["requests.csv"] = lambda p: _write_csv(self.request_columns, p)
        if self.config.output.timeseries_csv:
            series = self._timeseries()
            files["timeseries.csv"] = lambda p: _write_csv(series, p)
        if self.lifecycle is not None:
            states, moves = self.lifecycle.frame(), self.lifecycle.migration_frame()
            files["lifecycle.csv"] = lambda p: states.to_csv(p, index=False)
            files["migrations.csv"] = lambda p: moves.to_csv(p, index=False)
        config = dump_config(self.config)
        files["config.yaml"] = lambda p: p.write_text(config)
        return files


def _as_frame(table) -> pd.DataFrame:
    return table.to_frame() if isinstance(table, Columns) else table


def _write_csv(table, path: Path) -> None:
    """A table as `DataFrame.to_csv(index=False)` writes it (without pandas for `Columns`)."""
    if isinstance(table, Columns):
        table.write_csv(path)
    else:
        table.to_csv(path, index=False)


def simulate(
    config: str | Path | Mapping[str, Any] | SimConfig, **overrides: Any
) -> SimulationResult:
    """Run one simulation. `overrides` are dotted keys: `simulate(cfg, **{"engine.scheduler": "srtf"})`."""
    return run(build(load_config(config, overrides)))


def run(built: Built, after_step=None) -> SimulationResult:
    """Simulate what `build` made; `after_step(instance)` runs after every step (for checks)."""
    cfg = built.config
    if cfg.output.timeseries_csv and len(built.table):  # fail before the run, not after it
        check_size(float(built.table.arrival_s.max()), cfg.output.timeseries_interval_s, len(built.parts))
    step_log, gaps = StepLog(), TokenGaps()
    stats, frame = _simulate(built, step_log, gaps, after_step)
    objectives = {name: o.model_dump() for name, o in cfg.slo.objectives.items()}
    if any(o.uses_slowdown for o in cfg.slo.objectives.values()):
        for name, values in isolated_columns(built, frame).items():
            frame[name] = values
    extra = _summary_sections(built, stats, frame)
    extra.update(_energy_and_cost(built, stats, frame, step_log))  # reads the log piece by piece
    steps = step_log.to_columns()  # a long log stays in its file until the columns are asked for
    extra["cluster"]["idle_w"] = _idle_w(built, stats)
    summary = summarize(frame, cfg.slo.ttft_s, cfg.slo.tpot_s, stats.simulated_s, extra, gaps,
                        objectives)
    programs = program_summary(built.requests) if built.requests_made else None
    if programs is not None:
        summary["programs"] = programs
    log = built.kv_setup.log if built.kv_setup is not None else None
    tiers = log.to_frame() if log is not None else None
    lifecycle = built.elastic.log if built.elastic is not None else None
    return SimulationResult(cfg, summary, frame, steps, lifecycle=lifecycle, tiers=tiers)


def _simulate(built: Built, step_log: StepLog, gaps: TokenGaps, after_step):
    """Run the cluster over the arriving requests; its stats and the request table of the run."""
    cfg = built.config
    if cfg.engine.check_kv_conservation:
        after_step = _checking_kv(after_step)
    # Requests a length filter rejected never reach the cluster; they stay in requests.csv. Unless
    # asked for as objects, requests are made on arrival and logged when they end (engine.stream).
    if built.requests_made:
        arriving = [r for r in built.requests if not r.rejected_reason]
    else:
        arriving = RequestStream(built.factory, built.refused, REJECT_REASON)
    stats = run_cluster(
        arriving, built.parts, built.router, step_log, cfg.max_sim_time_s or math.inf,
        after_step=after_step, disaggregation=built.disaggregation, elastic=built.elastic,
        power_budget=built.power_budget, token_gaps=gaps,
    )
    # With a time limit, requests due after it never arrived: they are not part of this run. The
    # limit, not the last event, bounds them: a filter-rejected request may arrive after the rest ended.
    horizon = cfg.max_sim_time_s if cfg.max_sim_time_s is not None else math.inf
    if isinstance(arriving, RequestStream):
        return stats, arriving.columns(horizon)
    return stats, request_columns(r for r in built.requests if r.arrival_time <= horizon)


def _summary_sections(built: Built, stats, frame: Columns) -> dict:
    """The summary's `kv`, `sim` and `cluster` sections (and `workload`, `requests` where they
    apply), before energy and cost."""
    cfg = built.config
    extra: dict[str, Any] = {
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
        prompt_tokens = int(np.sum(frame["prompt_tokens"]))
        extra["kv"].update(built.kv_setup.stats(prompt_tokens, stats.simulated_s))
    if stats.kv_link is not None:
        extra["cluster"]["kv_link"] = stats.kv_link
    if built.elastic is not None:
        extra["cluster"].update(elastic_summary(built.elastic.log, stats, frame))
        extra["cluster"]["cold_start_s"] = built.elastic.cold_start_s
        extra["requests"] = {
            "failed": int((frame["status"] == "failed").sum()),
            "retried": int((np.asarray(frame["retries"]) > 0).sum()),
        }
    else:
        extra["cluster"]["instance_seconds"] = len(built.parts) * stats.simulated_s
        extra["cluster"]["instance_hours"] = len(built.parts) * stats.simulated_s / 3600
        extra["cluster"]["cold_starts"] = 0
    if built.workload_counts is not None:
        extra["workload"] = built.workload_counts
    return extra


def elastic_summary(lifecycle: LifecycleLog, stats, frame: Columns) -> dict:
    """`cluster` entries of an elastic run: the fleet's instance-seconds, cold starts, failures,
    migrations (and the migration link's statistics), and the instance slots used."""
    from servesim.metrics.lifecycle import fleet_summary

    out = fleet_summary(lifecycle, stats.simulated_s)
    events = lifecycle.frame()
    out["slots"] = int(events.loc[events["instance"] >= 0, "instance"].max()) + 1
    if stats.migration_link is not None:
        out["migration_link"] = stats.migration_link
    return out


def _energy_and_cost(built: Built, stats, frame: Columns, steps: StepLog) -> dict:
    """The summary's `energy` and `cost` blocks (and `power` when caps or a budget were used); adds
    each request's joules to `frame` as `energy_j`."""
    idle_w = _idle_w(built, stats)
    metered = any(w is not None for w in idle_w)
    horizon = stats.simulated_s
    frame["energy_j"] = request_energy(steps, frame) if metered else float("nan")
    per_instance = instance_energy(steps, idle_w, horizon)
    pools, pool_of = built.pool_table(), [p.pool for p in built.parts]
    if built.elastic is not None and not built.elastic.static:  # idle and rent only while up
        from servesim.metrics.lifecycle import elastic_energy_and_rent

        per_instance, pools = elastic_energy_and_rent(built.elastic.log, per_instance.to_frame(), pools,
                                                      horizon)
        pool_of = [pool_of[0]] * len(idle_w)
    out = {"energy": energy_summary(per_instance, frame, horizon, pool_of)}
    edges = built.carbon.breakpoints(horizon)
    interval_j = energy_in_intervals(steps, idle_w, edges) if metered else None
    cfg = built.config
    out["cost"] = cost_summary(pools, built.prices, horizon, frame, interval_j, edges,
                               built.carbon, cfg.pricing.pue)
    if cfg.power.limited:
        p = cfg.power
        out["power"] = {
            "cap_w": p.cap_w, "clock_mhz": p.clock_mhz,
            "pools": {name: v.model_dump() for name, v in p.pools.items()},
            "budget": stats.power_budget,
        }
    return out


def _idle_w(built: Built, stats) -> list[float | None]:
    """Idle power of each instance (each slot of an elastic fleet)."""
    return [p.power.idle_w if p.power is not None else None for p in _slot_parts(built)]


def _slot_parts(built: Built) -> list:
    """The parts of each instance slot: `built.parts` describes the initial instances only, and an
    elastic fleet's later slots (scale-up) run its one pool."""
    parts = list(built.parts)
    if built.elastic is not None and built.elastic.instances:
        slots = max(i.index for i in built.elastic.instances) + 1
        parts += parts[:1] * (slots - len(parts))
    return parts


def isolated_columns(built: Built, frame: Columns) -> dict[str, np.ndarray]:
    """`ttft_isolated_s` and `e2e_isolated_s` of each request of `frame` (requests.csv's rows):
    its prompt priced on the pool that computed it, its decodes on the pool that generated them."""
    parts = _slot_parts(built)
    prompt = np.asarray(frame["prompt_tokens"], dtype=np.int64)
    output = np.asarray(frame["output_tokens"], dtype=np.int64)
    instance = np.maximum(np.asarray(frame["instance"], dtype=np.int64), 0)
    prefill = np.asarray(frame["prefill_instance"], dtype=np.int64)
    first = np.where(prefill >= 0, prefill, instance)
    last = instance
    ttft, decode = np.zeros(len(frame)), np.zeros(len(frame))
    names = np.array([p.pool for p in parts], dtype=object)
    for pool in dict.fromkeys(names.tolist()):
        part = parts[names.tolist().index(pool)]  # the pool's instances price alike
        in_pool = names == pool
        mine = in_pool[first]
        ttft[mine] = isolated_prefill(part.cost_model, prompt[mine],
                                      part.scheduler.limits.max_num_batched_tokens)
        mine = in_pool[last]
        decode[mine] = isolated_decode(part.cost_model, prompt[mine], output[mine],
                                       built.model.sliding_window)
    return {"ttft_isolated_s": ttft, "e2e_isolated_s": ttft + decode}


def _checking_kv(after_step):
    """`after_step` preceded by the KV manager's conservation check (the debug mode)."""

    def check(instance):
        instance.kv.check_conservation()
        if after_step is not None:
            after_step(instance)

    return check


def _prefix_hit_rate(frame: Columns) -> float:
    total = np.sum(frame["prompt_tokens"])
    return float(np.sum(frame["cached_tokens"]) / total) if total else 0.0


def dump_config(config: SimConfig) -> str:
    return yaml.safe_dump(jsonable(config.model_dump(mode="json")), sort_keys=False)

