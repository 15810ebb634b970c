"""Which fleet to buy: the cheapest placement that carries a given load under the targets, and the
Pareto front of cost against capacity, read from a placement search's rows (studies/placement.py).

A placement's row holds its capacity (the highest load meeting the targets) and its cost under the
search's objective (GPUs, $/hour, kWh per 1k requests). A plan is feasible for a demand when its
capacity reaches it; the cheapest feasible plan answers "which fleet for this trace and SLO". The
front keeps the plans no other beats on both lower cost and higher capacity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from servesim.studies.provisioning import pareto_front, plot_pareto

COLUMNS = ("label", "short", "cost", "capacity", "gpus", "usd_per_hour", "kwh_per_1k_requests", "goodput_rps")


def plan_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """One row per placement that met the targets somewhere: its cost, capacity and economics."""
    out = []
    for r in rows:
        if r.get("status") == "ok" and r.get("capacity") is not None and _finite(r.get("cost")):
            out.append({"label": r["label"], "short": " ".join(str(v) for v in r["point"].values()),
                        "cost": r["cost"], "capacity": r["capacity"],
                        **{k: r.get("economics", {}).get(k) for k in COLUMNS[4:]}})
    return pd.DataFrame(out, columns=list(COLUMNS)).astype({c: float for c in COLUMNS[2:]})


def cheapest_plan(frame: pd.DataFrame, demand: float) -> dict | None:
    """The lowest-cost plan whose capacity reaches `demand` (ties: the larger capacity); None if none."""
    feasible = frame[frame["capacity"] >= demand]
    if feasible.empty:
        return None
    return feasible.sort_values(["cost", "capacity"], ascending=[True, False]).iloc[0].to_dict()


def front(frame: pd.DataFrame) -> pd.DataFrame:
    """Plans on the Pareto front of cost (lower better) against capacity (higher better)."""
    return pareto_front(frame, "cost", "capacity").reset_index(drop=True)


def plot_front(frame: pd.DataFrame, path: str | Path, unit: str, key: str) -> Path:
    """Every plan as a point, the front as a line: cost on x, capacity on y."""
    named = frame.rename(columns={"cost": f"cost ({unit})", "capacity": f"capacity ({key})"})
    return plot_pareto(named, f"cost ({unit})", f"capacity ({key})", path, label="short")


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)
