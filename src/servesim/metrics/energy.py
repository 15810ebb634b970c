"""Energy accounting from the step log: per instance (idle time included), per request, per token.

Each step-log row carries the joules of its step (or run of identical decode steps), priced by the
instance's power model. Between steps an instance draws its idle power. A request is charged, for
every step it took part in, the step's joules times its share of the step's tokens: its prompt tokens
in the steps between its first scheduling and its first token (on the instance that prefilled it), and
one token in each step from its first token to its finish (on the instance that decoded it). The
prefill share uses those steps' joules per token, which is exact when the prompt ran in one step and an
average over its chunks otherwise; the shares add up to the busy energy up to that averaging and to
steps spent on requests that did not finish.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from servesim.metrics.columns import Columns
from servesim.metrics.step_scan import Probe, instance_chunks, rows_by_instance, scan  # noqa: F401

if TYPE_CHECKING:  # tables: a frame or `metrics.columns.Columns`, both indexed by column name
    pass


def _col(table, name: str, dtype=float) -> np.ndarray:
    return np.asarray(table[name], dtype=dtype)


def _pieces(steps):
    """The log's rows in log order: a table as one piece, a `StepLog` chunk by chunk."""
    if hasattr(steps, "chunks"):
        return steps.chunks() if steps.enabled else iter(())
    return iter([steps] if len(steps) else [])


def instance_energy(steps, idle_w: list[float | None], horizon_s: float) -> Columns:
    """One row per instance: busy seconds and joules, idle joules, total joules (None-power: NaN).
    `steps`: the step log as a table, or the `StepLog` itself (read a piece at a time)."""
    n = len(idle_w)
    busy_s, busy_j = np.zeros(n), np.zeros(n)
    for piece in _pieces(steps):  # in log order: each instance's sums add as over the whole log
        idx = _col(piece, "instance", int)
        np.add.at(busy_s, idx, _col(piece, "end_s") - _col(piece, "start_s"))
        np.add.at(busy_j, idx, _col(piece, "energy_j"))
    idle = np.array([math.nan if w is None else w for w in idle_w], dtype=float)
    idle_j = idle * np.maximum(0.0, horizon_s - busy_s)
    busy_j = np.where(np.isnan(idle), math.nan, busy_j)
    return Columns({
        "instance": np.arange(n), "idle_w": idle, "busy_s": busy_s, "busy_j": busy_j, "idle_j": idle_j,
        "total_j": busy_j + idle_j,
    })


def energy_summary(per_instance, requests, horizon_s: float, pool_of: list[str]) -> dict:
    """The summary's `energy` block; null values when no instance has a power model."""
    total_j = _col(per_instance, "total_j")
    known = ~np.isnan(total_j)
    if not known.any():
        return {"total_j": None, "avg_power_w": None, "j_per_output_token": None}
    total = float(total_j[known].sum())
    completed = int((np.asarray(requests["status"]) == "completed").sum())
    tokens = float(np.asarray(requests["generated_tokens"]).sum())
    pools: dict[str, dict] = {}
    rows = zip(*(_col(per_instance, c).tolist() for c in ("idle_w", "busy_j", "idle_j", "total_j")))
    for (idle_w, busy_j, idle_j, row_j), pool in zip(rows, pool_of):
        if math.isnan(row_j):
            continue
        p = pools.setdefault(pool, {"instances": 0, "idle_w_per_instance": idle_w, "total_j": 0.0,
                                    "busy_j": 0.0, "idle_j": 0.0})
        p["instances"] += 1
        p["total_j"] += row_j
        p["busy_j"] += busy_j
        p["idle_j"] += idle_j
    for p in pools.values():
        p["avg_power_w"] = p["total_j"] / horizon_s if horizon_s > 0 else math.nan
    return {
        "total_j": total,
        "avg_power_w": total / horizon_s if horizon_s > 0 else math.nan,
        "j_per_output_token": total / tokens if tokens else math.nan,
        "busy_j": float(_col(per_instance, "busy_j")[known].sum()),
        "idle_j": float(_col(per_instance, "idle_j")[known].sum()),
        "kwh": total / 3.6e6,
        "j_per_request": total / completed if completed else math.nan,
        "kwh_per_1k_requests": total / 3.6e6 / completed * 1000 if completed else math.nan,
        "pools": pools,
    }


