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
import struct
from typing import Any

import numpy as np

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
QUANTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
WORST_FRACTION = 0.10


class _Series:
    """One class's gaps: scalar records in lists, decode runs as their step ends (one flat list
    for every run) and each run's first record, folded into a histogram."""

    __slots__ = ("gaps", "weights", "run_ends", "run_lengths", "run_weights", "run_first_gaps",
                 "run_first_weights", "pending", "flush_at", "hist", "count", "total", "low", "high")

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
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf

    def add(self, gap: float, weight: float) -> None:
        self.gaps.append(gap)
        self.weights.append(weight)
        self.pending += 1
        if self.pending >= self.flush_at:
            self.flush()

    def add_many(self, gaps: list[float], weight: float) -> None:
        """`add(gap, weight)` of each gap in turn, flushing where those calls would."""
        at, n = 0, len(gaps)
        while self.pending + (n - at) >= self.flush_at:
            take = self.flush_at - self.pending
            self.gaps.extend(gaps[at : at + take])
            self.weights.extend([weight] * take)
            self.pending += take
            at += take
            self.flush()
        if at < n:
            self.gaps.extend(gaps[at:] if at else gaps)
            self.weights.extend([weight] * (n - at))
            self.pending += n - at

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
        g, w = _floats(self.gaps), _floats(self.weights)
        if self.run_lengths:  # after the scalar records, as they were always summed
            run_g, run_w = _run_records(self.run_ends, self.run_lengths, self.run_weights,
                                        self.run_first_gaps, self.run_first_weights)
            g, w = np.concatenate([g, run_g]), np.concatenate([w, run_w])
            self.run_ends, self.run_lengths, self.run_weights = [], [], []
            self.run_first_gaps, self.run_first_weights = [], []
        keep = w > 0
        if not keep.all():
            g, w = g[keep], w[keep]
        self.gaps, self.weights, self.pending = [], [], 0
        if not len(g):
            return
        self.count += float(w.sum())
        self.total += float((g * w).sum())
        self.low = min(self.low, float(g.min()))
        self.high = max(self.high, float(g.max()))
        self.hist += np.bincount(_bin_index(g), weights=w, minlength=NUM_BINS)


