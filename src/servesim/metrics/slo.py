"""Which requests attain a named objective (`slo.objectives`), from the requests frame.

An objective is a mapping of limits (`ttft_s`, `tbt_s`, `e2e_slowdown`, ...; see config/slo.py) and
optional `per_class` limits that replace the objective's, key by key, for a class. A request attains
it when it completed and each limit that applies to its class holds. Slowdowns need the
`ttft_isolated_s` / `e2e_isolated_s` columns (the cost model's price of the request served alone,
added by the simulation when an objective asks for them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # a frame or `metrics.columns.Columns`: both index columns by name
    import pandas as pd

ISOLATED_COLUMNS = ("ttft_isolated_s", "e2e_isolated_s")


def request_metric(frame: pd.DataFrame, key: str) -> np.ndarray:
    """The per-request value a limit key bounds (NaN where undefined)."""
    col = lambda name: np.asarray(frame[name], dtype=float)  # noqa: E731
    if key == "ttft_s":
        return col("ttft_s")
    if key == "tpot_s":
        return col("tpot_s")
    if key == "e2e_s":
        return col("e2e_s")
    if key == "tbt_s":
        return col("tbt_max_s")
    if key == "norm_e2e_s":
        return col("e2e_s") / np.maximum(col("output_tokens"), 1)
    if key == "queue_s":
        return col("first_scheduled_s") - col("arrival_s")
    if key == "ttft_slowdown":
        return col("ttft_s") / col("ttft_isolated_s")
    if key == "e2e_slowdown":
        return col("e2e_s") / col("e2e_isolated_s")
    raise KeyError(key)


def attains(frame: pd.DataFrame, objective: Mapping) -> np.ndarray:
    """Boolean per request: completed and within every limit of `objective` for its class."""
    done = np.asarray(frame["status"]) == "completed"
    per_class: Mapping[str, Mapping] = objective.get("per_class") or {}
    base = {k: v for k, v in objective.items() if k != "per_class" and v is not None}
    keys = set(base)
    for limits in per_class.values():
        keys |= {k for k, v in limits.items() if v is not None}
    classes = np.asarray(frame["class"], dtype=object) if per_class else None
    met = done.copy()
    for key in sorted(keys):
        limit = np.full(len(frame), base.get(key, np.inf), dtype=float)
        for name, limits in per_class.items():
            if limits.get(key) is not None:  # a class's limit replaces the objective's, key by key
                limit[classes == name] = limits[key]
        value = request_metric(frame, key)
        with np.errstate(invalid="ignore"):
            met &= ~(value > limit) & (np.isfinite(value) | np.isinf(limit))
    return met


def objective_blocks(frame: pd.DataFrame, objectives: Mapping[str, Mapping], span: float) -> dict:
    """`{name: {attainment, goodput_rps}}` over the frame's requests (attainment over arrivals)."""
    arrived = len(frame)
    out = {}
    for name, objective in objectives.items():
        met = int(attains(frame, objective).sum())
        out[name] = {
            "attainment": met / arrived if arrived else float("nan"),
            "goodput_rps": met / span if span == span else float("nan"),
        }
    return out