def request_energy(steps, requests) -> np.ndarray:
    """Joules charged to each request (row order of `requests`); see the module doc. `steps`: the
    step log as a table, or the `StepLog` itself (read a piece at a time: `metrics.step_scan`)."""
    out = np.zeros(len(requests))
    if not len(requests):
        return out
    first = _col(requests, "first_token_s")
    finish = np.nan_to_num(_col(requests, "finish_s"), nan=np.inf)
    scheduled = _col(requests, "first_scheduled_s")
    decode_inst = _col(requests, "instance")
    prefill_inst = decode_inst
    if "prefill_instance" in requests:
        pi = _col(requests, "prefill_instance")
        prefill_inst = np.where(np.isnan(pi) | (pi < 0), decode_inst, pi)
    for inst, chunks in instance_chunks(steps).items():
        mine = np.flatnonzero((decode_inst == inst) & ~np.isnan(first))
        for here in _batches(mine):
            lo, hi = (Probe("start_s", "left", first[here], ["decode_j"]),
                      Probe("end_s", "right", finish[here], ["decode_j"]))
            scan(map(_with_energy_sums, chunks()), [lo, hi], ["decode_j"])
            lo_j = np.where(lo.count <= hi.count, lo.at["decode_j"], hi.at["decode_j"])
            out[here] += np.maximum(0.0, hi.at["decode_j"] - lo_j)
        mine = np.flatnonzero((prefill_inst == inst) & ~np.isnan(first) & ~np.isnan(scheduled))
        for pre in _batches(mine):
            lo, hi = (Probe("start_s", "left", scheduled[pre], ["energy_j", "tokens"]),
                      Probe("end_s", "right", first[pre], ["energy_j", "tokens"]))
            scan(map(_with_energy_sums, chunks()), [lo, hi], ["energy_j", "tokens"])
            below = lo.count <= hi.count
            span_j = hi.at["energy_j"] - np.where(below, lo.at["energy_j"], hi.at["energy_j"])
            span_tok = hi.at["tokens"] - np.where(below, lo.at["tokens"], hi.at["tokens"])
            rate = np.divide(span_j, span_tok, out=np.zeros_like(span_j), where=span_tok > 0)
            prompt = _col(requests, "prompt_tokens", np.int64)[pre]
            prompt -= _col(requests, "cached_tokens", np.int64)[pre]
            out[pre] += rate * prompt.astype(float)
    return out


REQUEST_BATCH = 1 << 18
"""Requests whose energy one pass over the log settles: a pass's probes take ~100 bytes a request,
so a long run's requests go in batches (each batch reads the log again)."""


def _batches(rows: np.ndarray):
    return (rows[i : i + REQUEST_BATCH] for i in range(0, len(rows), REQUEST_BATCH))


def _with_energy_sums(rows) -> dict[str, np.ndarray]:
    """A piece of the log with what request energy sums: start, end, joules, tokens (its prefill
    tokens plus its decodes in each of its steps) and decode joules (joules per token x steps)."""
    num_steps = _col(rows, "num_steps")  # integers as floats: exact, as is their product
    tokens = num_steps * _col(rows, "num_decodes")
    tokens += _col(rows, "num_prefill_tokens")
    joules = _col(rows, "energy_j")
    decode_j = np.divide(joules, tokens, out=np.zeros_like(joules), where=tokens > 0)
    decode_j *= num_steps
    return {"start_s": _col(rows, "start_s"), "end_s": _col(rows, "end_s"), "energy_j": joules,
            "tokens": tokens, "decode_j": decode_j}


def energy_in_intervals(steps, idle_w: list[float | None], edges: np.ndarray) -> np.ndarray:
    """Cluster joules in each interval [edges[k], edges[k+1]): steps pro rata, idle power between.
    `steps`: the step log as a table, or the `StepLog` itself (read a piece at a time)."""
    edges = np.asarray(edges, dtype=float)
    total = np.zeros(len(edges) - 1)
    by_instance = instance_chunks(steps)
    for i, w in enumerate(idle_w):
        if w is None:
            continue
        chunks = by_instance.get(i)
        if chunks is None:
            total += w * np.diff(edges)
            continue
        probe = Probe("start_s", "right", edges, ["dur", "energy_j"], ["start_s", "dur", "energy_j"])
        scan(map(_with_duration, chunks()), [probe], ("dur", "energy_j"))
        busy = np.diff(spread_at(probe, "dur", edges))
        steps_j = np.diff(spread_at(probe, "energy_j", edges))
        total += steps_j + w * (np.diff(edges) - busy)
    return total


def _with_duration(rows) -> dict[str, np.ndarray]:
    start = _col(rows, "start_s")
    return {"start_s": start, "dur": _col(rows, "end_s") - start, "energy_j": _col(rows, "energy_j")}


def spread_at(probe: Probe, column: str, at: np.ndarray) -> np.ndarray:
    """`spread_cumulative` of `column` at the probe's times, from the probe's sums and last rows."""
    dur, amount, start = probe.last["dur"], probe.last[column], probe.last["start_s"]
    rate = np.divide(amount, dur, out=np.zeros_like(amount), where=dur > 0)
    with np.errstate(invalid="ignore"):
        return np.where(probe.count > 0, probe.before[column] + rate * np.clip(at - start, 0.0, dur), 0.0)


def spread_cumulative(start: np.ndarray, dur: np.ndarray, amount: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Cumulative amount at times `at`, each row's amount spread evenly over its [start, start + dur)."""
    cum = np.zeros(len(amount) + 1)
    np.cumsum(amount, out=cum[1:])
    k = np.searchsorted(start, at, side="right") - 1
    kk = np.clip(k, 0, None)
    dur, amount = dur[kk], amount[kk]  # the rows the times fall in: rates of these only
    rate = np.divide(amount, dur, out=np.zeros_like(amount), where=dur > 0)
    return np.where(k >= 0, cum[kk] + rate * np.clip(at - start[kk], 0.0, dur), 0.0)
