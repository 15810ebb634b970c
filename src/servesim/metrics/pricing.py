"""Dollars and carbon of a run: GPU-hours at a rental price, energy at a grid's carbon intensity.

The fleet is rented for the whole simulated span (every GPU of every instance, busy or idle). Carbon is
the facility's energy (GPU energy x PUE) times the grid intensity when it was drawn: a constant, or a
step function of simulated time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # requests: a frame or `metrics.columns.Columns`
    import pandas as pd


@dataclass(frozen=True)
class CarbonIntensity:
    """gCO2e per kWh: `values[k]` holds from `times_s[k]` until the next time (the first also before)."""

    times_s: tuple[float, ...]
    values: tuple[float, ...]

    @classmethod
    def constant(cls, g_per_kwh: float) -> CarbonIntensity:
        return cls((0.0,), (float(g_per_kwh),))

    def breakpoints(self, horizon_s: float) -> np.ndarray:
        inner = [t for t in self.times_s[1:] if 0.0 < t < horizon_s]
        return np.array([0.0, *inner, horizon_s])

    def at(self, times_s: np.ndarray) -> np.ndarray:
        k = np.searchsorted(np.asarray(self.times_s), times_s, side="right") - 1
        return np.asarray(self.values)[np.clip(k, 0, None)]


def fleet_usd_per_hour(pools: list[dict], prices: dict[str, float | None]) -> float | None:
    """Rental of every GPU of every pool per hour; None if a pool's price is unknown."""
    total = 0.0
    for p in pools:
        price = prices.get(p["name"])
        if price is None:
            return None
        total += p["instances"] * p["tp"] * p["pp"] * price
    return total


def cost_summary(
    pools: list[dict], prices: dict[str, float | None], horizon_s: float, requests: pd.DataFrame,
    interval_j: np.ndarray | None, edges: np.ndarray | None, carbon: CarbonIntensity, pue: float,
) -> dict:
    """The summary's `cost` block. `interval_j` is the cluster's GPU energy between `edges` (the
    carbon trace's breakpoints), None without a power model."""
    hours = horizon_s / 3600.0
    per_hour = fleet_usd_per_hour(pools, prices)
    usd = per_hour * hours if per_hour is not None else None
    done = np.asarray(requests["status"]) == "completed"
    completed = int(done.sum())
    out_tokens = float(np.asarray(requests["output_tokens"])[done].sum())
    tokens = float(np.asarray(requests["prompt_tokens"])[done].sum()) + out_tokens
    out = {
        "usd": usd,
        "usd_per_1k_requests": _per(usd, completed, 1e3),
        "usd_per_million_tokens": _per(usd, tokens, 1e6),
        "usd_per_million_output_tokens": _per(usd, out_tokens, 1e6),
        "usd_per_hour": per_hour,
        "gpu_hours": sum(p["instances"] * p["tp"] * p["pp"] for p in pools) * hours,
        "usd_per_gpu_hour": dict(prices),
        "pue": pue,
    }
    if interval_j is None:
        return out | {"co2e_g": None, "co2e_g_per_1k_requests": None, "carbon_g_per_kwh": None}
    facility_kwh = interval_j * pue / 3.6e6
    grams = float(np.sum(facility_kwh * carbon.at(edges[:-1])))
    kwh = float(facility_kwh.sum())
    return out | {
        "facility_kwh": kwh,
        "co2e_g": grams,
        "co2e_g_per_1k_requests": _per(grams, completed, 1e3),
        "co2e_g_per_million_tokens": _per(grams, tokens, 1e6),
        "carbon_g_per_kwh": grams / kwh if kwh > 0 else math.nan,
    }


def _per(amount: float | None, count: float, scale: float) -> float | None:
    if amount is None:
        return None
    return amount / count * scale if count else math.nan


def read_carbon_trace(path) -> CarbonIntensity:
    """A CSV `time_s,g_per_kwh` with increasing times; a bad row names the file and line."""
    from pathlib import Path

    from servesim.core.errors import InputFileError
    from servesim.core.files import read_text

    p = Path(path)
    lines = read_text(p, "carbon trace").splitlines()
    header = [c.strip() for c in (lines[0].split(",") if lines else [])]
    if header != ["time_s", "g_per_kwh"]:
        raise InputFileError(p, "expected the header 'time_s,g_per_kwh'", 1)
    times, values = [], []
    for line, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        cells = text.split(",")
        try:
            t, v = float(cells[0]), float(cells[1])
        except (ValueError, IndexError):
            raise InputFileError(p, f"expected two numbers, got {text!r}", line) from None
        if not (math.isfinite(t) and math.isfinite(v)) or v < 0 or (times and t <= times[-1]):
            raise InputFileError(p, "times must increase and intensities be >= 0", line)
        times.append(t)
        values.append(v)
    if not times:
        raise InputFileError(p, "no rows")
    return CarbonIntensity(tuple(times), tuple(values))
