"""Pooled inter-token gaps (ITL/TBT) without keeping every token.

A decode cohort advances all its members by one token per step, so every member that emitted its
previous token at the cohort's previous step sees the same gap: that step's end minus the previous
step's end. One weighted record `(gap, members)` per cohort step (per class) therefore stands for
all those tokens; members that joined since the previous step, and tokens computed outside the
cohort (a recompute, the first decode after a KV handoff), are recorded one by one.

Records are buffered and folded into a log-spaced histogram (`BINS_PER_DECADE` bins per factor of
ten, so a bin is 0.1% wide). The count, mean, minimum and maximum are exact; percentiles and the
mean of the worst 10% are read from the histogram and lie within half a bin (0.05%) of the exact
values over the same tokens (inverse-CDF percentiles, as `np.percentile(method="inverted_cdf")`).
"""

from __future__ import annotations

import math

import numpy as np

BINS_PER_DECADE = 2303
"""log10(1.001) = 1/2303: bins 0.1% wide."""
LOW_S, HIGH_S = 1e-7, 1e6
"""Histogram range; gaps outside it land in the end bins (min and max stay exact)."""
NUM_BINS = int(math.ceil(math.log10(HIGH_S / LOW_S) * BINS_PER_DECADE)) + 1
FLUSH_AT = 1 << 15
QUANTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
WORST_FRACTION = 0.10


class _Series:
    """One class's gaps: scalar records in lists, runs as arrays, folded into a histogram."""

    __slots__ = ("gaps", "weights", "runs", "pending", "hist", "count", "total", "low", "high")

    def __init__(self):
        self.gaps: list[float] = []
        self.weights: list[float] = []
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending = 0
        self.hist = np.zeros(NUM_BINS)
        self.count = 0.0
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf

    def add(self, gap: float, weight: float) -> None:
        self.gaps.append(gap)
        self.weights.append(weight)
        self.pending += 1
        if self.pending >= FLUSH_AT:
            self.flush()

    def add_run(self, gaps: np.ndarray, weights: np.ndarray) -> None:
        self.runs.append((gaps, weights))
        self.pending += len(gaps)
        if self.pending >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        parts_g = [np.asarray(self.gaps, dtype=np.float64)] + [g for g, _ in self.runs]
        parts_w = [np.asarray(self.weights, dtype=np.float64)] + [w for _, w in self.runs]
        g, w = np.concatenate(parts_g), np.concatenate(parts_w)
        keep = w > 0
        g, w = g[keep], w[keep]
        self.gaps, self.weights, self.runs, self.pending = [], [], [], 0
        if not len(g):
            return
        self.count += float(w.sum())
        self.total += float((g * w).sum())
        self.low = min(self.low, float(g.min()))
        self.high = max(self.high, float(g.max()))
        self.hist += np.bincount(_bin_index(g), weights=w, minlength=NUM_BINS)


def _bin_index(gaps: np.ndarray) -> np.ndarray:
    x = np.log10(np.maximum(gaps, LOW_S) / LOW_S) * BINS_PER_DECADE
    return np.minimum(x.astype(np.int64), NUM_BINS - 1)


def _bin_value(index: np.ndarray | int) -> np.ndarray | float:
    """Geometric middle of a bin."""
    return LOW_S * 10 ** ((np.asarray(index) + 0.5) / BINS_PER_DECADE)


class TokenGaps:
    """Inter-token gaps of a run, per request class. Fed by the engine, read by `summary`."""

    def __init__(self):
        self._series: dict[str, _Series] = {}

    def _of(self, cls: str) -> _Series:
        s = self._series.get(cls)
        if s is None:
            s = self._series[cls] = _Series()
        return s

    def add(self, gap: float, cls: str = "default") -> None:
        """One token emitted `gap` seconds after its request's previous token."""
        self._of(cls).add(gap, 1.0)

    def cohort_steps(self, prev_end: float, ends: np.ndarray, class_counts: dict, joiners: dict) -> None:
        """A decode cohort ran `len(ends)` steps. `class_counts`: members per class; `joiners`:
        members that joined since the previous cohort step -> their previous token's time."""
        per_class: dict[str, int] = {}
        for request, last in joiners.items():
            per_class[request.class_name] = per_class.get(request.class_name, 0) + 1
            self.add(float(ends[0]) - last, request.class_name)
        k = len(ends)
        if k == 1:
            gap = float(ends[0]) - prev_end
            for cls, n in class_counts.items():
                settled = n - per_class.get(cls, 0)
                if settled > 0:
                    self._of(cls).add(gap, float(settled))
            return
        gaps = np.empty(k)  # np.diff(ends, prepend=...) without its per-call overhead
        gaps[0] = ends[0] - prev_end if prev_end == prev_end else 0.0
        np.subtract(ends[1:], ends[:-1], out=gaps[1:])
        for cls, n in class_counts.items():
            if n <= 0:
                continue
            weights = np.full(k, float(n))
            weights[0] -= per_class.get(cls, 0)
            self._of(cls).add_run(gaps, weights)

    # -- reading ------------------------------------------------------------------------------------
    def classes(self) -> list[str]:
        return sorted(self._series)

    def stats(self, cls: str | None = None) -> dict[str, float]:
        """`{mean, p50, p90, p99, worst10_mean, max, count}` over every class, or over one."""
        series = list(self._series.values()) if cls is None else [self._series.get(cls, _Series())]
        for s in series:
            s.flush()
        count = sum(s.count for s in series)
        if count <= 0:
            return {"mean": math.nan, **{k: math.nan for k in QUANTILES}, "worst10_mean": math.nan,
                    "max": math.nan, "count": 0}
        hist = series[0].hist if len(series) == 1 else np.sum([s.hist for s in series], axis=0)
        total = sum(s.total for s in series)
        low = min(s.low for s in series)
        high = max(s.high for s in series)
        out = {"mean": total / count}
        cum = np.cumsum(hist)
        for name, q in QUANTILES.items():
            out[name] = _clip(_bin_value(int(np.searchsorted(cum, q * count, side="left"))), low, high)
        out["worst10_mean"] = _clip(_tail_mean(hist, cum, count), low, high)
        out["max"] = high
        out["count"] = int(round(count))
        return out


def _tail_mean(hist: np.ndarray, cum: np.ndarray, count: float) -> float:
    """Mean of the largest WORST_FRACTION of the weight (the boundary bin taken in part)."""
    tail = WORST_FRACTION * count
    start = int(np.searchsorted(cum, count - tail, side="right"))
    values = _bin_value(np.arange(start, len(hist)))
    weights = hist[start:].copy()
    above = cum[-1] - cum[start]  # weight strictly above the boundary bin
    weights[0] = tail - above
    return float((values * weights).sum() / tail)


def _clip(value: float, low: float, high: float) -> float:
    return float(min(max(value, low), high))
