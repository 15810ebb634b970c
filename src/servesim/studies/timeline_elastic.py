"""Perfetto tracks of an elastic run: each instance's states (cold start, serving, draining,
failed) and straggler periods as slices, failures as instant events, migrations as slices joined
by flow arrows from the source instance to the destination (`studies.timeline` adds them)."""

from __future__ import annotations

import pandas as pd

from servesim.metrics.lifecycle import STATES

LIFECYCLE_TID, SLOWDOWN_TID, MIGRATION_TID = 1, 2, 3
_THREADS = {LIFECYCLE_TID: "lifecycle", SLOWDOWN_TID: "slowdown", MIGRATION_TID: "migrations"}
_LABEL = {"starting": "cold start", "serving": "serving", "draining": "draining", "failed": "failed"}
_US = 1e6


def _ts(seconds: float) -> float:
    return round(float(seconds) * _US, 3)


def elastic_events(events: pd.DataFrame, migrations: pd.DataFrame, end_s: float, pid_of) -> list[dict]:
    out = []
    instances = sorted(int(i) for i in events["instance"].unique() if i >= 0)
    for i in instances:
        for tid, name in _THREADS.items():
            out.append({"ph": "M", "name": "thread_name", "pid": pid_of(i), "tid": tid,
                        "args": {"name": name}})
        mine = events[events["instance"] == i]
        out += _state_slices(mine, end_s, pid_of(i))
        out += _slowdown_slices(mine, end_s, pid_of(i))
    lanes: dict[int, list[float]] = {}  # per pid, when each migrations lane is free again
    for k, m in enumerate(migrations.sort_values(["start_s", "end_s"]).itertuples(index=False)):
        src, dst = pid_of(int(m.source)), pid_of(int(m.dest))
        out += _migration(k, m, src, _lane(lanes, src, m.start_s, m.end_s),
                          dst, _lane(lanes, dst, m.end_s, m.end_s + 1e-6))
    for pid, ends in lanes.items():
        out += [{"ph": "M", "name": "thread_name", "pid": pid, "tid": MIGRATION_TID + k,
                 "args": {"name": f"migrations {k}" if k else "migrations"}}
                for k in range(1, len(ends))]
    return out


def _lane(lanes: dict[int, list[float]], pid: int, start: float, end: float) -> int:
    """The thread of a migration slice: the first of the pid's lanes free at `start` (slices on
    one thread must nest, and concurrent transfers overlap)."""
    ends = lanes.setdefault(pid, [])
    for k, free_at in enumerate(ends):
        if free_at <= start:
            ends[k] = end
            return MIGRATION_TID + k
    ends.append(end)
    return MIGRATION_TID + len(ends) - 1


def _state_slices(events: pd.DataFrame, end_s: float, pid: int) -> list[dict]:
    rows = events[events["event"].isin(STATES)]
    out = []
    times, states = rows["time_s"].tolist(), rows["event"].tolist()
    for k, (t, state) in enumerate(zip(times, states)):
        stop = times[k + 1] if k + 1 < len(times) else end_s
        if state == "failed":
            out.append({"ph": "i", "s": "p", "name": "instance failed", "cat": "lifecycle",
                        "pid": pid, "tid": LIFECYCLE_TID, "ts": _ts(t)})
        if state in _LABEL and stop > t:
            out.append({"ph": "X", "name": _LABEL[state], "cat": "lifecycle", "pid": pid,
                        "tid": LIFECYCLE_TID, "ts": _ts(t), "dur": round(_ts(stop) - _ts(t), 3)})
    return out


def _slowdown_slices(events: pd.DataFrame, end_s: float, pid: int) -> list[dict]:
    rows = events[events["event"] == "slowdown"]
    out = []
    times, values = rows["time_s"].tolist(), rows["value"].tolist()
    for k, (t, v) in enumerate(zip(times, values)):
        stop = times[k + 1] if k + 1 < len(times) else end_s
        if v != 1.0 and stop > t:
            out.append({"ph": "X", "name": f"straggler x{v:g}", "cat": "fault", "pid": pid,
                        "tid": SLOWDOWN_TID, "ts": _ts(t), "dur": round(_ts(stop) - _ts(t), 3)})
    return out


def _migration(k: int, m, src: int, src_tid: int, dst: int, dst_tid: int) -> list[dict]:
    rid = int(m.request_id)
    t0, t1 = _ts(m.start_s), _ts(m.end_s)
    args = {"request": rid, "bytes": float(m.bytes)}
    flow = f"migration-{k}"
    return [
        {"ph": "X", "name": f"migrate out #{rid}", "cat": "migration", "pid": src,
         "tid": src_tid, "ts": t0, "dur": round(t1 - t0, 3), "args": args},
        {"ph": "s", "name": "migration", "cat": "migration", "id": flow, "pid": src,
         "tid": src_tid, "ts": t0},
        {"ph": "X", "name": f"migrate in #{rid}", "cat": "migration", "pid": dst,
         "tid": dst_tid, "ts": t1, "dur": 1.0, "args": args},
        {"ph": "f", "bp": "e", "name": "migration", "cat": "migration", "id": flow, "pid": dst,
         "tid": dst_tid, "ts": t1},
    ]
