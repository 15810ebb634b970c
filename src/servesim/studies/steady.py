"""Is a run long enough to stand for the server's steady state at its load?

A short run starts from an empty server and ends before the batch, the KV cache and the queue have
filled: its latencies are optimistic, and a capacity search on it reports loads the server cannot
sustain. Three checks, on each run:
- **samples**: a target on a percentile (p99) or an attainment (>= 0.99) needs at least
  `min_tail / (1 - q)` samples, so that `min_tail` of them lie beyond the quantile;
- **warm-up**: arrivals must last at least `warmup_factor` times the p99 end-to-end latency, so that
  most requests are served after the server filled up;
- **growth**: over the second half of the arrivals, departures must keep up with arrivals (the number
  of requests in the system grows by at most `growth_tol` of the arrivals); otherwise the queue is
  still growing: the load exceeds what the server sustains, or the run has not reached equilibrium.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # frames only in annotations: the CLI's parser reads this module's defaults
    import pandas as pd

SHORT, FEW, GROWING = "short", "few", "growing"


@dataclass(frozen=True)
class SteadyPolicy:
    warmup_factor: float = 4.0
    """Arrivals must span this many times the p99 end-to-end latency."""
    growth_tol: float = 0.05
    """Largest share of the second half's arrivals still in the system at the last arrival."""
    min_tail: int = 10
    """Samples a percentile target needs beyond its quantile."""
    max_requests: int = 64_000
    """Lengthening stops here (the run is then judged as it is)."""


DEFAULT_POLICY = SteadyPolicy()


@dataclass(frozen=True)
class Verdict:
    kind: str
    """`short`, `few` or `growing`."""
    message: str


def required_samples(metric: str, op: str, value: float, min_tail: int) -> tuple[int, str] | None:
    """(samples, counted metric) a target needs, or None when it sets no quantile."""
    prefix = metric[: metric.index("latency.")] if "latency." in metric else ""
    last = metric.rsplit(".", 1)[-1]
    m = re.fullmatch(r"p(\d+(?:\.\d+)?)", last)
    if m and "latency." in metric:
        q = float(m.group(1)) / 100
        counted = f"{prefix}itl.gaps" if ".itl." in f".{metric}" else f"{prefix}requests.completed"
    elif last == "attainment" and op == ">=":
        q = value
        counted = metric[: metric.index("slo.")] + "requests.arrived"
    else:
        return None
    if q >= 1 or q <= 0:
        return None
    return math.ceil(min_tail / (1 - q) - 1e-9), counted


def growth(requests: pd.DataFrame) -> float:
    """Share of the second half's arrivals still in the system at the last arrival."""
    a = requests["arrival_s"].to_numpy(dtype=float)
    if len(a) < 4:
        return 0.0
    finish = requests["finish_s"].to_numpy(dtype=float)
    finish = np.where(np.isnan(finish) & (requests["status"].to_numpy() != "rejected"), np.inf, finish)
    t0, t1 = float(np.quantile(a, 0.5)), float(a.max())
    arrived = int(((a >= t0) & (a <= t1)).sum())
    departed = int(((finish >= t0) & (finish <= t1)).sum())
    return 1.0 - departed / arrived if arrived else 0.0


def verdict(
    requests: pd.DataFrame, metrics: Mapping[str, float], targets: Sequence, policy: SteadyPolicy
) -> Verdict | None:
    """None when the run is long enough for the targets; else why not."""
    for t in targets:
        need = required_samples(t.metric, t.op, t.value, policy.min_tail)
        if need is None:
            continue
        count, counted = need
        have = metrics.get(counted, 0)
        if have < count:
            return Verdict(FEW, f"{t} needs {count} samples ({counted}), the run has {int(have)}")
    a = requests["arrival_s"].to_numpy(dtype=float)
    span = float(a.max() - a.min()) if len(a) else 0.0
    e2e = metrics.get("latency.e2e.p99", math.nan)
    if math.isfinite(e2e) and span < policy.warmup_factor * e2e:
        return Verdict(SHORT, f"arrivals last {span:.0f} s, under {policy.warmup_factor:g} x the p99 "
                              f"latency ({e2e:.1f} s): the server has not filled up")
    g = growth(requests)
    if g > policy.growth_tol:
        return Verdict(GROWING, f"the queue is still growing: {100 * g:.0f}% of the second half's "
                                f"arrivals are still in the system at the last arrival")
    return None
