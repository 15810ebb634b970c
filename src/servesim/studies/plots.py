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
    if hasattr(run, "requests"):
        return run.requests
    return _frame(run, "requests.csv", " (run `servesim run` with output.requests_csv)")


def sweep_frame(sweep) -> pd.DataFrame:
    return _frame(sweep, "sweep.csv")


def _frame(source, name: str, hint: str = "") -> pd.DataFrame:
    """A DataFrame as given, or read from `name` (a file, or the file of that name in a folder)."""
    if isinstance(source, pd.DataFrame):
        return source
    path = Path(source)
    if path.is_dir():
        path = path / name
    if not path.exists():
        raise InputFileError(path, f"no such {name}{hint}")
    return read_table(path, name)


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
    sweep, latency: str = "latency.ttft.p99", throughput: str = "throughput.output_tokens_per_s",
    hue: str | None = None, order_by: str | None = "workload.arrival.rate",
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
TIMELINE_PANELS = {
    "num_waiting": "waiting (requests)",
    "num_running": "running batch (requests)",
    "kv_usage": "KV usage (fraction)",
    "busy_frac": "busy (fraction of time)",
}


def instance_timeline(
    run, interval_s: float | None = None, instances: Sequence[int] | None = None
) -> Figure:
    """Per instance over time: waiting queue, running batch, KV usage, busy share (and power, when
    energy is modelled), averaged over time bins (`SimulationResult.timeseries`, what
    timeseries.csv holds). With more than 16 instances, each pool's mean is drawn instead.

    `run` is a SimulationResult, or a time-series DataFrame with those columns.
    """
    frame = run.timeseries(interval_s) if hasattr(run, "timeseries") else run
    if len(frame) == 0:
        raise ConfigError("steps", "the run has no steps to plot")
    if instances is not None:
        frame = frame[frame["instance"].isin(list(instances))]
    many = frame["instance"].nunique() > 16
    group = "pool" if many else "instance"
    panels = dict(TIMELINE_PANELS)
    if "power_w" in frame and frame["power_w"].notna().any():
        panels["power_w"] = "power (W)"
    fig = Figure(figsize=(8, 1.75 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True)
    for ax, (column, title) in zip(axes, panels.items()):
        for name, g in frame.groupby(group, sort=True):
            series = g.groupby("time_s")[column].mean()
            label = f"pool {name}" if many else f"instance {name} ({g['pool'].iloc[0]})"
            ax.step(series.index, series.to_numpy(), where="post", linewidth=0.9, label=label)
        ax.set_ylabel(title, fontsize="small")
        ax.grid(alpha=0.3)
    axes[2].set_ylim(0, 1.02)
    axes[-1].set_xlabel("simulated time (s)")
    if frame[group].nunique() <= 16:
        axes[0].legend(fontsize="x-small", ncol=4, loc="upper right")
    return fig


# -- a workload -----------------------------------------------------------------------------------
def workload_figure(table, title: str = "", bin_s: float | None = None) -> Figure:
    """Three panels of a `RequestTable`: arrival rate over time, prompt and output length CDFs."""
    fig = Figure(figsize=(14, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    ax = axes[0]
    if table.timed and len(table) > 1:
        t, rate = rate_series(table.arrival_s, bin_s)
        ax.step(t, rate, where="post", lw=1)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("arrivals per second")
        ax.set_title("arrival rate")
    else:
        ax.text(0.5, 0.5, "no timestamps", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    for ax, values, name in (
        (axes[1], table.prompt_tokens, "prompt tokens"),
        (axes[2], table.output_tokens, "output tokens"),
    ):
        x = np.sort(values)
        ax.plot(x, np.arange(1, len(x) + 1) / len(x), lw=1.2)
        ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("CDF")
        ax.set_title(f"{name}: mean {values.mean():.0f}, p50 {np.median(values):.0f}")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def rate_series(arrival_s: np.ndarray, bin_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(bin start, requests per second in the bin); about 120 bins when `bin_s` is not given."""
    from servesim.metrics.timeseries import auto_interval

    start, end = float(arrival_s.min()), float(arrival_s.max())
    bin_s = bin_s or auto_interval(max(end - start, 1e-3), target_bins=120)
    edges = np.arange(start, end + bin_s, bin_s)
    if len(edges) < 2:
        edges = np.array([start, start + bin_s])
    counts, edges = np.histogram(arrival_s, bins=edges)
    return edges[:-1] - start, counts / bin_s


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
