"""Time-varying arrival rates: the cumulative rate Λ(t) = ∫₀ᵗ rate(s) ds and its inverse."""

from __future__ import annotations

import math

import numpy as np

from servesim.config.workload import RateSchedule

DIURNAL_GRID = 1024
"""Grid points per diurnal period for the first guess of the inverse (Newton steps refine it)."""
MAX_GRID_PERIODS = 4096
"""Periods inverted on one grid (4M points); beyond, arrivals are inverted within one period."""


class RateCurve:
    """`rate(t) = rate * factor(t)`; `factor` is 1, piecewise constant, or a cosine around 1."""

    def __init__(self, rate: float, schedule: RateSchedule | None = None):
        self.rate = rate
        self.schedule = schedule
        if schedule is not None and schedule.kind == "piecewise":
            self.knots = np.array([p[0] for p in schedule.points], dtype=np.float64)
            self.factors = np.array([p[1] for p in schedule.points], dtype=np.float64)
            steps = np.diff(self.knots) * self.factors[:-1] * rate
            self.knot_cumulative = np.concatenate([[0.0], np.cumsum(steps)])

    @property
    def total(self) -> float:
        """Λ(∞): finite only when a piecewise schedule ends with factor 0."""
        s = self.schedule
        if s is not None and s.kind == "piecewise" and self.factors[-1] == 0:
            return float(self.knot_cumulative[-1])
        return math.inf

    def rate_at(self, t) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        s = self.schedule
        if s is None:
            return np.full(t.shape, self.rate)
        if s.kind == "piecewise":
            return self.rate * self.factors[np.searchsorted(self.knots, t, side="right") - 1]
        return self.rate * (1 + s.amplitude * np.cos(2 * np.pi * (t - s.peak_s) / s.period_s))

    def cumulative(self, t) -> np.ndarray | float:
        """Λ(t): expected arrivals in [0, t)."""
        s = self.schedule
        t_arr = np.asarray(t, dtype=np.float64)
        if s is None:
            out = self.rate * t_arr
        elif s.kind == "piecewise":
            i = np.searchsorted(self.knots, t_arr, side="right") - 1
            out = self.knot_cumulative[i] + (t_arr - self.knots[i]) * self.factors[i] * self.rate
        else:
            w = 2 * np.pi / s.period_s
            out = self.rate * (
                t_arr + s.amplitude / w * (np.sin(w * (t_arr - s.peak_s)) + np.sin(w * s.peak_s))
            )
        return float(out) if np.ndim(t) == 0 else out

    def inverse(self, u: np.ndarray) -> np.ndarray:
        """The times t with Λ(t) = u (u increasing, below `total`)."""
        u = np.asarray(u, dtype=np.float64)
        s = self.schedule
        if s is None:
            return u / self.rate
        if s.kind == "piecewise":
            return self._inverse_piecewise(u)
        return self._inverse_diurnal(u, s)

    def _inverse_piecewise(self, u: np.ndarray) -> np.ndarray:
        # segment i holds u in [Λ(knot_i), Λ(knot_i+1)); zero-rate segments are empty and never chosen
        i = np.searchsorted(self.knot_cumulative, u, side="right") - 1
        slope = self.factors[i] * self.rate
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.knots[i] + np.where(slope > 0, (u - self.knot_cumulative[i]) / slope, 0.0)

    def _inverse_diurnal(self, u: np.ndarray, s: RateSchedule) -> np.ndarray:
        if len(u) == 0:
            return u
        per_period = self.rate * s.period_s  # Λ(k P) = k P rate exactly
        ratio = u.max() / per_period
        if not math.isfinite(ratio):  # periods below float resolution: only the mean rate shows
            return u / self.rate
        if ratio + 1 > MAX_GRID_PERIODS:  # a period tiny against the run: invert within one period
            k = np.floor(u / per_period)
            inner = np.clip(u - k * per_period, 0.0, per_period)
            return k * s.period_s + self._inverse_diurnal(inner, s)
        periods = math.ceil(ratio) + 1
        grid = np.linspace(0.0, periods * s.period_s, periods * DIURNAL_GRID + 1)
        cum = self.cumulative(grid)
        i = np.clip(np.searchsorted(cum, u, side="right") - 1, 0, len(grid) - 2)
        lo, hi = grid[i], grid[i + 1]
        t = lo + (u - cum[i]) / np.maximum(cum[i + 1] - cum[i], 1e-300) * (hi - lo)
        for _ in range(3):  # Newton, kept inside the bracketing grid cell
            rate = self.rate_at(t)
            step = np.where(rate > 0, (self.cumulative(t) - u) / np.maximum(rate, 1e-300), 0.0)
            t = np.clip(t - step, lo, hi)
        return t