def _run_records(ends: list[float], lengths: list[int], weights: list[float], first_gaps: list[float],
                 first_weights: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """The gaps and weights of `_Series.add_run`'s runs, one after another: the same values a
    run's own `np.diff` and `np.full` give (element by element the same operations), in a few
    numpy calls for all of them instead of a few per run. `ends`: every run's step ends;
    `lengths`, `weights`: each run's steps and their weight; `first_gaps`, `first_weights`:
    each run's first record."""
    steps = np.array(lengths)
    at = _floats(ends)
    firsts = np.cumsum(steps) - steps
    gaps = np.empty_like(at)
    np.subtract(at[1:], at[:-1], out=gaps[1:])
    gaps[firsts] = _floats(first_gaps)
    run_weights = np.repeat(_floats(weights), steps)
    run_weights[firsts] = _floats(first_weights)
    return gaps, run_weights


def _listed(ends: np.ndarray | list[float]) -> list[float]:
    """A run's step ends as a list (they come as either)."""
    return ends if isinstance(ends, list) else ends.tolist()


def _floats(values: list[float]) -> np.ndarray:
    """`np.array(values)` (read-only) at about a third of its cost: numpy converts a list of
    floats item by item through its generic machinery, `struct` in one tight C loop."""
    return np.frombuffer(struct.pack(f"{len(values)}d", *values), dtype=np.float64)


def _bin_index(gaps: np.ndarray) -> np.ndarray:
    x = np.log10(np.maximum(gaps, LOW_S) / LOW_S) * BINS_PER_DECADE
    return np.minimum(x.astype(np.int64), NUM_BINS - 1)


def _bin_value(index: np.ndarray | int) -> np.ndarray | float:
    """Geometric middle of a bin."""
    return LOW_S * 10 ** ((np.asarray(index) + 0.5) / BINS_PER_DECADE)


class TokenGaps:
    """Inter-token gaps of a run, per request class. Fed by the engine, read by `summary`."""

    def __init__(self) -> None:
        self._series: dict[str, _Series] = {}
        self._due: list[tuple[float, int, CohortSteps]] = []
        """Heap of runs' steps still to record: (next step's end, registration, run)."""
        self._registered = 0
        self._clock: Any = None  # what `steps_ahead` was given: its `now` releases due records

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

    def cohort_steps(self, prev_end: float, ends: np.ndarray | list[float], class_counts: dict[str, int],
                     joiners: Joiners) -> None:
        """A decode cohort ran `len(ends)` steps. `class_counts`: members per class; `joiners`:
        members that joined since the previous cohort step -> their previous token's time."""
        if self._due:
            self._release()
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

    def cohort_step_ends(self, prev_end: float, ends: np.ndarray | list[float], class_counts: dict[str, int],
                         joiners: Joiners) -> None:
        """`cohort_steps` of each step alone, one after another (a mixed run's steps, whose
        records must be single steps' bit for bit), in one call: `CohortSteps.record` of them
        all without the object (the first step's records, then each class's later gaps)."""
        if self._due:
            self._release()
        _one_step(self, prev_end, ends[0], class_counts, _by_class(joiners))
        if len(ends) > 1:
            steps = _listed(ends)  # (native float arithmetic where compiled)
            gaps = [steps[i] - steps[i - 1] for i in range(1, len(steps))]
            for cls, n in class_counts.items():
                if n > 0:  # (the first step made its series)
                    self._of(cls).add_many(gaps, float(n))

    def steps_ahead(self, clock, prev_end: float, ends: list[float], class_counts: dict[str, int],
                    joiners: Joiners) -> CohortSteps:
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
            first, ends, steps = run.next, run.ends, run.steps
            if first >= steps:  # a run cut short
                heapq.heappop(due)
                continue
            upto = bisect.bisect_right(ends, now, first, steps)
            if len(due) > 1 and upto > first + 1:  # not past the next run's next step
                rival = due[1] if len(due) == 2 or due[1] < due[2] else due[2]
                cut = bisect.bisect_right if rival[1] > order else bisect.bisect_left
                upto = min(upto, cut(ends, rival[0], first, steps))
            run.record(upto)
            if upto < steps:
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
            at = int(np.searchsorted(cum, q * count, side="left"))
            out[name] = _clip(_bin_value(at), low, high)  # type: ignore[arg-type]  # one bin: a float
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

    __slots__ = ("owner", "prev", "ends", "joiners", "classes", "weighted", "next", "steps")

    def __init__(self, owner: TokenGaps, prev: float, ends: list[float], class_counts: dict[str, int],
                 joiners: Joiners):
        self.owner, self.prev, self.ends = owner, prev, ends
        self.joiners = _by_class(joiners)
        self.classes = dict(class_counts)
        self.weighted: list[tuple[_Series, float]] = []
        """Each class with members and its series, once the first step has made them."""
        self.next = 0
        self.steps = len(ends)

    def record(self, upto: int) -> None:
        """Make the records of steps `next` to `upto - 1`."""
        ends, j = self.ends, self.next
        if j == 0:
            self._record_first()
            j = 1
        if j + 1 == upto:  # the common case, a step at a time
            gap = ends[j] - ends[j - 1]
            for series, n in self.weighted:
                series.add(gap, n)
        elif j < upto:
            gaps = [ends[i] - ends[i - 1] for i in range(j, upto)]
            for series, n in self.weighted:
                series.add_many(gaps, n)
        self.next = upto

    def _record_first(self) -> None:
        """The first step's records; every class with members has its series after it (its
        members joined, or some were here)."""
        owner = self.owner
        _one_step(owner, self.prev, self.ends[0], self.classes, self.joiners)
        self.weighted = [(owner._of(cls), float(n)) for cls, n in self.classes.items() if n > 0]


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
