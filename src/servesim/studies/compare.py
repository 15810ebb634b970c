"""Regression gate: metric deltas between two summaries (or two sweeps), direction-aware.

A metric *regressed* when it moved in its worse direction by more than `rtol * |base| + atol`.
Metrics with no better direction (KV usage, simulated time) regress on any change that large.
A value that was defined in BASE and is missing or NaN in NEW counts as a regression.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from servesim.core.errors import ArgumentError, ConfigError, InputFileError
from servesim.core.files import open_text, read_table
from servesim.studies.summaries import default_metrics, direction, flatten, is_metric, load_summary


@dataclass
class MetricDelta:
    metric: str
    base: float
    new: float
    direction: int
    """+1 higher is better, -1 lower is better, 0 neither."""
    verdict: str
    """better | worse (within tolerance) | same | regressed."""
    point: str = ""
    """For sweeps: the point's keys, `engine.scheduler=fcfs workload.arrival.rate=8`."""

    @property
    def delta(self) -> float:
        return self.new - self.base

    @property
    def rel(self) -> float:
        if self.base == 0:
            return 0.0 if self.new == 0 else math.copysign(math.inf, self.delta)
        return self.delta / abs(self.base)

    def to_dict(self) -> dict:
        return {**asdict(self), "delta": self.delta, "rel": self.rel}


def judge(metric: str, base: float, new: float, rtol: float, atol: float = 0.0) -> MetricDelta:
    sign = direction(metric)
    b_nan, n_nan = _isnan(base), _isnan(new)
    if b_nan or n_nan:
        verdict = "same" if b_nan and n_nan else ("better" if b_nan else "regressed")
        return MetricDelta(metric, base, new, sign, verdict)
    slack = rtol * abs(base) + atol
    change = new - base
    if change == 0:
        verdict = "same"
    elif sign == 0:
        verdict = "regressed" if abs(change) > slack else "same"
    else:
        gain = sign * change
        verdict = "better" if gain > 0 else ("regressed" if -gain > slack else "worse")
    return MetricDelta(metric, base, new, sign, verdict)


def compare_summaries(
    base: Mapping, new: Mapping, rtol: float = 0.02, atol: float = 0.0, metrics: Sequence[str] | None = None
) -> list[MetricDelta]:
    """Deltas of `metrics` (default: every outcome with a direction) between two summary dicts."""
    fb, fn = flatten(base), flatten(new)
    names = select_metrics(metrics, fb, fn)
    return [judge(m, fb.get(m, math.nan), fn.get(m, math.nan), rtol, atol) for m in names]


def compare_sweeps(
    base: pd.DataFrame,
    new: pd.DataFrame,
    rtol: float = 0.02,
    atol: float = 0.0,
    metrics: Sequence[str] | None = None,
) -> tuple[list[MetricDelta], list[str]]:
    """Deltas for every point in both sweeps (matched on their keys), and the points BASE had
    that NEW lacks or failed (each counts as a regression)."""
    keys = sweep_keys(base)
    if keys != sweep_keys(new):
        raise ConfigError("compare", f"the sweeps have different keys: {keys} vs {sweep_keys(new)}")
    names = select_metrics(metrics, base.columns, new.columns)
    new_rows = {_label(row, keys): row for _, row in new.iterrows()}
    deltas, lost = [], []
    for _, row in base.iterrows():
        label = _label(row, keys)
        other = new_rows.get(label)
        if row.get("status") != "ok":
            continue
        if other is None or other.get("status") != "ok":
            lost.append(label)
            continue
        for m in names:
            d = judge(m, _num(row.get(m)), _num(other.get(m)), rtol, atol)
            d.point = label
            deltas.append(d)
    return deltas, lost


def select_metrics(requested, *available) -> list[str]:
    union = list(dict.fromkeys(c for cols in available for c in cols))
    if not requested:
        return default_metrics(union)
    unknown = [m for m in requested if m not in union]
    if unknown:
        known = ", ".join(default_metrics(union)[:6])
        raise ArgumentError("metrics", f"unknown metric {unknown[0]!r}; e.g. {known}, ...")
    return list(requested)


def sweep_keys(frame: pd.DataFrame) -> list[str]:
    """The point columns of a sweep.csv: those before the metrics, which start with `requests.`
    (no config key does), or before `status` when no point succeeded."""
    keys = []
    for c in frame.columns:
        if c.startswith("requests.") or c == "status":
            break
        keys.append(c)
    return keys


def load_run(path: str | Path) -> tuple[str, object]:
    """("summary", dict) for a summary.json (or a run folder holding one), ("sweep", DataFrame)
    for a sweep.csv (or a sweep folder); InputFileError for anything else."""
    path = Path(path)
    if path.is_dir():
        for name in ("summary.json", "sweep.csv"):
            if (path / name).exists():
                return load_run(path / name)
        raise InputFileError(path, "folder has neither summary.json nor sweep.csv")
    if path.suffix == ".csv":
        return "sweep", _load_sweep(path)
    return "summary", load_summary(path)


def _load_sweep(path: Path) -> pd.DataFrame:
    header = next(csv.reader(open_text(path, "sweep.csv")), [])
    if "status" not in header or not any(is_metric(c) for c in header):
        raise InputFileError(path, "not a servesim sweep.csv (needs a status column and summary metrics)")
    return read_table(path, "sweep.csv", dtype={c: str for c in header if not is_metric(c)})


def format_table(deltas: Sequence[MetricDelta], show_point: bool = False) -> str:
    width = max([len(d.metric) for d in deltas] + [6])
    lines = []
    head = f"{'metric':<{width}}  {'base':>12}  {'new':>12}  {'change':>9}  verdict"
    current = None
    for d in deltas:
        if show_point and d.point != current:
            current = d.point
            lines += ["", f"[{d.point}]"]
        if not lines or (show_point and lines[-1].startswith("[")):
            lines.append(head)
        rel = "" if _isnan(d.rel) else f"{d.rel:+.2%}" if math.isfinite(d.rel) else f"{d.rel:+}"
        mark = " <--" if d.verdict == "regressed" else ""
        lines.append(f"{d.metric:<{width}}  {_fmt(d.base):>12}  {_fmt(d.new):>12}  {rel:>9}  "
                     f"{d.verdict}{mark}")
    return "\n".join(lines).lstrip("\n")


def report_json(deltas: Sequence[MetricDelta], lost: Sequence[str], rtol: float, atol: float) -> dict:
    regressed = [d.to_dict() for d in deltas if d.verdict == "regressed"]
    return {
        "rtol": rtol,
        "atol": atol,
        "regressed": len(regressed) + len(lost),
        "metrics": [d.to_dict() for d in deltas],
        "missing_points": list(lost),
    }


def _label(row, keys) -> str:
    return " ".join(f"{k}={'' if pd.isna(row[k]) else row[k]}" for k in keys)


def _num(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _isnan(v: float) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _fmt(v: float) -> str:
    if _isnan(v):
        return "nan"
    return f"{v:.6g}"


__all__ = [
    "MetricDelta",
    "compare_summaries",
    "compare_sweeps",
    "judge",
    "load_run",
]
