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

if TYPE_CHECKING:  # tables: a frame or `metrics.columns.Columns`, both indexed by column name
    pass


def _col(table, name: str, dtype=float) -> np.ndarray:
    return np.asarray(table[name], dtype=dtype)


def rows_by_instance(steps, by_start: bool = False) -> dict[int, np.ndarray | slice]:
    """Row indices of each instance's steps, instances in order of first appearance; each in log
    order, or (`by_start`) ordered by start time as a frame's `sort_values("start_s")` orders them.
    A log of one instance whose starts only increase gives a slice (views, no index arrays: a long
    run's log is millions of rows)."""
    if not len(steps):
        return {}
    raw = np.asarray(steps["instance"])
    if raw.dtype.kind in "iu" and raw.min() == raw.max():
        start = _col(steps, "start_s")
        if not by_start or bool(np.all(start[1:] > start[:-1])):  # distinct starts: one order
            return {int(raw[0]): slice(0, len(raw))}
    inst = _col(steps, "instance", np.int64)
    _, first = np.unique(inst, return_index=True)
    out = {}
    start = _col(steps, "start_s") if by_start else None
    for i in np.sort(first):
        idx = np.flatnonzero(inst == inst[i])
        out[int(inst[i])] = idx[np.argsort(start[idx], kind="quicksort")] if by_start else idx
    return out


def instance_energy(steps, idle_w: list[float | None], horizon_s: float) -> Columns:
    """One row per instance: busy seconds and joules, idle joules, total joules (None-power: NaN)."""
    n = len(idle_w)
    busy_s, busy_j = np.zeros(n), np.zeros(n)
    if len(steps):
        idx = _col(steps, "instance", int)
        np.add.at(busy_s, idx, _col(steps, "end_s") - _col(steps, "start_s"))
        np.add.at(busy_j, idx, _col(steps, "energy_j"))
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
    """Joules charged to each request (row order of `requests`); see the module doc."""
    out = np.zeros(len(requests))
    if not len(steps) or not len(requests):
        return out
    first = _col(requests, "first_token_s")
    finish = np.nan_to_num(_col(requests, "finish_s"), nan=np.inf)
    scheduled = _col(requests, "first_scheduled_s")
    decode_inst = _col(requests, "instance")
    prefill_inst = decode_inst
    if "prefill_instance" in requests:
        pi = _col(requests, "prefill_instance")
        prefill_inst = np.where(np.isnan(pi) | (pi < 0), decode_inst, pi)
    for inst, order in rows_by_instance(steps, by_start=True).items():
        start, end = _col(steps, "start_s")[order], _col(steps, "end_s")[order]
        cum_dec, cum_j, cum_tok = _energy_sums(steps, order, len(start))
        here = (decode_inst == inst) & ~np.isnan(first)
        lo = np.searchsorted(start, first[here], side="left")
        hi = np.searchsorted(end, finish[here], side="right")
        out[here] += np.maximum(0.0, cum_dec[hi] - cum_dec[np.minimum(lo, hi)])
        pre = (prefill_inst == inst) & ~np.isnan(first) & ~np.isnan(scheduled)
        lo = np.searchsorted(start, scheduled[pre], side="left")
        hi = np.searchsorted(end, first[pre], side="right")
        lo = np.minimum(lo, hi)
        span_j = cum_j[hi] - cum_j[lo]
        span_tok = cum_tok[hi] - cum_tok[lo]
        rate = np.divide(span_j, span_tok, out=np.zeros_like(span_j), where=span_tok > 0)
        prompt = _col(requests, "prompt_tokens", np.int64)[pre] - _col(requests, "cached_tokens", np.int64)[pre]
        out[pre] += rate * prompt.astype(float)
    return out


def _energy_sums(steps, rows, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative decode joules, joules and tokens over `rows` (each with a leading 0). A step's
    tokens are its prefill tokens plus its decodes in each of its steps; its decode joules are
    its joules per token times its steps. Built with few row-sized temporaries."""
    num_steps = _col(steps, "num_steps")[rows]  # integers as floats: exact, as is their product
    tokens = num_steps * _col(steps, "num_decodes")[rows]  # a new array: the log is never written
    tokens += _col(steps, "num_prefill_tokens")[rows]
    joules = _col(steps, "energy_j")[rows]
    cum_j, cum_tok, cum_dec = np.zeros(n + 1), np.zeros(n + 1), np.zeros(n + 1)
    np.cumsum(joules, out=cum_j[1:])
    np.cumsum(tokens, out=cum_tok[1:])
    per_token = np.divide(joules, tokens, out=np.zeros_like(joules), where=tokens > 0)
    del tokens
    per_token *= num_steps
    np.cumsum(per_token, out=cum_dec[1:])
    return cum_dec, cum_j, cum_tok


def energy_in_intervals(steps, idle_w: list[float | None], edges: np.ndarray) -> np.ndarray:
    """Cluster joules in each interval [edges[k], edges[k+1]): steps pro rata, idle power between."""
    edges = np.asarray(edges, dtype=float)
    total = np.zeros(len(edges) - 1)
    by_instance = rows_by_instance(steps, by_start=True)
    for i, w in enumerate(idle_w):
        if w is None:
            continue
        rows = by_instance.get(i)
        if rows is None:
            total += w * np.diff(edges)
            continue
        s = _col(steps, "start_s")[rows]
        d = _col(steps, "end_s")[rows] - s
        busy = np.diff(spread_cumulative(s, d, d, edges))
        steps_j = np.diff(spread_cumulative(s, d, _col(steps, "energy_j")[rows], edges))
        total += steps_j + w * (np.diff(edges) - busy)
    return total


def spread_cumulative(start: np.ndarray, dur: np.ndarray, amount: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Cumulative amount at times `at`, each row's amount spread evenly over its [start, start + dur)."""
    cum = np.zeros(len(amount) + 1)
    np.cumsum(amount, out=cum[1:])
    k = np.searchsorted(start, at, side="right") - 1
    kk = np.clip(k, 0, None)
    dur, amount = dur[kk], amount[kk]  # the rows the times fall in: rates of these only
    rate = np.divide(amount, dur, out=np.zeros_like(amount), where=dur > 0)
    return np.where(k >= 0, cum[kk] + rate * np.clip(at - start[kk], 0.0, dur), 0.0)
