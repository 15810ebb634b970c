"""summary.json as flat dotted metrics (`latency.ttft.p99`), which way each metric is better, and
reading summaries back from disk."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servesim.core.errors import InputFileError
from servesim.core.files import read_json

SECTIONS = ("requests", "latency", "throughput", "slo", "kv", "sim", "cluster", "energy", "cost", "power",
            "itl", "classes", "workload")
"""Top-level blocks of summary.json; a flattened metric starts with one of them."""

REQUIRED_SECTIONS = ("requests", "latency", "throughput", "slo")
"""What a file must have to count as a servesim summary."""

CONFIG_ECHOES = frozenset({"slo.ttft_s", "slo.tpot_s", "sim.seed", "kv.capacity_tokens", "cost.pue"})
ECHO_PREFIXES = ("cost.usd_per_gpu_hour.", "power.cap_w", "power.clock_mhz", "power.pools.",
                 "power.budget.budget_w", "power.budget.interval_s")
"""Prices and power settings repeated from the config."""
"""Summary entries that repeat the config rather than measure an outcome: never compared."""

MACHINE_DEPENDENT = frozenset({"sim.wall_s"})
"""Entries that differ between machines for the same run: never compared by default."""

HIGHER_IS_BETTER = ("slo.attainment", "slo.goodput_rps", "throughput.", "requests.completed",
                    "kv.prefix_hit_rate", "slo.objectives.")
LOWER_IS_BETTER = ("latency.", "requests.rejected", "requests.unfinished", "kv.preemptions", "energy.",
                   "cost.", "itl.worst10_mean", "itl.max", "workload.dropped", "workload.clipped")


def flatten(summary: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested summary -> {"latency.ttft.p99": 0.14, ...}; JSON nulls become NaN."""
    flat: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        elif value is None:
            flat[name] = math.nan
        elif hasattr(value, "item") and not isinstance(value, (list, tuple)):
            flat[name] = value.item()  # numpy scalar -> Python number
        elif isinstance(value, bool):
            flat[name] = float(value)
        elif isinstance(value, (int, float)):
            flat[name] = value
    return flat


def direction(metric: str) -> int:
    """+1 when a higher value is better, -1 when lower is better, 0 when neither (e.g. KV usage).
    A class's metric (`classes.chat.latency.ttft.p99`) goes the way of the same metric overall."""
    if metric.startswith("classes.") and metric.count(".") >= 3:
        return direction(metric.split(".", 2)[2])
    if any(metric == p or (p.endswith(".") and metric.startswith(p)) for p in HIGHER_IS_BETTER):
        return 1
    if any(metric == p or (p.endswith(".") and metric.startswith(p)) for p in LOWER_IS_BETTER):
        return -1
    return 0


def is_metric(column: str) -> bool:
    """A flattened summary outcome (not a config echo)."""
    return (
        column.split(".", 1)[0] in SECTIONS and "." in column and column not in CONFIG_ECHOES
        and not column.startswith(ECHO_PREFIXES)
    )


def default_metrics(names) -> list[str]:
    """The metrics a regression gate compares when none are named: every outcome with a direction."""
    return [m for m in names if is_metric(m) and m not in MACHINE_DEPENDENT and direction(m) != 0]


def is_summary(data: Any) -> bool:
    return isinstance(data, Mapping) and all(
        isinstance(data.get(s), Mapping) for s in REQUIRED_SECTIONS
    )


def load_summary(path: str | Path) -> dict:
    """A summary.json, or InputFileError naming the file and what is wrong with it."""
    path = Path(path)
    data = read_json(path, "summary")
    if not is_summary(data):
        missing = [s for s in REQUIRED_SECTIONS if not isinstance(data, dict) or s not in data]
        raise InputFileError(
            path, f"not a servesim summary.json (missing {', '.join(missing) or 'sections'})"
        )
    return data
