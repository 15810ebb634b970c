"""Chrome / Perfetto trace export (`trace.json`): open it at ui.perfetto.dev or chrome://tracing.

One process per instance. Its `steps` thread shows every engine step (a run of identical decode
steps is one slice, `decode x k`); counter tracks show the waiting queue, the running batch and KV
usage after each step, and, with prefix caching, the tokens each KV tier holds, cumulative hits
per tier and cumulative GB moved on the tier links; each request is an async slice from arrival
to finish, split into `queued` (arrival -> first step that computes it), `prefill` (-> first
token) and `decode` (-> last token). Rejected requests are instant events. Disaggregated, a
request has two slices: queued and prefill on its prefill instance (until the handoff), then
`kv transfer` (handoff -> first token) and decode on its decode instance.

Size is bounded: at most `max_steps` step rows and `max_requests` requests (the earliest ones) are
exported (about 100 bytes per trace event), so the defaults stay near 10 MB at most.
`otherData` in the file says what was cut.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from servesim.core.files import write_file

MAX_STEPS = 20_000
MAX_REQUESTS = 5_000
_US = 1e6


def chrome_trace(result, max_steps: int = MAX_STEPS, max_requests: int = MAX_REQUESTS) -> dict:
    """The trace of a `SimulationResult` as a Chrome trace-event dict (with the fleet's states,
    faults and migrations when the run was elastic)."""
    trace = trace_from_frames(
        result.requests, result.steps, max_steps, max_requests, getattr(result, "tiers", None)
    )
    log = getattr(result, "lifecycle", None)
    if log is not None:
        from servesim.studies.timeline_elastic import elastic_events

        events = log.frame()
        known = {e["pid"] for e in trace["traceEvents"] if e.get("name") == "process_name"}
        for i in sorted(int(i) for i in events["instance"].unique() if i >= 0):
            if _pid(i) not in known:
                trace["traceEvents"] += _process_meta(i)
        end = float(result.summary["sim"]["simulated_s"])
        trace["traceEvents"] += elastic_events(events, log.migration_frame(), end, _pid)
    return trace


def write_chrome_trace(
    result, path: str | Path, max_steps: int = MAX_STEPS, max_requests: int = MAX_REQUESTS
) -> Path:
    text = json.dumps(chrome_trace(result, max_steps, max_requests), separators=(",", ":"))
    return write_file(path, lambda p: p.write_text(text))


def trace_from_frames(
    requests: pd.DataFrame, steps: pd.DataFrame, max_steps: int = MAX_STEPS,
    max_requests: int = MAX_REQUESTS, tiers: pd.DataFrame | None = None,
) -> dict:
    if max_steps < 0 or max_requests < 0:
        raise ValueError("max_steps and max_requests must be >= 0")
    steps_kept = steps.sort_values(["start_s", "instance"], kind="stable").head(max_steps)
    reqs_kept = requests.sort_values(["arrival_s", "request_id"], kind="stable").head(max_requests)
    end_of_time = float(max(steps["end_s"].max() if len(steps) else 0.0,
                            requests["finish_s"].max() if len(requests) else 0.0) or 0.0)
    instances = sorted(set(steps_kept["instance"].tolist()) | set(reqs_kept["instance"].tolist()))
    events = []
    for i in instances:
        events += _process_meta(i)
    events += _step_events(steps_kept)
    if tiers is not None and len(tiers):
        kept = tiers.sort_values(["time_s", "instance"], kind="stable").head(max_steps)
        events += _tier_events(kept[kept["instance"].isin(instances)])
    events += _request_events(reqs_kept, end_of_time)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "generator": "servesim",
            "steps": f"{len(steps_kept)} of {len(steps)} step rows",
            "requests": f"{len(reqs_kept)} of {len(requests)} requests",
        },
    }


def _process_meta(i: int) -> list[dict]:
    pid = _pid(i)
    name = f"instance {i}" if i >= 0 else "unrouted"
    return [
        {"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}},
        {"ph": "M", "name": "process_sort_index", "pid": pid, "args": {"sort_index": pid}},
        {"ph": "M", "name": "thread_name", "pid": pid, "tid": 0, "args": {"name": "steps"}},
    ]


def _step_events(steps: pd.DataFrame) -> list[dict]:
    out = []
    cols = ["instance", "start_s", "end_s", "num_steps", "num_prefill_tokens", "num_decodes",
            "num_running", "num_waiting", "kv_usage"]
    for i, start, end, k, prefill, decodes, running, waiting, kv in steps[cols].itertuples(index=False):
        pid, ts = _pid(i), _ts(start)
        if prefill and decodes:
            name = "prefill+decode"
        elif prefill:
            name = "prefill"
        else:
            name = "decode" if k == 1 else f"decode x {k}"
        out.append({
            "ph": "X", "name": name, "cat": "step", "pid": pid, "tid": 0, "ts": ts,
            "dur": round(_ts(end) - ts, 3),
            "args": {"steps": int(k), "prefill_tokens": int(prefill), "decodes": int(decodes)},
        })
        t_end = _ts(end)
        out.append({"ph": "C", "name": "requests", "pid": pid, "ts": t_end,
                    "args": {"waiting": int(waiting), "running": int(running)}})
        out.append({"ph": "C", "name": "kv_usage", "pid": pid, "ts": t_end,
                    "args": {"kv_usage": round(float(kv), 4)}})
    return out


def _tier_events(tiers: pd.DataFrame) -> list[dict]:
    """Counter tracks per instance: tokens each KV tier holds, cumulative hits per tier and
    cumulative GB moved on each tier link (see metrics.kv_tiers.TierLog)."""
    out = []
    for row in tiers.itertuples(index=False):
        pid, ts = _pid(row.instance), _ts(row.time_s)
        out.append({"ph": "C", "name": "kv tiers (tokens)", "pid": pid, "ts": ts, "args": {
            "gpu": int(row.gpu_cached_tokens), "dram": int(row.dram_tokens),
            "ssd": int(row.ssd_tokens), "pool": int(row.pool_tokens)}})
        out.append({"ph": "C", "name": "kv hits (tokens)", "pid": pid, "ts": ts, "args": {
            t: int(getattr(row, f"hit_{t}_tokens")) for t in ("gpu", "dram", "ssd", "pool")}})
        out.append({"ph": "C", "name": "kv transfers (GB)", "pid": pid, "ts": ts, "args": {
            t: round(float(getattr(row, f"{t}_bytes")) / 1e9, 6) for t in ("dram", "ssd", "pool")}})
    return out


def _request_events(requests: pd.DataFrame, end_of_time: float) -> list[dict]:
    out = []
    has_sched = "first_scheduled_s" in requests
    has_prefill_side = "prefill_instance" in requests
    for row in requests.itertuples(index=False):
        rid, pid, arrival = int(row.request_id), _pid(row.instance), float(row.arrival_s)
        if row.status == "rejected":
            out.append({"ph": "i", "s": "p", "name": f"rejected #{rid}", "cat": "request",
                        "pid": pid, "tid": 0, "ts": _ts(arrival),
                        "args": {"reason": row.rejected_reason, "prompt_tokens": int(row.prompt_tokens)}})
            continue
        sched = float(row.first_scheduled_s) if has_sched else math.nan
        first, finish = float(row.first_token_s), float(row.finish_s)
        finish = finish if math.isfinite(finish) else end_of_time
        front = [("queued", arrival, sched if math.isfinite(sched) else _nan_to(first, finish))]
        if math.isfinite(sched):
            front.append(("prefill", sched, first if math.isfinite(first) else finish))
        args = {"prompt_tokens": int(row.prompt_tokens), "output_tokens": int(row.output_tokens),
                "status": row.status, "preemptions": int(row.preemptions)}
        prefill_pid = _pid(row.prefill_instance) if has_prefill_side else pid
        if has_prefill_side and row.prefill_instance >= 0 and prefill_pid != pid:
            # disaggregated: queue and prefill on the prefill instance, decode on the decode one
            handoff = float(row.handoff_s)
            prefill_end = handoff if math.isfinite(handoff) else _nan_to(first, finish)
            front = [(n, a, min(b, prefill_end)) for n, a, b in front]
            out += _segment(prefill_pid, f"{rid}-prefill", f"request #{rid} (prefill)",
                            arrival, prefill_end, front, args)
            if math.isfinite(handoff):
                start_decode = max(handoff, _nan_to(first, handoff))
                back = [("kv transfer", handoff, start_decode), ("decode", start_decode, finish)]
                out += _segment(pid, rid, f"request #{rid}", handoff, finish, back, args)
            continue
        phases = front + ([("decode", first, finish)] if math.isfinite(first) else [])
        out += _segment(pid, rid, f"request #{rid}", arrival, finish, phases, args)
    return out


def _segment(pid, async_id, name, t0, t1, phases, args) -> list[dict]:
    """A parent async slice with its phases nested inside: begin, phases, end (viewers pair async
    begins and ends by nesting order)."""
    whole = _async(pid, async_id, name, t0, t1, args)
    out = [whole[0]]
    for phase, p0, p1 in phases:
        if p1 > p0:
            out += _async(pid, async_id, phase, p0, p1)
    out.append(whole[1])
    return out


def _async(pid: int, rid, name: str, t0: float, t1: float, args: dict | None = None) -> list[dict]:
    begin = {"ph": "b", "name": name, "cat": "request", "id": rid, "pid": pid, "ts": _ts(t0)}
    if args:
        begin["args"] = args
    end = {"ph": "e", "name": name, "cat": "request", "id": rid, "pid": pid, "ts": _ts(t1)}
    return [begin, end]


def _nan_to(value: float, fallback: float) -> float:
    return value if math.isfinite(value) else fallback


def _pid(instance) -> int:
    return int(instance) + 1  # pid 0 is reserved in some viewers; instance -1 (never routed) -> 0


def _ts(seconds: float) -> float:
    return round(float(seconds) * _US, 3)
