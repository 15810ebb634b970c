"""Synthetic arrivals and lengths.

Arrivals are a renewal process of unit rate (poisson, gamma or weibull gaps with the configured CV,
or constant gaps) run in "operational time" u, mapped to real time through the inverse of the
cumulative rate, t = Λ⁻¹(u). With a constant rate that is t = u / rate; with a rate schedule the
burstiness (CV) stays while the rate follows the schedule.
"""

from __future__ import annotations

import math

import numpy as np

from servesim.config.workload import ArrivalConfig, LengthDist
from servesim.workload.schedule import RateCurve


def unit_gaps(cfg: ArrivalConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` inter-arrival gaps with mean 1 and the process's CV."""
    if cfg.process == "poisson":
        return rng.exponential(1.0, n)
    if cfg.process == "constant":
        return np.ones(n)
    if cfg.process == "gamma":
        shape = 1.0 / cfg.cv**2
        return rng.gamma(shape, 1.0 / shape, n)
    if cfg.process == "weibull":
        k = weibull_shape_for_cv(cfg.cv)
        return rng.weibull(k, n) / math.gamma(1 + 1 / k)
    raise ValueError(cfg.process)


def weibull_shape_for_cv(cv: float) -> float:
    """The Weibull shape k whose CV is `cv` (bisection on the monotone CV(k))."""

    def cv_of(k: float) -> float:
        g1, g2 = math.gamma(1 + 1 / k), math.gamma(1 + 2 / k)
        return math.sqrt(max(g2 / g1**2 - 1, 0.0))

    lo, hi = 0.05, 100.0
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if cv_of(mid) > cv else (lo, mid)
    return math.sqrt(lo * hi)


def arrival_times(
    cfg: ArrivalConfig,
    rng: np.random.Generator,
    count: int | None = None,
    duration: float | None = None,
    rate: float | None = None,
) -> np.ndarray:
    """Arrival times from 0: the first `count`, or all before `duration` (both: whichever ends first).

    `rate` overrides `cfg.rate` (the workload-level rate alias and class scaling use it).
    """
    curve = RateCurve(rate or cfg.rate, cfg.rate_schedule)
    if count is not None:
        u = np.cumsum(unit_gaps(cfg, count, rng))
        u = u[u < curve.total] if math.isfinite(curve.total) else u
    else:
        u = _operational_times_until(cfg, curve.cumulative(duration), rng)
    times = curve.inverse(u)
    return times[times < duration] if duration is not None else times


def _operational_times_until(cfg: ArrivalConfig, limit: float, rng: np.random.Generator) -> np.ndarray:
    chunks, u = [], 0.0
    block = max(16, int(limit * 1.1) + 16)
    while u <= limit:
        times = u + np.cumsum(unit_gaps(cfg, block, rng))
        chunks.append(times)
        u = times[-1]
    times = np.concatenate(chunks)
    return times[times < limit]


def lengths(cfg: LengthDist, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` token counts, integers clipped to [min, max]."""
    if cfg.dist == "fixed":
        x = np.full(n, float(cfg.value))
    elif cfg.dist == "uniform":
        x = rng.integers(cfg.min, cfg.max + 1, n).astype(float)
    elif cfg.dist == "lognormal":
        mu = math.log(cfg.mean) - cfg.sigma**2 / 2
        x = rng.lognormal(mu, cfg.sigma, n)
    elif cfg.dist == "zipf":
        x = rng.zipf(cfg.alpha, n).astype(float) * cfg.min
    else:
        raise ValueError(cfg.dist)
    return np.clip(np.rint(x), cfg.min, cfg.max).astype(np.int64)
