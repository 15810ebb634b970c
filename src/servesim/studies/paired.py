"""Paired comparison of two variants (A, B) of one config over several seeds.

Both variants run on the same seeds, so they see the same arrivals and lengths (common random
numbers): the per-seed difference B - A cancels the workload's noise, and the t-interval of the
mean difference is much tighter than comparing two independent samples. `unpaired_halfwidth`
reports what the interval would be without the pairing, for contrast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servesim.config import SimConfig, load_config
from servesim.core.errors import ArgumentError, ConfigError
from servesim.progress import progress_bar
from servesim.studies.executor import run_tasks
from servesim.studies.summaries import direction
from servesim.studies.sweep import evaluate

DEFAULT_METRICS = ("slo.attainment", "slo.goodput_rps", "latency.ttft.p99", "latency.tpot.p99")


@dataclass
class PairedStat:
    metric: str
    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    """Mean over seeds of B - A."""
    ci_low: float
    ci_high: float
    sd_diff: float
    unpaired_halfwidth: float
    """Half-width of the Welch interval that ignores the pairing."""
    direction: int
    verdict: str
    """`B better`, `B worse` (the interval excludes 0 on that side) or `no significant difference`."""


@dataclass
class PairedResult:
    confidence: float
    seeds: list[int]
    stats: list[PairedStat]
    per_seed: pd.DataFrame
    """One row per (seed, variant) with the compared metrics."""

    def stat(self, metric: str) -> PairedStat:
        return next(s for s in self.stats if s.metric == metric)

    def to_dict(self) -> dict:
        return {
            "confidence": self.confidence,
            "seeds": self.seeds,
            "metrics": [asdict(s) for s in self.stats],
        }


def paired_compare(
    config: str | Path | Mapping | SimConfig,
    a_overrides: Mapping[str, Any],
    b_overrides: Mapping[str, Any],
    seeds: int | Sequence[int] = 5,
    metrics: Sequence[str] = DEFAULT_METRICS,
    confidence: float = 0.95,
    workers: int | None = 1,
    backend: str = "local",
    progress: bool = False,
) -> PairedResult:
    """Run A and B on the same seeds; the t-interval of the mean per-seed difference B - A."""
    if not 0 < confidence < 1:
        raise ArgumentError("confidence", f"must be in (0, 1), got {confidence}")
    base = load_config(config)
    seed_list = [base.seed + i for i in range(seeds)] if isinstance(seeds, int) else list(seeds)
    if len(seed_list) < 2:
        raise ArgumentError("seeds", f"a confidence interval needs at least 2 seeds, got {len(seed_list)}")
    variants = {"A": dict(a_overrides), "B": dict(b_overrides)}
    tasks, labels = [], []
    for seed in seed_list:
        for name, overrides in variants.items():
            tasks.append(load_config(base, {**overrides, "seed": seed}))  # validates before running
            labels.append((seed, name))
    results: list[dict] = [{}] * len(tasks)
    with progress_bar(len(tasks), "paired runs", "runs", enabled=progress) as bar:
        for i, result in run_tasks(evaluate, tasks, workers, backend):
            if result["status"] != "ok":
                seed, name = labels[i]
                raise ConfigError(f"variant {name}", f"seed {seed} failed: {result['error']}")
            results[i] = result
            bar.update()
    unknown = [m for m in metrics if m not in results[0]]
    if unknown:
        raise ArgumentError("metrics", f"unknown metric {unknown[0]!r}")
    rows = [{"seed": s, "variant": v, **{m: r[m] for m in metrics}} for (s, v), r in zip(labels, results)]
    frame = pd.DataFrame(rows)
    stats = [paired_stat(m, frame, confidence) for m in metrics]
    return PairedResult(confidence, seed_list, stats, frame)


def paired_stat(metric: str, frame: pd.DataFrame, confidence: float) -> PairedStat:
    wide = frame.pivot(index="seed", columns="variant", values=metric)
    a, b = wide["A"].to_numpy(float), wide["B"].to_numpy(float)
    diff = b - a
    n = len(diff)
    t = t_quantile(confidence, n - 1)
    sd = float(np.std(diff, ddof=1))
    half = t * sd / math.sqrt(n)
    mean = float(diff.mean())
    sign = direction(metric)
    lo, hi = mean - half, mean + half
    if sign != 0 and (lo > 0 or hi < 0):
        verdict = "B better" if (lo > 0) == (sign > 0) else "B worse"
    elif sign == 0 and (lo > 0 or hi < 0):
        verdict = "B higher" if lo > 0 else "B lower"
    else:
        verdict = "no significant difference"
    return PairedStat(
        metric, n, float(a.mean()), float(b.mean()), mean, lo, hi, sd,
        _welch_halfwidth(a, b, confidence), sign, verdict,
    )


def t_quantile(confidence: float, dof: int) -> float:
    """Two-sided Student t critical value."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2, dof))


def _welch_halfwidth(a: np.ndarray, b: np.ndarray, confidence: float) -> float:
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se2 = va + vb
    if se2 == 0:
        return 0.0
    dof = se2**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return t_quantile(confidence, dof) * math.sqrt(se2)


def format_paired(result: PairedResult) -> str:
    width = max(len(s.metric) for s in result.stats)
    pct = f"{result.confidence:.0%}"
    lines = [
        (f"paired over {len(result.seeds)} seeds ({result.seeds[0]}..{result.seeds[-1]}); "
         f"diff = B - A, {pct} t-interval"),
        (f"{'metric':<{width}}  {'A':>10}  {'B':>10}  {'B - A':>10}  {pct + ' CI':>23}  "
         f"{'unpaired ±':>10}  verdict"),
    ]
    for s in result.stats:
        ci = f"[{s.ci_low:+.4g}, {s.ci_high:+.4g}]"
        lines.append(
            f"{s.metric:<{width}}  {s.mean_a:>10.4g}  {s.mean_b:>10.4g}  {s.mean_diff:>+10.4g}  "
            f"{ci:>23}  {s.unpaired_halfwidth:>10.3g}  {s.verdict}"
        )
    return "\n".join(lines)
