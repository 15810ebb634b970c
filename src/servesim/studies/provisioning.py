"""What a fleet costs to run: the quantities a provisioning study minimises or reports.

- `fleet_usd_per_hour(config)`: rental of every GPU of every pool ($/GPU-hour from `pricing` or the
  catalog), known before running;
- `fleet_economics(summary)`: dollars per hour, kWh and dollars per 1k requests, goodput per dollar,
  CO2e per 1k requests, read from a run's summary;
- `DollarsPerHour`, `PowerDraw`, `EnergyPerRequest`: objectives in the shape a placement search takes (`unit`,
  `cost(config, summary)`), so goodput per dollar or per kW is capacity / cost;
- `compare_fleets`: every candidate fleet under the same workload, one row each (for notebooks);
- `pareto_front`, `plot_pareto`: the fleets no other beats on both of two criteria.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from servesim.config import SimConfig, load_config
from servesim.core.errors import ConfigError
from servesim.core.files import save_figure

ECONOMICS = ("gpus", "usd_per_hour", "goodput_rps", "goodput_per_usd", "kwh_per_1k_requests",
             "usd_per_1k_requests", "co2e_g_per_1k_requests", "avg_power_w", "slo_attainment")


def fleet_gpus(config: str | Path | Mapping | SimConfig) -> int:
    from servesim.build import resolve_pools

    return sum(p.instances * p.tp * p.pp for p in resolve_pools(load_config(config)))


def fleet_usd_per_hour(config: str | Path | Mapping | SimConfig) -> float | None:
    """$/hour of the fleet a config describes; None when a pool's hardware has no price."""
    from servesim.build import pool_prices, resolve_pools

    cfg = load_config(config)
    pools = resolve_pools(cfg)
    prices = pool_prices(cfg, pools)
    total = 0.0
    for pool in pools:
        price = prices[pool.name]
        if price is None:
            return None
        total += pool.instances * pool.tp * pool.pp * price
    return total


def fleet_economics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The provisioning view of one run: what the fleet costs and what it delivers."""
    cost, energy, slo = summary.get("cost", {}), summary.get("energy", {}), summary.get("slo", {})
    per_hour = _num(cost.get("usd_per_hour"))
    goodput = _num(slo.get("goodput_rps"))
    return {
        "gpus": float(sum(p["instances"] * p["tp"] * p["pp"] for p in summary["cluster"]["pools"])),
        "usd_per_hour": per_hour,
        "goodput_rps": goodput,
        "goodput_per_usd": goodput * 3600 / per_hour if per_hour > 0 else math.nan,
        "kwh_per_1k_requests": _num(energy.get("kwh_per_1k_requests")),
        "usd_per_1k_requests": _num(cost.get("usd_per_1k_requests")),
        "co2e_g_per_1k_requests": _num(cost.get("co2e_g_per_1k_requests")),
        "avg_power_w": _num(energy.get("avg_power_w")),
        "slo_attainment": _num(slo.get("attainment")),
    }


class DollarsPerHour:
    """Objective: what the placement rents for, $/hour (goodput per $/h is requests per dollar / 3600)."""

    unit = "$/h"

    def cost(self, config: SimConfig, summary: Mapping[str, Any]) -> float:
        value = fleet_usd_per_hour(config)
        if value is None:
            raise ConfigError("pricing.usd_per_gpu_hour", f"{_unpriced(config)} has no $/GPU-hour in "
                              "the catalog: give one (a number, or {hardware: $})")
        return value


class PowerDraw:
    """Objective: the placement's mean power at its found capacity, kW (goodput per kW is requests
    per kilojoule)."""

    unit = "kW"

    def cost(self, config: SimConfig, summary: Mapping[str, Any]) -> float:
        return _energy(config, summary, "avg_power_w") / 1000.0


class EnergyPerRequest:
    """Objective: the energy the placement spends per 1k completed requests at its found capacity,
    kWh (idle time included)."""

    unit = "kWh/1k req"

    def cost(self, config: SimConfig, summary: Mapping[str, Any]) -> float:
        return _energy(config, summary, "kwh_per_1k_requests")


def _energy(config: SimConfig, summary: Mapping[str, Any], key: str) -> float:
    """An energy figure of the run; hardware without a TDP has none, which an energy objective
    refuses rather than ranking on NaN."""
    value = _num(summary.get("energy", {}).get(key))
    if not value > 0:
        raise ConfigError("--objective", f"no energy.{key} for this placement (hardware "
                          f"{_hardware_names(config)} has no power model: tdp_w missing?)")
    return value


def _hardware_names(config: SimConfig) -> str:
    from servesim.build import resolve_pools

    return ", ".join(sorted({p.hardware.name for p in resolve_pools(config)}))


def _unpriced(config: SimConfig) -> str:
    from servesim.build import pool_prices, resolve_pools

    pools = resolve_pools(config)
    prices = pool_prices(config, pools)
    return ", ".join(sorted({p.hardware.name for p in pools if prices[p.name] is None}))


def compare_fleets(base: str | Path | Mapping | SimConfig, fleets: Mapping[str, Mapping[str, Any]],
                   **overrides: Any) -> pd.DataFrame:
    """Run `base` once per fleet (a mapping of dotted overrides: hardware, cluster layout, caps),
    all under the same workload and seed, and tabulate `fleet_economics` per fleet."""
    from servesim.simulation import simulate

    rows = []
    for name, changes in fleets.items():
        result = simulate(load_config(base, {**overrides, **changes}))
        rows.append({"fleet": name, **fleet_economics(result.summary)})
    return pd.DataFrame(rows, columns=["fleet", *ECONOMICS])


def pareto_front(frame: pd.DataFrame, cost: str, value: str) -> pd.DataFrame:
    """Rows that no other row beats on both: lower `cost` and higher `value` (ties kept)."""
    ok = frame.dropna(subset=[cost, value]).sort_values([cost, value], ascending=[True, False])
    keep, best = [], -math.inf
    for index, row in ok.iterrows():
        if row[value] > best:
            keep.append(index)
            best = row[value]
    return frame.loc[keep]


def plot_pareto(frame: pd.DataFrame, cost: str, value: str, path: str | Path, label: str = "fleet") -> Path:
    """Every fleet as a point, the Pareto front as a line."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    front = pareto_front(frame, cost, value)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(frame[cost], frame[value], s=18, color="0.6")
    ax.plot(front[cost], front[value], marker="o", color="C0", label="Pareto front")
    for _, row in frame.iterrows():
        ax.annotate(str(row[label]), (row[cost], row[value]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel(cost)
    ax.set_ylabel(value)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _num(value) -> float:
    return math.nan if value is None else float(value)
