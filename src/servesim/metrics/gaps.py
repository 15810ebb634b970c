"""Pooled inter-token gaps (ITL/TBT) without keeping every token.

A decode cohort advances all its members by one token per step, so every member that emitted its
previous token at the cohort's previous step sees the same gap: that step's end minus the previous
step's end. One weighted record `(gap, members)` per cohort step (per class) therefore stands for
all those tokens; members that joined since the previous step, and tokens computed outside the
cohort (a recompute, the first decode after a KV handoff), are recorded one by one.

Several instances pool their records in one `TokenGaps`, in whatever order their runs settle: the
count, the histogram (integer weights), the minimum and maximum do not depend on it, and the total
is summed exactly (`metrics.exact`), so the mean, rounded once, does not either.

Records are buffered and folded into a log-spaced histogram (`BINS_PER_DECADE` bins per factor of
ten, so a bin is 0.1% wide). The count, minimum and maximum are exact, the mean correctly
rounded; percentiles and the mean of the worst 10% are read from the histogram and lie within
half a bin (0.05%) of the exact values over the same tokens (inverse-CDF percentiles, as
`np.percentile(method="inverted_cdf")`).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from servesim.metrics.exact import units_to_float, weighted_units

Joiners = dict[Any, float]
"""Cohort members that joined since the step before -> their previous token's time. Keys are
requests, read for their `class_name` only (typed Any: tests pass stand-ins, which a compiled
`Request` type would refuse)."""

BINS_PER_DECADE = 2303
"""log10(1.001) = 1/2303: bins 0.1% wide."""
LOW_S, HIGH_S = 1e-7, 1e6
"""Histogram range; gaps outside it land in the end bins (min and max stay exact)."""
NUM_BINS = int(math.ceil(math.log10(HIGH_S / LOW_S) * BINS_PER_DECADE)) + 1
FLUSH_AT = 1 << 15
_Pair = tuple[np.ndarray, np.ndarray]
QUANTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
WORST_FRACTION = 0.10


class _Series:
    """One class's gaps: scalar records in lists, decode runs as their step ends (one flat list
    for every run) and each run's first record, folded into a histogram."""

    __slots__ = ("gaps", "weights", "run_ends", "run_lengths", "run_weights", "run_first_gaps",
                 "run_first_weights", "pending", "flush_at", "hist", "count", "units", "nonfinite", "low",
                 "high")

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.weights: list[float] = []
        self.run_ends: list[float] = []
        self.run_lengths: list[int] = []
        self.run_weights: list[float] = []
        self.run_first_gaps: list[float] = []
        self.run_first_weights: list[float] = []
        self.pending = 0
        self.flush_at = FLUSH_AT  # (read once, not as a module global per record; tests lower it)
        self.hist = np.zeros(NUM_BINS)
        self.count = 0.0
        self.units = 0
        """The weighted gaps' exact sum, in units of 2**-1074 s (`metrics.exact`)."""
        self.nonfinite = 0.0
        """The sum of weighted gaps that are not finite (none in a sound run; kept apart)."""
        self.low = math.inf
        self.high = -math.inf

    def add(self, gap: float, weight: float) -> None:
        self.gaps.append(gap)
        self.weights.append(weight)
        self.pending += 1
        if self.pending >= self.flush_at:
            self.flush()

    def add_run(self, ends: np.ndarray | list[float], prev: float, weight: float, joined: int) -> None:
        """A decode run's steps, ending at `ends` (`prev`: the step before's end, NaN before the
        cohort's first): each step's gap weighted `weight`, the first step's `weight - joined`
        (its joiners record their own), its gap 0 without a step before. Made into arrays when
        the series flushes, every run at once (`_run_records`)."""
        steps = _listed(ends)
        self.run_ends.extend(steps)
        self.run_lengths.append(len(steps))
        self.run_weights.append(weight)
        self.run_first_gaps.append(steps[0] - prev if prev == prev else 0.0)
        self.run_first_weights.append(weight - joined)
        self.pending += len(steps)
        if self.pending >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        g, w, summed = _records(self.gaps, self.weights, self.run_ends, self.run_lengths, self.run_weights,
                                self.run_first_gaps, self.run_first_weights)
        self.gaps, self.weights, self.run_ends, self.run_lengths = [], [], [], []
        self.run_weights, self.run_first_gaps, self.run_first_weights = [], [], []
        self.pending = 0
        keep = w > 0
        if not keep.all():
            g, w = g[keep], w[keep]
        if not len(g):
            return
        self.count += float(w.sum())
        self.low = min(self.low, float(g.min()))
        self.high = max(self.high, float(g.max()))
        self.hist += np.bincount(_bin_index(g), weights=w, minlength=NUM_BINS)
        finite = np.isfinite(g)
        if not finite.all():
            self.nonfinite += float((g[~finite] * w[~finite]).sum())
            g, w = g[finite], w[finite]
        elif summed is not None:  # the same sum from fewer values
            g, w = summed
        self.units += weighted_units(g, w)


