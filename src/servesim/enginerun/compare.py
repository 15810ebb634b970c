"""Real against simulated: request latency percentiles, and step times per step kind."""

from __future__ import annotations

import numpy as np
import pandas as pd

from servesim.enginerun.fit import BUSY_GAP_S
from servesim.enginerun.steps import EngineSteps

METRICS = {"ttft": "ttft_s", "tpot": "tpot_s", "e2e": "e2e_s", "tbt_max": "tbt_max_s"}
STATS = ("p50", "p90", "p99", "mean")
HEADLINE = ("ttft.p50", "ttft.p90", "tpot.p50", "tpot.p90", "e2e.mean")
"""The five numbers the fidelity targets are stated on (docs/fidelity.md)."""


def latency_stats(frame: pd.DataFrame) -> dict[str, float]:
    """`{"ttft.p50": seconds, ...}` over completed requests; TPOT over those with > 1 token."""
    out = {}
    for name, col in METRICS.items():
        if col not in frame:
            continue
        values = frame[col].to_numpy(dtype=float)
        if name in ("tpot", "tbt_max") and "output_tokens" in frame:
            values = values[frame["output_tokens"].to_numpy() > 1]
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        for stat in STATS:
            q = float(np.mean(values)) if stat == "mean" else float(np.percentile(values, int(stat[1:])))
            out[f"{name}.{stat}"] = q
    return out


def compare_requests(real: pd.DataFrame, sim: pd.DataFrame) -> dict[str, dict[str, float]]:
    """{"real": {...}, "sim": {...}, "error_pct": {...}} on the keys both sides have."""
    r, s = latency_stats(real), latency_stats(sim[sim["status"] == "completed"])
    keys = [k for k in r if k in s]
    err = {k: (s[k] / r[k] - 1) * 100 if r[k] else float("nan") for k in keys}
    return {"real": {k: r[k] for k in keys}, "sim": {k: s[k] for k in keys}, "error_pct": err}


def step_errors(steps: EngineSteps, cost_model) -> dict[str, dict[str, float]]:
    """Per step kind (and all), then over the steps with prompt chunks by their number (`1 chunk`,
    `2+ chunks`: whether launches grow with chunks shows there): the cost model's step time against
    the measured one (the step's wall time plus the loop's gap to the next step while the engine
    stayed busy): MAPE, median and total error in %."""
    gap = steps.gap_s
    busy = np.isfinite(gap) & (gap < BUSY_GAP_S)
    loop = np.where(busy, gap, np.median(gap[busy]) if busy.any() else 0.0)
    measured = steps.wall_s + loop
    predicted = np.array([cost_model.step_time(s) for s in steps.shapes])
    chunks = np.array([len(s.prefill_chunks) for s in steps.shapes])
    masks = {kind: steps.kind == kind for kind in ("prefill", "decode", "mixed")}
    masks["all"] = np.ones(len(steps), bool)
    if (chunks > 1).any():
        masks.update({"1 chunk": chunks == 1, "2+ chunks": chunks > 1})
    out = {}
    for kind, mask in masks.items():
        if mask.any():
            err = predicted[mask] / measured[mask] - 1
            out[kind] = {
                "steps": int(mask.sum()),
                "mape": float(np.mean(np.abs(err)) * 100),
                "median_pct": float(np.median(err) * 100),
                "total_pct": float((predicted[mask].sum() / measured[mask].sum() - 1) * 100),
            }
    return out
