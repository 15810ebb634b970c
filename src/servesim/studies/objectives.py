"""What a placement costs, the denominator of a placement search's goodput per unit.

An objective is a class with a `unit` (for tables: "GPU") and `cost(config, summary)`: the cost of
serving with `config`, given the run's summary at the found capacity (so that objectives priced by
the run, such as energy, fit the same protocol). Built-in: `gpus`, `usd_per_hour` (the fleet's rental,
studies/provisioning.py), `kw` (its mean power at the capacity) and `kwh` (its kWh per 1k requests
there). Others register here or are named as `module:Class`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from servesim.config import SimConfig
from servesim.registry import Registry
from servesim.studies.provisioning import DollarsPerHour, EnergyPerRequest, PowerDraw


@runtime_checkable
class Objective(Protocol):
    unit: str
    """What one unit of cost is, singular (`GPU`)."""

    def cost(self, config: SimConfig, summary: Mapping[str, Any]) -> float:
        """Cost of the placement `config` (> 0); `summary` is its run at the found capacity."""


OBJECTIVES: Registry = Registry("objective", "--objective", required=("cost",))


@OBJECTIVES.register("gpus")
class GPUs:
    """Accelerators the placement occupies: instances x TP x PP, summed over its pools."""

    unit = "GPU"

    def cost(self, config: SimConfig, summary: Mapping[str, Any]) -> float:
        from servesim.build import resolve_pools

        return float(sum(p.instances * p.tp * p.pp for p in resolve_pools(config)))


OBJECTIVES.register("usd_per_hour")(DollarsPerHour)
OBJECTIVES.register("kw")(PowerDraw)
OBJECTIVES.register("kwh")(EnergyPerRequest)


def get_objective(name: str) -> Objective:
    return OBJECTIVES.get(name)()