def _records(gaps: list[float], weights: list[float], ends: list[float], lengths: list[int],
             run_weights: list[float], first_gaps: list[float], first_weights: list[float],
             ) -> tuple[np.ndarray, np.ndarray, _Pair | None]:
    """Every record's gap and weight: `_Series.add_run`'s runs' steps (the same values a run's
    own `np.diff` and `np.full` give, element by element the same operations), then the single
    records (`gaps`, `weights`) as runs of one step, in a few numpy calls for all of them; and
    the same records' exact-sum inputs, fewer (`_telescoped`). `ends`: every run's step ends;
    `lengths`, `run_weights`: each run's steps and their weight; `first_gaps`, `first_weights`:
    each run's first record."""
    n, runs, k = len(ends), len(lengths), len(gaps)
    steps = np.concatenate([_ints(lengths), np.ones(k, np.int64)])
    lasts = np.cumsum(steps)
    lasts -= 1
    firsts = lasts - steps
    firsts += 1
    at = _floats(ends)
    g = np.empty(n + k)
    np.subtract(at[1:], at[:-1], out=g[1:n])
    if k:  # (packed in place: no copy of the whole)
        struct.Struct(f"{k}d").pack_into(g, 8 * n, *gaps)  # type: ignore[arg-type]  # (a buffer)
    head_g, head_w = _floats(first_gaps), _floats(first_weights)
    g[firsts[:runs]] = head_g
    each_w = _floats(run_weights + weights)
    w = np.repeat(each_w, steps)
    w[firsts[:runs]] = head_w
    telescoped = _telescoped(at, steps[:runs], firsts[:runs], lasts[:runs], g, w, each_w, head_w)
    return g, w, telescoped


def _telescoped(at: np.ndarray, steps: np.ndarray, firsts: np.ndarray, lasts: np.ndarray, g: np.ndarray,
                w: np.ndarray, each_w: np.ndarray, head_w: np.ndarray) -> _Pair | None:
    """`_records`' records (those of weight > 0) as fewer values and weights of the same exact
    sum: a run whose ends never fall and lie within a factor 2 of each other has exact step
    differences (Sterbenz), so its later steps sum to weight * (last end - first end): two inputs
    instead of one a step. Its first record, single records and every step of other runs stay
    as they are. None (sum the records themselves) where a gap is negative or NaN or a weight
    (`each_w`: each run's, then each single record's) not positive, as in no sound run."""
    if not (g.min() >= 0 and each_w.min() > 0):
        return None
    n, runs = len(at), len(steps)
    run_w = each_w[:runs]
    start, end = at[firsts], at[lasts]
    fits = (start >= 0) & (start + start >= end) & (end < math.inf)
    on = head_w > 0
    values = [g[n:], g[firsts][on], end, start]
    weights = [w[n:], head_w[on], run_w, -run_w]
    if not fits.all():
        values[2:], weights[2:] = [end[fits], start[fits]], [run_w[fits], -run_w[fits]]
        loose = np.repeat(~fits, steps)
        loose[firsts] = False
        values.append(g[:n][loose])
        weights.append(w[:n][loose])
    return np.concatenate(values), np.concatenate(weights)


def _listed(ends: np.ndarray | list[float]) -> list[float]:
    """A run's step ends as a list (they come as either)."""
    return ends if isinstance(ends, list) else ends.tolist()


def _floats(values: list[float]) -> np.ndarray:
    """`np.array(values)` (read-only) at about a third of its cost: numpy converts a list of
    floats item by item through its generic machinery, `struct` in one tight C loop (a `Struct`'s
    own `pack` takes the list as one tuple; `struct.pack(fmt, *values)` copies it twice)."""
    return np.frombuffer(struct.Struct(f"{len(values)}d").pack(*values), dtype=np.float64)


