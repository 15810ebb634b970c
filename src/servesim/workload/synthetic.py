"""Synthetic arrivals and lengths drawn from the workload's own RNG stream."""

from __future__ import annotations

import math

import numpy as np

from servesim.config.workload import ArrivalConfig, LengthDist, WorkloadConfig
from servesim.workload.table import RequestTable


def interarrivals(cfg: ArrivalConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` inter-arrival gaps (seconds) with mean 1/rate."""
    mean = 1.0 / cfg.rate
    if cfg.process == "poisson":
        return rng.exponential(mean, n)
    if cfg.process == "constant":
        return np.full(n, mean)
    if cfg.process == "gamma":
        shape = 1.0 / cfg.cv**2
        return rng.gamma(shape, mean / shape, n)
    if cfg.process == "weibull":
        k = weibull_shape_for_cv(cfg.cv)
        scale = mean / math.gamma(1 + 1 / k)
        return scale * rng.weibull(k, n)
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


def generate(cfg: WorkloadConfig, rng: np.random.Generator) -> RequestTable:
    """Arrivals first, then lengths, so changing a length law never moves an arrival."""
    arrival_rng, length_rng = rng.spawn(2)
    if cfg.num_requests is not None:
        times = np.cumsum(interarrivals(cfg.arrival, cfg.num_requests, arrival_rng))
        if cfg.duration_s is not None:
            times = times[times <= cfg.duration_s]
    else:
        times = _until(cfg.arrival, cfg.duration_s, arrival_rng)
    n = len(times)
    return RequestTable(times, lengths(cfg.lengths.prompt, n, length_rng), lengths(cfg.lengths.output, n, length_rng))


def _until(cfg: ArrivalConfig, duration: float, rng: np.random.Generator) -> np.ndarray:
    chunks, t = [], 0.0
    block = max(16, int(cfg.rate * duration * 1.2) + 16)
    while t <= duration:
        times = t + np.cumsum(interarrivals(cfg, block, rng))
        chunks.append(times)
        t = times[-1]
    times = np.concatenate(chunks)
    return times[times <= duration]
