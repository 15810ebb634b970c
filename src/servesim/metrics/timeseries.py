"""Per-instance time series from the step log: queue length, running batch, KV usage, busy time.

A step-log row records an instance's state when a step (or a run of identical decode steps) ends;
that state holds until the instance's next row. Each series is that step function averaged over
fixed time bins (time-weighted), so a bin's value does not depend on how many steps fell in it
and multi-step runs give the same series as single steps. `busy_frac` is the share of the bin
the instance spent computing; `power_w` its mean power over the bin (each step's joules spread over
the step, idle power in between; NaN without a power model).

`num_waiting` comes from the requests when they are given: each request counts from its arrival to
its first scheduled step on its instance, so the series' time average obeys Little's law (arrival
rate x mean queue time). The step log's count at a step's end would be held through the next step
and overstate the queue at light load, where a request arriving mid-step is admitted at the step's
end. Without requests, the step log's count is used.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from servesim.core.errors import ConfigError
from servesim.metrics.columns import Columns
from servesim.metrics.energy import rows_by_instance, spread_at, spread_cumulative
from servesim.metrics.step_scan import Probe, instance_chunks, instances_in_start_order, scan

if TYPE_CHECKING:
    import pandas as pd

MAX_ROWS = 5_000_000
"""Most rows a time series may have (instances x bins): a tiny bin width must fail, not exhaust memory."""
STATE_COLUMNS = ("num_waiting", "num_running", "kv_usage")
TIMESERIES_COLUMNS = ["time_s", "instance", "pool", *STATE_COLUMNS, "busy_frac", "power_w"]


def auto_interval(span_s: float, target_bins: int = 200) -> float:
    """A round bin width (1, 2 or 5 times a power of ten) giving about `target_bins` bins."""
    if not span_s > 0:
        return 1.0
    raw = span_s / target_bins
    exp = 10 ** math.floor(math.log10(raw))
    return next(m * exp for m in (1, 2, 5, 10) if m * exp >= raw)


def check_size(span_s: float, interval_s: float | None, instances: int) -> None:
    """ConfigError when `interval_s` would cut `span_s` into more rows than `MAX_ROWS`."""
    if interval_s and instances * span_s / interval_s > MAX_ROWS:
        raise ConfigError(
            "output.timeseries_interval_s",
            f"{interval_s:g} s over {span_s:.4g} simulated s and {instances} instance(s) makes more than "
            f"{MAX_ROWS:,} rows; use a wider bin (or leave it out for about 200 bins)",
        )


def instance_timeseries(
    steps,
    interval_s: float | None = None,
    end_s: float | None = None,
    pools: list[dict] | None = None,
    num_instances: int | None = None,
    requests=None,
    idle_w: list[float | None] | None = None,
) -> pd.DataFrame:
    """One row per instance and bin `[time_s, time_s + interval_s)`, bins from 0 to `end_s`.

    `steps` is the step log (a frame or `metrics.columns.Columns`). `pools`
    (`summary["cluster"]["pools"]`) names each instance's pool; instances that never stepped still
    get rows (all zero) when `num_instances` or `pools` says they exist. `idle_w` is each
    instance's idle power (None: no power model). `requests` (requests.csv's rows) gives the waiting
    queue exactly (see the module's doc).
    """
    return timeseries_columns(steps, interval_s, end_s, pools, num_instances, requests, idle_w).to_frame()


def timeseries_columns(steps, interval_s=None, end_s=None, pools=None, num_instances=None, requests=None,
                       idle_w=None) -> Columns:
    """`instance_timeseries` as `metrics.columns.Columns` (no pandas). A long log that spilled to
    its file is read piece by piece (`_ScannedRows`), never whole."""
    log = getattr(steps, "unread_log", None)
    order = instances_in_start_order(log) if log is not None else None
    if order is None:
        steps = Columns({c: np.asarray(steps[c]) for c in steps.columns}) if len(steps) else Columns({})
        last = float(np.max(steps["end_s"])) if len(steps) else 0.0
        top = int(np.max(steps["instance"])) if len(steps) else -1
    else:
        last = max(float(np.max(piece["end_s"])) for piece in log.chunks())
        top = max(order)
    end = max(end_s or 0.0, last)
    dt = interval_s or auto_interval(end)
    check_size(end, dt, max(1, num_instances or len(_pool_names(pools)) or 1))
    edges = np.arange(0.0, end + dt, dt)
    if len(edges) < 2:
        edges = np.array([0.0, dt])
    pool_of = _pool_names(pools)
    count = num_instances or len(pool_of) or top + 1
    if order is None:
        by_instance = {i: steps[rows] for i, rows in rows_by_instance(steps).items()}
    else:
        by_instance = {i: _ScannedRows(chunks, edges) for i, chunks in instance_chunks(log).items()}
    waits = _waiting_intervals(requests, end) if requests is not None else None
    parts = []
    for i in range(count):
        rows = by_instance.get(i)
        cols = {"time_s": edges[:-1], "instance": np.full(len(edges) - 1, i, dtype=np.int64),
                "pool": np.full(len(edges) - 1, pool_of.get(i, "default"), dtype=object)}
        for name in STATE_COLUMNS:
            cols[name] = _binned_state(rows, name, edges)
        if waits is not None:
            cols["num_waiting"] = _binned_intervals(*waits.get(i, ((), ())), edges)
        cols["busy_frac"] = _binned_busy(rows, edges)
        idle = idle_w[i] if idle_w is not None and i < len(idle_w) else None
        cols["power_w"] = _binned_power(rows, edges, idle, cols["busy_frac"])
        parts.append(cols)
    if not parts:
        return Columns({c: np.empty(0, dtype=object) for c in TIMESERIES_COLUMNS})
    return Columns({c: np.concatenate([p[c] for p in parts]) for c in TIMESERIES_COLUMNS})


def _pool_names(pools: list[dict] | None) -> dict[int, str]:
    out = {}
    for p in pools or []:
        for i in range(p["first_instance"], p["first_instance"] + p["instances"]):
            out[i] = p["name"]
    return out


def _binned_state(rows: Columns | None, column: str, edges: np.ndarray) -> np.ndarray:
    """Time-weighted mean per bin of the step function `value at the last row ended by t`."""
    if isinstance(rows, _ScannedRows):
        return rows.state(column)
    if rows is None or not len(rows):
        return np.zeros(len(edges) - 1)
    t = np.asarray(rows["end_s"], dtype=float)
    v = np.asarray(rows[column], dtype=float)
    # Integral from t[0] up to each t[k], then up to any time by the held value.
    cum = np.concatenate(([0.0], np.cumsum(v[:-1] * np.diff(t))))
    k = np.searchsorted(t, edges, side="right") - 1
    inside = k >= 0
    kk = np.clip(k, 0, None)
    area = np.where(inside, cum[kk] + v[kk] * (edges - t[kk]), 0.0)
    return np.diff(area) / np.diff(edges)


def _waiting_intervals(requests, end: float) -> dict[int, tuple]:
    """Per instance, the [arrival, first scheduled) interval of each request routed to it; one never
    scheduled waits until the end (rejected requests never wait)."""
    keep = np.asarray(requests["status"]) != "rejected"
    inst = _numeric(requests["instance"])[keep]
    if "prefill_instance" in requests:  # disaggregated: a request waits on its prefill instance
        first = _numeric(requests["prefill_instance"])[keep]  # -1: colocated
        inst = np.where(first >= 0, first, inst)
    known = ~np.isnan(inst)
    start = np.asarray(requests["arrival_s"], dtype=float)[keep][known]
    stop = np.asarray(requests["first_scheduled_s"], dtype=float)[keep][known]
    stop = np.where(np.isnan(stop), end, stop)
    inst = inst[known].astype(int)
    # sorted(set()), not np.unique: that imports numpy.ma on first use (~12 ms of a short run)
    return {i: (start[inst == i], stop[inst == i]) for i in sorted(set(inst.tolist()))}


def _numeric(values) -> np.ndarray:
    """Floats, NaN where a value is not a number (what `pd.to_numeric(errors="coerce")` gives)."""
    values = np.asarray(values)
    if values.dtype.kind in "iufb":
        return values.astype(float)
    out = np.full(len(values), np.nan)
    for k, v in enumerate(values.tolist()):
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            pass
    return out


def _binned_intervals(starts, stops, edges: np.ndarray) -> np.ndarray:
    """Time-weighted mean per bin of the number of intervals [start, stop) covering t."""
    if not len(starts):
        return np.zeros(len(edges) - 1)
    a, b = np.sort(np.asarray(starts, float)), np.sort(np.asarray(stops, float))
    ca, cb = np.concatenate(([0.0], np.cumsum(a))), np.concatenate(([0.0], np.cumsum(b)))
    na, nb = np.searchsorted(a, edges, side="left"), np.searchsorted(b, edges, side="left")
    # Integral from 0 to each edge: sum over intervals of (min(t, stop) - start)^+.
    area = (na * edges - ca[na]) - (nb * edges - cb[nb])
    return np.diff(area) / np.diff(edges)


def _binned_busy(rows: Columns | None, edges: np.ndarray) -> np.ndarray:
    if isinstance(rows, _ScannedRows):
        return rows.busy()
    if rows is None or not len(rows):
        return np.zeros(len(edges) - 1)
    s = np.asarray(rows["start_s"], dtype=float)
    d = np.asarray(rows["end_s"], dtype=float) - s
    cum = np.concatenate(([0.0], np.cumsum(d)))
    k = np.searchsorted(s, edges, side="right") - 1
    kk = np.clip(k, 0, None)
    busy = np.where(k >= 0, cum[kk] + np.clip(edges - s[kk], 0.0, d[kk]), 0.0)
    return np.diff(busy) / np.diff(edges)


def _binned_power(rows: Columns | None, edges: np.ndarray, idle_w: float | None,
                  busy: np.ndarray) -> np.ndarray:
    """Mean watts per bin: step joules spread evenly over each step, idle power for the rest."""
    if idle_w is None:
        return np.full(len(edges) - 1, np.nan)
    idle = idle_w * (1.0 - busy)
    if isinstance(rows, _ScannedRows):
        return rows.power() + idle
    if rows is None or not len(rows) or "energy_j" not in rows:
        return idle
    s = np.asarray(rows["start_s"], dtype=float)
    d = np.asarray(rows["end_s"], dtype=float) - s
    energy = spread_cumulative(s, d, np.asarray(rows["energy_j"], dtype=float), edges)
    return np.diff(energy) / np.diff(edges) + idle


class _ScannedRows:
    """One instance's rows of a spilled log, read piece by piece: the sums the binned series need
    at the bin edges, equal bit for bit to the whole-table functions above."""

    def __init__(self, chunks, edges: np.ndarray):
        self.edges = edges
        areas = [f"area_{c}" for c in STATE_COLUMNS]
        self.ends = Probe("end_s", "right", edges, areas, ["end_s", *STATE_COLUMNS])
        self.starts = Probe("start_s", "right", edges, ["dur", "energy_j"], ["start_s", "dur", "energy_j"])
        scan(_with_areas(chunks()), [self.ends, self.starts], [*areas, "dur", "energy_j"])

    def state(self, column: str) -> np.ndarray:
        p, edges = self.ends, self.edges
        area = np.where(p.count > 0, p.before[f"area_{column}"] + p.last[column] * (edges - p.last["end_s"]),
                        0.0)
        return np.diff(area) / np.diff(edges)

    def busy(self) -> np.ndarray:
        p, edges = self.starts, self.edges
        with np.errstate(invalid="ignore"):
            within = np.clip(edges - p.last["start_s"], 0.0, p.last["dur"])
            busy = np.where(p.count > 0, p.before["dur"] + within, 0.0)
        return np.diff(busy) / np.diff(edges)

    def power(self) -> np.ndarray:
        return np.diff(spread_at(self.starts, "energy_j", self.edges)) / np.diff(self.edges)


def _with_areas(pieces):
    """Pieces with each row's state area up to the next row's end (`value x gap`; 0 for the last
    row), duration and joules: one piece of look-ahead."""
    held = None
    for piece in pieces:
        if not len(piece):
            continue
        if held is not None:
            yield _areas(held, float(piece["end_s"][0]))
        held = piece
    if held is not None:
        yield _areas(held, None)


def _areas(rows, next_end: float | None) -> dict[str, np.ndarray]:
    t = np.asarray(rows["end_s"], dtype=float)
    gap = np.zeros(len(t))
    gap[:-1] = np.diff(t)
    if next_end is not None:
        gap[-1] = next_end - t[-1]
    start = np.asarray(rows["start_s"], dtype=float)
    out = {"end_s": t, "start_s": start, "dur": np.asarray(rows["end_s"], dtype=float) - start,
           "energy_j": np.asarray(rows["energy_j"], dtype=float)}
    for c in STATE_COLUMNS:
        out[c] = np.asarray(rows[c], dtype=float)
        out[f"area_{c}"] = out[c] * gap
    return out


def with_elastic_columns(frame: pd.DataFrame, log, end_s: float) -> pd.DataFrame:
    """Add the elastic fleet's columns (`metrics.lifecycle.ELASTIC_COLUMNS`) to a time series."""
    import pandas as pd

    from servesim.metrics.lifecycle import ELASTIC_COLUMNS, elastic_columns

    if frame.empty:
        return frame.reindex(columns=[*frame.columns, *ELASTIC_COLUMNS])
    times = np.sort(frame["time_s"].unique())
    dt = times[1] - times[0] if len(times) > 1 else max(end_s, 1.0)
    edges = np.append(times, times[-1] + dt)
    parts = []
    for instance, rows in frame.groupby("instance", sort=True):
        cols = elastic_columns(log, edges, int(instance), end_s)
        rows = rows.sort_values("time_s").copy()
        for name in ELASTIC_COLUMNS:
            rows[name] = cols[name][: len(rows)]
        parts.append(rows)
    return pd.concat(parts, ignore_index=True)