def _ints(values: list[int]) -> np.ndarray:
    """`np.array(values)` for a list of ints, as `_floats` (a quarter of `np.fromiter`'s cost)."""
    return np.frombuffer(struct.Struct(f"{len(values)}q").pack(*values), dtype=np.int64)


def _bin_index(gaps: np.ndarray) -> np.ndarray:
    x = np.maximum(gaps, LOW_S)
    x /= LOW_S  # (in place: the same operations as log10(maximum(...) / LOW_S) * BINS_PER_DECADE)
    np.log10(x, out=x)
    x *= BINS_PER_DECADE
    index = x.astype(np.int64)
    return np.minimum(index, NUM_BINS - 1, out=index)


def _bin_value(index: np.ndarray | int) -> np.ndarray | float:
    """Geometric middle of a bin."""
    return LOW_S * 10 ** ((np.asarray(index) + 0.5) / BINS_PER_DECADE)


class TokenGaps:
    """Inter-token gaps of a run, per request class. Fed by the engine, read by `summary`."""

    def __init__(self) -> None:
        self._series: dict[str, _Series] = {}

    def _of(self, cls: str) -> _Series:
        s = self._series.get(cls)
        if s is None:
            s = self._series[cls] = _Series()
        return s

    def add(self, gap: float, cls: str = "default") -> None:
        """One token emitted `gap` seconds after its request's previous token."""
        self._of(cls).add(gap, 1.0)

    def cohort_steps(self, prev_end: float, ends: np.ndarray | list[float], class_counts: dict[str, int],
                     joiners: Joiners) -> None:
        """A decode cohort ran `len(ends)` steps. `class_counts`: members per class; `joiners`:
        members that joined since the previous cohort step -> their previous token's time."""
        if len(ends) == 1:
            _one_step(self, prev_end, float(ends[0]), class_counts, _by_class(joiners))
            return
        per_class: dict[str, int] = {}
        first = float(ends[0])
        for request, last in joiners.items():
            per_class[request.class_name] = per_class.get(request.class_name, 0) + 1
            self._of(request.class_name).add(first - last, 1.0)
        for cls, n in class_counts.items():
            if n > 0:
                self._of(cls).add_run(ends, prev_end, float(n), per_class.get(cls, 0))

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
        low = min(s.low for s in series)
        high = max(s.high for s in series)
        out = {"mean": _mean(series, count)}
        cum = np.cumsum(hist)
        for name, q in QUANTILES.items():
            at = int(np.searchsorted(cum, q * count, side="left"))
            out[name] = _clip(_bin_value(at), low, high)  # type: ignore[arg-type]  # one bin: a float
        out["worst10_mean"] = _clip(_tail_mean(hist, cum, count), low, high)
        out["max"] = high
        out["count"] = int(round(count))
        return out


def _mean(series: list[_Series], count: float) -> float:
    """The weighted mean gap, correctly rounded from the exact sum (weights are token counts, so
    `count` is an integer)."""
    nonfinite = sum(s.nonfinite for s in series)
    if nonfinite:
        return nonfinite
    return units_to_float(sum(s.units for s in series), int(count))


def _by_class(joiners: Joiners) -> list[tuple[str, float]]:
    """Joiners as (class, their previous token's time)."""
    return [(request.class_name, last) for request, last in joiners.items()]


def _one_step(
    owner: TokenGaps, prev: float, end: float, classes: dict[str, int], joiners: list[tuple[str, float]],
) -> None:
    """One cohort step's records: each joiner's own gap (`joiners`: (class, its previous token's
    time)), then the other members' per class (`classes`: class -> members)."""
    gap = end - prev
    if not joiners:  # the common case
        for cls, n in classes.items():
            if n > 0:
                owner._of(cls).add(gap, float(n))
        return
    per_class: dict[str, int] = {}
    for cls, last in joiners:
        per_class[cls] = per_class.get(cls, 0) + 1
        owner._of(cls).add(end - last, 1.0)
    for cls, n in classes.items():
        settled = n - per_class.get(cls, 0)
        if settled > 0:
            owner._of(cls).add(gap, float(settled))


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
