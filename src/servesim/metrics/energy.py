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

import numpy as np
import pandas as pd


def instance_energy(steps: pd.DataFrame, idle_w: list[float | None], horizon_s: float) -> pd.DataFrame:
    """One row per instance: busy seconds and joules, idle joules, total joules (None-power: NaN)."""
    n = len(idle_w)
    busy_s, busy_j = np.zeros(n), np.zeros(n)
    if len(steps):
        idx = steps["instance"].to_numpy(int)
        np.add.at(busy_s, idx, (steps["end_s"] - steps["start_s"]).to_numpy(float))
        np.add.at(busy_j, idx, steps["energy_j"].to_numpy(float))
    idle = np.array([math.nan if w is None else w for w in idle_w], dtype=float)
    idle_j = idle * np.maximum(0.0, horizon_s - busy_s)
    busy_j = np.where(np.isnan(idle), math.nan, busy_j)
    return pd.DataFrame({
        "instance": np.arange(n), "idle_w": idle, "busy_s": busy_s, "busy_j": busy_j, "idle_j": idle_j,
        "total_j": busy_j + idle_j,
    })


def energy_summary(per_instance: pd.DataFrame, requests: pd.DataFrame, horizon_s: float,
                   pool_of: list[str]) -> dict:
    """The summary's `energy` block; null values when no instance has a power model."""
    known = per_instance.dropna(subset=["total_j"])
    if known.empty:
        return {"total_j": None, "avg_power_w": None, "j_per_output_token": None}
    total = float(known["total_j"].sum())
    completed = int((requests["status"] == "completed").sum())
    tokens = float(requests["generated_tokens"].sum())
    pools: dict[str, dict] = {}
    for row, pool in zip(per_instance.itertuples(), pool_of):
        if math.isnan(row.total_j):
            continue
        p = pools.setdefault(pool, {"instances": 0, "idle_w_per_instance": row.idle_w, "total_j": 0.0,
                                    "busy_j": 0.0, "idle_j": 0.0})
        p["instances"] += 1
        p["total_j"] += row.total_j
        p["busy_j"] += row.busy_j
        p["idle_j"] += row.idle_j
    for p in pools.values():
        p["avg_power_w"] = p["total_j"] / horizon_s if horizon_s > 0 else math.nan
    return {
        "total_j": total,
        "avg_power_w": total / horizon_s if horizon_s > 0 else math.nan,
        "j_per_output_token": total / tokens if tokens else math.nan,
        "busy_j": float(known["busy_j"].sum()),
        "idle_j": float(known["idle_j"].sum()),
        "kwh": total / 3.6e6,
        "j_per_request": total / completed if completed else math.nan,
        "kwh_per_1k_requests": total / 3.6e6 / completed * 1000 if completed else math.nan,
        "pools": pools,
    }


def request_energy(steps: pd.DataFrame, requests: pd.DataFrame) -> np.ndarray:
    """Joules charged to each request (row order of `requests`); see the module doc."""
    out = np.zeros(len(requests))
    if not len(steps) or not len(requests):
        return out
    tokens = (steps["num_prefill_tokens"] + steps["num_steps"] * steps["num_decodes"]).to_numpy(float)
    joules = steps["energy_j"].to_numpy(float)
    per_token = np.divide(joules, tokens, out=np.zeros_like(joules), where=tokens > 0)
    decode_j = per_token * steps["num_steps"].to_numpy(float)
    first = requests["first_token_s"].to_numpy(float)
    finish = requests["finish_s"].to_numpy(float)
    scheduled = requests["first_scheduled_s"].to_numpy(float)
    prompt = (requests["prompt_tokens"] - requests["cached_tokens"]).to_numpy(float)
    decode_inst = requests["instance"].to_numpy(float)
    prefill_inst = decode_inst.copy()
    if "prefill_instance" in requests:
        pi = requests["prefill_instance"].to_numpy(float)
        prefill_inst = np.where(np.isnan(pi) | (pi < 0), decode_inst, pi)
    for inst, rows in steps.groupby("instance", sort=False):
        order = rows.sort_values("start_s").index.to_numpy()
        start = steps.loc[order, "start_s"].to_numpy(float)
        end = steps.loc[order, "end_s"].to_numpy(float)
        cum_dec = np.concatenate(([0.0], np.cumsum(decode_j[order])))
        cum_j = np.concatenate(([0.0], np.cumsum(joules[order])))
        cum_tok = np.concatenate(([0.0], np.cumsum(tokens[order])))
        here = (decode_inst == inst) & ~np.isnan(first)
        lo = np.searchsorted(start, first[here], side="left")
        hi = np.searchsorted(end, np.nan_to_num(finish[here], nan=np.inf), side="right")
        out[here] += np.maximum(0.0, cum_dec[hi] - cum_dec[np.minimum(lo, hi)])
        pre = (prefill_inst == inst) & ~np.isnan(first) & ~np.isnan(scheduled)
        lo = np.searchsorted(start, scheduled[pre], side="left")
        hi = np.searchsorted(end, first[pre], side="right")
        span_j = cum_j[hi] - cum_j[np.minimum(lo, hi)]
        span_tok = cum_tok[hi] - cum_tok[np.minimum(lo, hi)]
        rate = np.divide(span_j, span_tok, out=np.zeros_like(span_j), where=span_tok > 0)
        out[pre] += rate * prompt[pre]
    return out


def energy_in_intervals(steps: pd.DataFrame, idle_w: list[float | None], edges: np.ndarray) -> np.ndarray:
    """Cluster joules in each interval [edges[k], edges[k+1]): steps pro rata, idle power between."""
    edges = np.asarray(edges, dtype=float)
    total = np.zeros(len(edges) - 1)
    by_instance = dict(tuple(steps.groupby("instance"))) if len(steps) else {}
    for i, w in enumerate(idle_w):
        if w is None:
            continue
        rows = by_instance.get(i)
        if rows is None or rows.empty:
            total += w * np.diff(edges)
            continue
        rows = rows.sort_values("start_s")
        s = rows["start_s"].to_numpy(float)
        d = rows["end_s"].to_numpy(float) - s
        busy = np.diff(spread_cumulative(s, d, d, edges))
        steps_j = np.diff(spread_cumulative(s, d, rows["energy_j"].to_numpy(float), edges))
        total += steps_j + w * (np.diff(edges) - busy)
    return total


def spread_cumulative(start: np.ndarray, dur: np.ndarray, amount: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Cumulative amount at times `at`, each row's amount spread evenly over its [start, start + dur)."""
    rate = np.divide(amount, dur, out=np.zeros_like(amount), where=dur > 0)
    cum = np.concatenate(([0.0], np.cumsum(amount)))
    k = np.searchsorted(start, at, side="right") - 1
    kk = np.clip(k, 0, None)
    return np.where(k >= 0, cum[kk] + rate[kk] * np.clip(at - start[kk], 0.0, dur[kk]), 0.0)
