"""Figures for studies. Each function returns a `matplotlib.figure.Figure` (no pyplot state, so it
works headless and in notebooks alike); save it with `fig.savefig("x.png")`.

Inputs are flexible: a run is a `SimulationResult`, a requests DataFrame, or a path to a run folder
or its requests.csv; a sweep is a DataFrame or a path to a sweep folder or sweep.csv.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from servesim.core.errors import ArgumentError, ConfigError, InputFileError
from servesim.core.files import read_table

LATENCY_COLUMNS = {"ttft": "ttft_s", "tpot": "tpot_s", "e2e": "e2e_s", "tbt_max": "tbt_max_s"}
LATENCY_TITLES = {"ttft": "time to first token", "tpot": "time per output token",
                  "e2e": "end-to-end latency", "tbt_max": "longest token gap"}


# -- inputs ------------------------------------------------------------------------------------
def requests_frame(run) -> pd.DataFrame:
    if isinstance(run, pd.DataFrame):
        return run
    if hasattr(run, "requests"):
        return run.requests
    path = Path(run)
    if path.is_dir():
        path = path / "requests.csv"
    if not path.exists():
        raise InputFileError(path, "no such requests.csv (run `servesim run` with output.requests_csv)")
    return read_table(path, "requests.csv")


def sweep_frame(sweep) -> pd.DataFrame:
    if isinstance(sweep, pd.DataFrame):
        return sweep
    path = Path(sweep)
    if path.is_dir():
        path = path / "sweep.csv"
    if not path.exists():
        raise InputFileError(path, "no such sweep.csv")
    return read_table(path, "sweep.csv")


# -- latency distributions ------------------------------------------------------------------------
def latency_cdfs(
    runs: Mapping[str, object],
    metrics: Sequence[str] = ("ttft", "tpot", "e2e"),
    slo: Mapping[str, float] | None = None,
) -> Figure:
    """Empirical CDFs of per-request latencies (completed requests), one panel per metric and one
    line per run. `slo` ({"ttft": 1.0, "tpot": 0.1}) draws the objectives as dashed lines."""
    bad = [m for m in metrics if m not in LATENCY_COLUMNS]
    if bad:
        choices = ", ".join(LATENCY_COLUMNS)
        raise ArgumentError("metrics", f"unknown latency {bad[0]!r}; choose from {choices}")
    frames = {label: requests_frame(run) for label, run in runs.items()}
    fig = Figure(figsize=(4.2 * len(metrics), 3.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        col = LATENCY_COLUMNS[metric]
        for label, frame in frames.items():
            done = frame[frame["status"] == "completed"][col].dropna().to_numpy()
            if len(done) == 0:
                continue
            x = np.sort(done)
            ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=label)
        if slo and metric in slo:
            ax.axvline(slo[metric], color="0.3", linestyle="--", linewidth=1, label="SLO")
        _auto_log(ax, [frame[col] for frame in frames.values()])
        ax.set_xlabel(f"{metric} (s)")
        ax.set_title(LATENCY_TITLES[metric])
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of requests")
    axes[-1].legend(fontsize="small", loc="lower right")
    return fig


# -- sweeps ---------------------------------------------------------------------------------------
def attainment_vs_rate(
    sweep,
    x: str = "workload.arrival.rate",
    y: str = "slo.attainment",
    hue: str | None = None,
    target: float | None = None,
    confidence: float = 0.95,
) -> Figure:
    """Mean of `y` against `x`, one line per `hue` value; with several seeds per point, a shaded
    t-interval of the mean. `target` draws a horizontal line (an attainment goal)."""
    frame = _ok_rows(sweep_frame(sweep), [x, y] + ([hue] if hue else []))
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.subplots()
    for label, group in _by_hue(frame, hue):
        stats = group.groupby(x)[y].agg(["mean", "std", "count"]).sort_index()
        xs = stats.index.to_numpy(float)
        line, = ax.plot(xs, stats["mean"], marker="o", label=label)
        if (stats["count"] > 1).any():
            from servesim.studies.paired import t_quantile

            half = [t_quantile(confidence, n - 1) * s / math.sqrt(n) if n > 1 else 0.0
                    for s, n in zip(stats["std"].fillna(0), stats["count"])]
            ax.fill_between(xs, stats["mean"] - half, stats["mean"] + half,
                            color=line.get_color(), alpha=0.2, linewidth=0)
    if target is not None:
        ax.axhline(target, color="0.3", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if y == "slo.attainment":
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if hue or target is not None:
        ax.legend(fontsize="small", title=hue)
    return fig


def latency_vs_throughput(
    sweep,
    latency: str = "latency.ttft.p99",
    throughput: str = "throughput.output_tokens_per_s",
    hue: str | None = None,
    order_by: str | None = "workload.arrival.rate",
) -> Figure:
    """The latency-throughput trade-off: one point per sweep point (mean over seeds), joined in
    order of `order_by` (the offered load) within each `hue` value."""
    frame = _ok_rows(sweep_frame(sweep), [latency, throughput] + ([hue] if hue else []))
    order = order_by if order_by in frame.columns else None
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.subplots()
    for label, group in _by_hue(frame, hue):
        if order:
            group = group.groupby(order)[[throughput, latency]].mean().sort_index()
        else:
            group = group.sort_values(throughput)
        ax.plot(group[throughput], group[latency], marker="o", label=label)
    ax.set_xlabel(throughput)
    ax.set_ylabel(latency)
    _auto_log(ax, [frame[latency]], axis="y")
    ax.grid(alpha=0.3)
    if hue:
        ax.legend(fontsize="small", title=hue)
    return fig


# -- one run over time ----------------------------------------------------------------------------
def instance_timeline(run, instances: Sequence[int] | None = None, max_points: int = 4000) -> Figure:
    """Per instance, after every step: waiting queue, running batch, KV cache usage.

    `run` is a SimulationResult or its `steps` DataFrame. Long runs are thinned to about
    `max_points` points per instance (every k-th step) to keep the figure light.
    """
    steps = run.steps if hasattr(run, "steps") else run
    if len(steps) == 0:
        raise ConfigError("steps", "the run has no steps to plot")
    chosen = sorted(steps["instance"].unique()) if instances is None else list(instances)
    fig = Figure(figsize=(8, 6), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    panels = [("num_waiting", "waiting"), ("num_running", "running (batch)"), ("kv_usage", "KV usage")]
    for i in chosen:
        s = steps[steps["instance"] == i]
        stride = max(1, len(s) // max_points)
        s = s.iloc[::stride]
        for ax, (col, _) in zip(axes, panels):
            ax.step(s["end_s"], s[col], where="post", linewidth=0.9, label=f"instance {i}")
    for ax, (_, title) in zip(axes, panels):
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[2].set_ylim(0, 1.02)
    axes[2].set_xlabel("simulated time (s)")
    if len(chosen) <= 8:
        axes[0].legend(fontsize="small", ncol=min(4, len(chosen)), loc="upper right")
    return fig


# -- cost model -----------------------------------------------------------------------------------
def default_shapes() -> dict[str, object]:
    """Representative steps: decode batches of growing size and prefills of growing length."""
    from servesim.cost.base import StepShape

    shapes = {f"decode x{b}": StepShape([], b, b * 1024) for b in (1, 16, 64, 256)}
    shapes.update({f"prefill {n}": StepShape([(n, 0)], 0, 0) for n in (256, 1024, 4096)})
    return shapes


def cost_breakdown(cost_model_or_config, shapes: Mapping[str, object] | None = None) -> Figure:
    """Where a step's time goes, per step shape: seconds in compute-bound and in memory-bound
    operators, communication and fixed overhead (`StepCost` fields), stacked, with a tick at
    `total_s`; a second panel stacks per-operator times when the cost model reports them
    (`StepCost.by_op`)."""
    model = _cost_model(cost_model_or_config)
    shapes = dict(shapes or default_shapes())
    costs = {label: model.breakdown(shape) for label, shape in shapes.items()}
    by_op = any(c.by_op for c in costs.values())
    fig = Figure(figsize=(10 if by_op else 6.5, 3.8), layout="constrained")
    axes = fig.subplots(1, 2 if by_op else 1, squeeze=False)[0]
    labels = list(costs)
    xs = np.arange(len(labels))
    ms = 1e3  # seconds -> milliseconds
    parts = [("compute_s", "compute-bound", "tab:red"), ("memory_s", "memory-bound", "tab:blue"),
             ("comm_s", "communication", "tab:green"), ("overhead_s", "overhead", "0.6")]
    ax, bottom = axes[0], np.zeros(len(labels))
    for attr, label, color in parts:
        vals = np.array([ms * getattr(c, attr) for c in costs.values()])
        ax.bar(xs, vals, bottom=bottom, color=color, label=label)
        bottom += vals
    totals = [ms * c.total_s for c in costs.values()]
    ax.scatter(xs, totals, marker="_", s=400, color="k", label="step time", zorder=3)
    ax.set_xticks(xs, labels, rotation=30, ha="right")
    ax.set_ylabel("ms")
    ax.set_title("step time by bound", fontsize="medium")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    if by_op:
        ops = sorted({op for c in costs.values() for op in c.by_op})
        bottom = np.zeros(len(labels))
        for op in ops:
            vals = np.array([ms * c.by_op.get(op, 0.0) for c in costs.values()])
            axes[1].bar(xs, vals, bottom=bottom, label=op)
            bottom += vals
        axes[1].set_xticks(xs, labels, rotation=30, ha="right")
        axes[1].set_ylabel("ms")
        axes[1].set_title("by operator group", fontsize="medium")
        axes[1].legend(fontsize="small")
    return fig


def _cost_model(source):
    if hasattr(source, "breakdown"):
        return source
    from servesim.build import build
    from servesim.config import load_config

    return build(load_config(source)).parts[0].cost_model


# -- helpers --------------------------------------------------------------------------------------
def _ok_rows(frame: pd.DataFrame, needed: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ConfigError("plot", f"the sweep has no column {missing[0]!r}")
    if "status" in frame:
        frame = frame[frame["status"] == "ok"]
    return frame


def _by_hue(frame: pd.DataFrame, hue: str | None):
    if not hue:
        yield None, frame
        return
    for value, group in frame.groupby(hue, sort=True):
        yield str(value), group


def _auto_log(ax, series, axis: str = "x") -> None:
    """Log scale when the positive values span more than two decades."""
    values = pd.concat([pd.Series(s, dtype=float) for s in series]).dropna()
    values = values[values > 0]
    if len(values) and values.max() / values.min() > 100:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
