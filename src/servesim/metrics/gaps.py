"""Pooled inter-token gaps (ITL/TBT) without keeping every token.

A decode cohort advances all its members by one token per step, so every member that emitted its
previous token at the cohort's previous step sees the same gap: that step's end minus the previous
step's end. One weighted record `(gap, members)` per cohort step (per class) therefore stands for
all those tokens; members that joined since the previous step, and tokens computed outside the
cohort (a recompute, the first decode after a KV handoff), are recorded one by one.

Several instances pool their records in one `TokenGaps`, so records must come in the order the
steps end (the mean is summed in that order). A run of steps slept as one event registers its
steps ahead (`steps_ahead`); each step's records are made once the clock has passed its end, when
the next record is made or the gaps are read, merged in time order with the other runs' (a step
ending at the very instant another record is made comes first; two runs' steps ending together,
in the order the runs were registered). This costs no simulation event per step.

Records are buffered and folded into a log-spaced histogram (`BINS_PER_DECADE` bins per factor of
ten, so a bin is 0.1% wide). The count, mean, minimum and maximum are exact; percentiles and the
mean of the worst 10% are read from the histogram and lie within half a bin (0.05%) of the exact
values over the same tokens (inverse-CDF percentiles, as `np.percentile(method="inverted_cdf")`).
"""

from __future__ import annotations

import bisect
import heapq
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

    def add_many(self, gaps: list[float], weight: float) -> None:
        """`add(gap, weight)` of each gap in turn, flushing where those calls would."""
        at, n = 0, len(gaps)
        while self.pending + (n - at) >= FLUSH_AT:
            take = FLUSH_AT - self.pending
            self.gaps.extend(gaps[at : at + take])
            self.weights.extend([weight] * take)
            self.pending += take
            at += take
            self.flush()
        if at < n:
            self.gaps.extend(gaps[at:] if at else gaps)
            self.weights.extend([weight] * (n - at))
            self.pending += n - at

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
        self._due: list[tuple[float, int, CohortSteps]] = []
        """Heap of runs' steps still to record: (next step's end, registration, run)."""
        self._registered = 0
        self._clock = None  # what `steps_ahead` was given: its `now` releases due records

    def _of(self, cls: str) -> _Series:
        s = self._series.get(cls)
        if s is None:
            s = self._series[cls] = _Series()
        return s

    def add(self, gap: float, cls: str = "default") -> None:
        """One token emitted `gap` seconds after its request's previous token."""
        if self._due:
            self._release()
        self._of(cls).add(gap, 1.0)

    def cohort_steps(self, prev_end: float, ends: np.ndarray, class_counts: dict, joiners: dict) -> None:
        """A decode cohort ran `len(ends)` steps. `class_counts`: members per class; `joiners`:
        members that joined since the previous cohort step -> their previous token's time."""
        if self._due:
            self._release()
        k = len(ends)
        if k == 1:
            CohortSteps(self, prev_end, [float(ends[0])], class_counts, joiners).record(1)
            return
        per_class: dict[str, int] = {}
        for request, last in joiners.items():
            per_class[request.class_name] = per_class.get(request.class_name, 0) + 1
            self._of(request.class_name).add(float(ends[0]) - last, 1.0)
        gaps = np.empty(k)  # np.diff(ends, prepend=...) without its per-call overhead
        gaps[0] = ends[0] - prev_end if prev_end == prev_end else 0.0
        np.subtract(ends[1:], ends[:-1], out=gaps[1:])
        for cls, n in class_counts.items():
            if n <= 0:
                continue
            weights = np.full(k, float(n))
            weights[0] -= per_class.get(cls, 0)
            self._of(cls).add_run(gaps, weights)

    def cohort_step_ends(self, prev_end: float, ends: list[float], class_counts: dict, joiners: dict) -> None:
        """`cohort_steps` of each step alone, one after another (a mixed run's steps, whose
        records must be single steps' bit for bit), in one call."""
        if self._due:
            self._release()
        CohortSteps(self, prev_end, ends, class_counts, joiners).record(len(ends))

    def steps_ahead(self, clock, prev_end: float, ends: list[float], class_counts: dict,
                    joiners: dict) -> CohortSteps:
        """`cohort_step_ends` of steps that end in the future: each step's records are made once
        `clock.now` has passed its end (module doc). Lower the returned run's `steps` if fewer
        steps run (never below those that have ended)."""
        run = CohortSteps(self, prev_end, ends, class_counts, joiners)
        self._clock = clock
        self._registered += 1
        heapq.heappush(self._due, (ends[0], self._registered, run))
        return run

    def _release(self) -> None:
        """Record the registered steps that have ended by now, in order of (end, registration):
        a run's steps at once up to the next step of another run."""
        now, due = self._clock.now, self._due
        while due and due[0][0] <= now:
            _, order, run = due[0]
            first, ends = run.next, run.ends
            if first >= run.steps:  # a run cut short
                heapq.heappop(due)
                continue
            upto = bisect.bisect_right(ends, now, first, run.steps)
            if len(due) > 1:
                rival_end, rival_order, _ = min(due[1:3])  # the heap's second-smallest
                cut = bisect.bisect_right if rival_order > order else bisect.bisect_left
                upto = min(upto, cut(ends, rival_end, first, run.steps))
            run.record(upto)
            if upto < run.steps:
                heapq.heapreplace(due, (ends[upto], order, run))
            else:
                heapq.heappop(due)

    # -- reading ------------------------------------------------------------------------------------
    def classes(self) -> list[str]:
        if self._due:
            self._release()
        return sorted(self._series)

    def stats(self, cls: str | None = None) -> dict[str, float]:
        """`{mean, p50, p90, p99, worst10_mean, max, count}` over every class, or over one."""
        if self._due:
            self._release()
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


class CohortSteps:
    """The gap records of a decode cohort's steps that end at `ends` (`prev`: the step before's
    end), as `TokenGaps.cohort_steps` of each step alone makes them: the members that joined
    since the step before each record their own gap at the first step, the others weighted per
    class. The cohort's classes and joiners are read when the run is made (they do not change
    during a run)."""

    __slots__ = ("owner", "prev", "ends", "joiners", "classes", "next", "steps")

    def __init__(self, owner: TokenGaps, prev: float, ends: list[float], class_counts: dict,
                 joiners: dict):
        self.owner, self.prev, self.ends = owner, prev, ends
        self.joiners = [(request.class_name, last) for request, last in joiners.items()]
        per_class: dict[str, int] = {}
        for cls, _ in self.joiners:
            per_class[cls] = per_class.get(cls, 0) + 1
        self.classes = [(cls, float(n - per_class.get(cls, 0)), float(n)) for cls, n in class_counts.items()]
        self.next = 0
        self.steps = len(ends)

    def record(self, upto: int) -> None:
        """Make the records of steps `next` to `upto - 1`."""
        owner, ends, first = self.owner, self.ends, self.next
        if first == 0:
            for cls, last in self.joiners:
                owner._of(cls).add(ends[0] - last, 1.0)
        before = ends[first - 1] if first else self.prev
        gaps = [ends[first] - before]
        gaps += [b - a for a, b in zip(ends[first : upto - 1], ends[first + 1 : upto])]
        for cls, settled, n in self.classes:
            rest = gaps
            if first == 0:
                if settled > 0:
                    owner._of(cls).add(gaps[0], settled)
                rest = gaps[1:]
            if n > 0 and rest:
                owner._of(cls).add_many(rest, n)
        self.next = upto


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
