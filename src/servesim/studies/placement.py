"""Placement search: for each candidate placement (instances, TP, engine limits per pool), the
capacity it sustains under the targets, and that capacity per unit of cost (goodput per GPU).

A placement is a point of a grid of config keys (`cluster.disaggregation.prefill_tp=1,2`), as in
sweeps. Each point runs its own capacity search (`find_capacity`, steady-state checks included) over
the load key; its cost comes from an objective (studies/objectives.py). Points run in parallel
(local processes or Ray) and a failed point (a layout that does not fit) is reported, not fatal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from servesim.config import SimConfig, load_config
from servesim.core.errors import ServesimError
from servesim.studies.capacity import Target, find_capacity
from servesim.studies.executor import run_tasks
from servesim.studies.objectives import get_objective
from servesim.studies.points import expand, format_point
from servesim.studies.steady import DEFAULT_POLICY, SteadyPolicy


@dataclass(frozen=True)
class PlacementTask:
    """One point's search, picklable for worker processes."""

    config: SimConfig
    point: dict
    targets: tuple[Target, ...]
    key: str
    seeds: int
    rel_tol: float
    steady: SteadyPolicy | None
    objective: str


def plan_placements(
    config: str | Mapping | SimConfig,
    grid: Mapping[str, list] | None,
    points: Sequence[Mapping[str, Any]] | None,
    targets: Sequence[Target],
    key: str = "workload.arrival.rate",
    seeds: int = 1,
    rel_tol: float = 0.02,
    steady: SteadyPolicy | None = DEFAULT_POLICY,
    objective: str = "gpus",
    overrides: Mapping[str, Any] | None = None,
) -> tuple[list[str], list[PlacementTask]]:
    """The grid's keys and one validated task per placement (a bad key fails here, naming it)."""
    base = load_config(config, overrides)
    get_objective(objective)  # an unknown objective fails before anything runs
    keys, pts = expand(grid, points)
    tasks = [
        PlacementTask(load_config(base, p), p, tuple(targets), key, seeds, rel_tol, steady, objective)
        for p in pts
    ]
    return keys, tasks


def evaluate_placement(task: PlacementTask) -> dict:
    """A row: the point, its capacity, cost and capacity per unit of cost (or the error)."""
    row = {"point": task.point, "label": format_point(task.point)}
    try:
        result = find_capacity(task.config, task.targets, task.key, rel_tol=task.rel_tol,
                               seeds=task.seeds, steady=task.steady)
        objective = get_objective(task.objective)
        best = result.at_value()
        found = load_config(task.config, {task.key: result.value, **result.length_override()}) \
            if result.met else task.config
        cost = objective.cost(found, _nested(best.metrics) if best else {})
    except ServesimError as exc:
        return {**row, "status": "failed", "error": str(exc)}
    value = result.value
    return {
        **row,
        "status": "ok",
        "error": "",
        "capacity": value,
        "cost": cost,
        "unit": objective.unit,
        "per_unit": value / cost if value is not None and cost > 0 else math.nan,
        "metrics": {t.metric: best.metrics.get(t.metric) for t in task.targets} if best else {},
        "economics": _economics(task.config, best.metrics if best else {}),
        "bracketed": result.bracketed,
        "num_requests": best.num_requests if best else None,
    }


def run_placements(tasks: Sequence[PlacementTask], workers: int | None = None,
                   backend: str = "local", address: str | None = None) -> list[dict]:
    """Every placement's row, best capacity per unit first (failed and unmet points last)."""
    rows = [None] * len(tasks)
    for i, row in run_tasks(evaluate_placement, list(tasks), workers, backend, address):
        rows[i] = row
    return sorted(rows, key=_rank)


def _rank(row: dict):
    per_unit = row.get("per_unit", math.nan)
    return (row["status"] != "ok", -(per_unit if per_unit == per_unit else -math.inf))


def _economics(config: SimConfig, metrics: Mapping[str, float]) -> dict:
    """What the plan costs and delivers at its capacity: GPUs, $/hour, kWh per 1k requests, goodput."""
    from servesim.studies.provisioning import fleet_gpus

    return {"gpus": fleet_gpus(config),
            "usd_per_hour": metrics.get("cost.usd_per_hour"),
            "kwh_per_1k_requests": metrics.get("energy.kwh_per_1k_requests"),
            "goodput_rps": metrics.get("slo.goodput_rps")}


def _nested(flat: Mapping[str, float]) -> dict:
    """Flattened metrics back to a nested summary (for objectives that read the run)."""
    out: dict = {}
    for name, value in flat.items():
        node = out
        *parents, last = name.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                break
        else:
            node[last] = value
    return out
