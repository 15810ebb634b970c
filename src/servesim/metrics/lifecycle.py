"""The elastic fleet's event log: instance states over time, slowdowns, link degradation and
migrations, and what summary.json and timeseries.csv derive from it.

An instance is *up* (billed) while `starting` (a cold start), `serving` (taking arrivals) or
`draining` (finishing its requests before it stops); `off` and `failed` are down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the frames are made only for elastic runs
    import pandas as pd

UP_STATES = ("starting", "serving", "draining")
STATES = (*UP_STATES, "off", "failed")
EVENT_COLUMNS = ["time_s", "instance", "event", "value"]
MIGRATION_COLUMNS = ["request_id", "source", "dest", "start_s", "end_s", "bytes"]
ELASTIC_COLUMNS = ["up_frac", "serving_frac", "cold_starts", "failures", "slowdown",
                   "migrated_in", "migrated_out"]


@dataclass
class LifecycleLog:
    """Events are (time_s, instance, event, value): a state name (value 0; `starting` carries 1
    for a cold start), `slowdown` (value: the step-time factor, 1 when it ends) or
    `link_bandwidth_factor` (instance -1; value: the divisor, 1 when it ends)."""

    events: list[tuple] = field(default_factory=list)
    migrations: list[tuple] = field(default_factory=list)

    def state(self, time_s: float, instance: int, state: str, cold: bool = False) -> None:
        assert state in STATES
        self.events.append((time_s, instance, state, 1.0 if cold else 0.0))

    def mark(self, time_s: float, instance: int, event: str, value: float) -> None:
        self.events.append((time_s, instance, event, value))

    def migration(self, request_id, source, dest, start_s, end_s, num_bytes) -> None:
        self.migrations.append((request_id, source, dest, start_s, end_s, num_bytes))

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.events, columns=EVENT_COLUMNS)

    def migration_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.migrations, columns=MIGRATION_COLUMNS)


def up_intervals(events: pd.DataFrame, end_s: float) -> list[tuple[int, float, float]]:
    """(instance, start, end) of every period an instance was up, clipped at `end_s`."""
    out = []
    states = events[events["event"].isin(STATES)]
    for instance, rows in states.groupby("instance", sort=True):
        since = None
        for t, state in zip(rows["time_s"], rows["event"]):
            if state in UP_STATES and since is None:
                since = t
            elif state not in UP_STATES and since is not None:
                out.append((int(instance), since, min(t, end_s)))
                since = None
        if since is not None:
            out.append((int(instance), since, end_s))
    return [(i, a, b) for i, a, b in out if b > a]


def fleet_summary(log: LifecycleLog, end_s: float) -> dict:
    """`cluster` entries of summary.json: instance-seconds, cold starts, failures, migrations."""
    events = log.frame()
    moves = log.migration_frame()
    intervals = up_intervals(events, end_s)
    up = sum(b - a for _, a, b in intervals)
    starting = events[events["event"] == "starting"]
    cold = sum(b - a for _, a, b in _state_intervals(events, {"starting"}, end_s, by_instance=True))
    return {
        "instance_seconds": float(up),
        "instance_hours": float(up / 3600),
        "cold_starts": int((starting["value"] > 0).sum()),
        "cold_start_seconds": float(cold),
        "failures": int((events["event"] == "failed").sum()),
        "peak_instances": _peak_up(intervals),
        "migrations": int(len(moves)),
        "migrated_bytes": float(moves["bytes"].sum()) if len(moves) else 0.0,
    }


def _peak_up(intervals) -> int:
    points = sorted([(a, 1) for _, a, _ in intervals] + [(b, -1) for _, _, b in intervals])
    peak = count = 0
    for _, step in points:
        count += step
        peak = max(peak, count)
    return peak


def elastic_columns(log: LifecycleLog, edges: np.ndarray, instance: int, end_s: float) -> dict:
    """Per-bin columns of one instance: shares of the bin up and serving, events in the bin,
    the mean step-time factor, requests migrated in and out."""
    events = log.frame()
    mine = events[events["instance"] == instance]
    up = _share(up_intervals(mine, end_s), edges)
    serving = _share(_state_intervals(mine, {"serving"}, end_s), edges)
    slow = _slowdown_share(mine, edges, end_s)
    moves = log.migration_frame()
    return {
        "up_frac": up,
        "serving_frac": serving,
        "cold_starts": _count(mine[(mine["event"] == "starting") & (mine["value"] > 0)]["time_s"], edges),
        "failures": _count(mine[mine["event"] == "failed"]["time_s"], edges),
        "slowdown": slow,
        "migrated_in": _count(moves[moves["dest"] == instance]["end_s"], edges),
        "migrated_out": _count(moves[moves["source"] == instance]["start_s"], edges),
    }


def _state_intervals(events: pd.DataFrame, states: set, end_s: float, by_instance=False):
    """(instance, start, end) periods in `states`; one instance's events unless `by_instance`."""
    if by_instance:
        return [iv for i, rows in events.groupby("instance", sort=True)
                for iv in _state_intervals(rows, states, end_s)]
    rows = events[events["event"].isin(STATES)]
    out, since = [], None
    for t, state in zip(rows["time_s"], rows["event"]):
        if state in states and since is None:
            since = t
        elif state not in states and since is not None:
            out.append((0, since, min(t, end_s)))
            since = None
    if since is not None:
        out.append((0, since, end_s))
    return [iv for iv in out if iv[2] > iv[1]]


def _share(intervals, edges: np.ndarray) -> np.ndarray:
    """Share of each bin covered by the intervals."""
    covered = np.zeros(len(edges) - 1)
    for _, a, b in intervals:
        covered += np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0.0, None)
    return covered / np.diff(edges)


def _slowdown_share(events: pd.DataFrame, edges: np.ndarray, end_s: float) -> np.ndarray:
    """Time-weighted mean step-time factor per bin (1 outside slowdowns)."""
    rows = events[events["event"] == "slowdown"]
    extra = np.zeros(len(edges) - 1)
    times, values = rows["time_s"].tolist(), rows["value"].tolist()
    for k, (t, v) in enumerate(zip(times, values)):
        stop = times[k + 1] if k + 1 < len(times) else end_s
        if v != 1.0:
            extra += (v - 1.0) * _share([(0, t, stop)], edges)
    return 1.0 + extra


def _count(times: pd.Series, edges: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(times.to_numpy(float), bins=edges)
    return counts


def elastic_energy_and_rent(log: LifecycleLog, per_instance: pd.DataFrame, pools: list[dict],
                            end_s: float) -> tuple[pd.DataFrame, list[dict]]:
    """An elastic fleet draws idle power only while an instance is up (`metrics.energy` assumes
    every instance all run long), and is rented by the instance-hour: the pool table's
    `instances` becomes the mean fleet size (instance-seconds / run time), so rent = price x
    instance-hours. (Carbon still spreads every slot's idle power over the run.)"""
    up = np.zeros(len(per_instance))
    for i, a, b in up_intervals(log.frame(), end_s):
        if i < len(up):
            up[i] += b - a
    frame = per_instance.copy()
    frame["idle_j"] = frame["idle_w"] * np.maximum(0.0, up - frame["busy_s"])
    frame["total_j"] = frame["busy_j"] + frame["idle_j"]
    mean_fleet = up.sum() / end_s if end_s > 0 else 0.0
    return frame, [{**pools[0], "instances": mean_fleet}]
