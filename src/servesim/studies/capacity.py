"""Capacity search: the largest load (or smallest resource) at which the targets still hold.

Assumes the targets hold on one side of a threshold: below it for `direction="max"` (a rate),
above it for `direction="min"` (instances). Starting from the config's value (or `low`/`high`),
the search doubles or halves until it brackets the threshold, then bisects until the bracket is
within `rel_tol` (continuous keys) or adjacent (integer keys). Every evaluation uses the same seeds,
so evaluations differ only in the varied key (common random numbers keep the curve monotone in
practice even where the simulation is noisy).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servesim.config import SimConfig, load_config
from servesim.core.errors import ArgumentError, ConfigError
from servesim.simulation import simulate
from servesim.studies.steady import DEFAULT_POLICY, GROWING, SteadyPolicy, verdict
from servesim.studies.summaries import flatten, is_metric

MAX_EXPANSIONS = 12
"""Doublings or halvings tried while bracketing (a factor of 4096 either way)."""

_OPS = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Target:
    metric: str
    op: str
    value: float

    def holds(self, metrics: Mapping[str, float]) -> bool:
        v = metrics.get(self.metric, math.nan)
        return not math.isnan(v) and _OPS[self.op](v, self.value)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_target(text: str) -> Target:
    """`latency.ttft.p99<=0.5` or `slo.attainment>=0.95`."""
    m = re.fullmatch(r"\s*([\w.]+)\s*(>=|<=)\s*([-+0-9.eE]+)\s*", text)
    if not m:
        raise ArgumentError("target", f"expected METRIC<=VALUE or METRIC>=VALUE, got {text!r}")
    metric, op, value = m.group(1), m.group(2), m.group(3)
    if not is_metric(metric):
        raise ArgumentError("target", f"{metric!r} is not a summary metric (e.g. latency.ttft.p99)")
    try:
        return Target(metric, op, float(value))
    except ValueError:
        raise ArgumentError("target", f"{value!r} is not a number") from None


def attainment_target(a: float) -> Target:
    if not 0 < a <= 1:
        raise ArgumentError("target_attainment", f"must be in (0, 1], got {a}")
    return Target("slo.attainment", ">=", a)


@dataclass
class Evaluation:
    value: float
    met: bool
    metrics: dict[str, float]
    """Mean over seeds of each metric."""
    num_requests: int | None = None
    """The workload's length at this evaluation (after any lengthening)."""
    steady: str = "not checked"
    """`steady` (a met run that passed the checks), `not checked` (no check, or the targets were
    missed: a longer run would not help), or `unsustainable: ...` (then `met` is False)."""


@dataclass
class CapacityResult:
    key: str
    direction: str
    targets: list[Target]
    value: float | None
    """The best value meeting every target; None when no evaluated value met them."""
    bracketed: bool
    """False when the search ran into its limit with the targets still met (the true capacity
    may lie beyond `value`) or never met them."""
    evaluations: list[Evaluation] = field(default_factory=list)
    length: tuple[str, float] | None = None
    """The workload length key and value the search ended with (lengthened for steady state)."""

    @property
    def met(self) -> bool:
        return self.value is not None

    def at_value(self) -> Evaluation | None:
        return next((e for e in self.evaluations if e.value == self.value), None)

    def length_override(self) -> dict:
        """`{workload length key: value}` of the evaluation at the answer ({} if none)."""
        best = self.at_value()
        if self.length is None or best is None or best.num_requests is None:
            return {}
        return {self.length[0]: best.num_requests}

    def to_dict(self) -> dict:
        best = self.at_value()
        return {
            "key": self.key,
            "value": self.value,
            "attainment_at_value": best.metrics.get("slo.attainment") if best else None,
            "direction": self.direction,
            "targets": [str(t) for t in self.targets],
            "met": self.met,
            "bracketed": self.bracketed,
            "length": {self.length[0]: self.length[1]} if self.length else None,
            "evaluations": [
                {"value": e.value, "met": e.met, "attainment": e.metrics.get("slo.attainment"),
                 **{t.metric: e.metrics.get(t.metric) for t in self.targets
                    if t.metric != "slo.attainment"},
                 "num_requests": e.num_requests, "steady": e.steady}
                for e in self.evaluations
            ],
        }


def default_direction(key: str) -> str:
    """More load is better for workload keys; fewer resources for everything else."""
    return "max" if key.startswith("workload.") else "min"


def find_capacity(
    config: str | Path | Mapping | SimConfig,
    targets: Sequence[Target],
    key: str = "workload.arrival.rate",
    direction: str | None = None,
    low: float | None = None,
    high: float | None = None,
    seeds: int | Sequence[int] = 1,
    rel_tol: float = 0.02,
    max_evals: int = 40,
    on_eval: Callable[[Evaluation], None] | None = None,
    steady: SteadyPolicy | None = DEFAULT_POLICY,
) -> CapacityResult:
    """The best value of `key` meeting every target. With `steady` (the default), a run too short
    to stand for the steady state (studies/steady.py) is lengthened, doubling the workload's
    requests (or duration) up to `steady.max_requests`; a load whose queue still grows there
    misses, and a run that is still too short there is refused (ConfigError)."""
    base = load_config(config)
    direction = direction or default_direction(key)
    if direction not in ("max", "min"):
        raise ArgumentError("direction", f"expected max or min, got {direction!r}")
    if not targets:
        raise ArgumentError("target", "give an attainment target or at least one metric target")
    start, integer = _start_value(base, key, low, high)
    seed_list = [base.seed + i for i in range(seeds)] if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise ArgumentError("seeds", "must be >= 1")
    search = _Search(base, key, targets, seed_list, integer, on_eval, steady)
    good_low = direction == "max"  # targets hold below the threshold when maximising
    lo, hi = _bracket(search, start, low, high, good_low, integer)
    bracketed = lo is not None and hi is not None
    if bracketed:
        good, bad = (lo, hi) if good_low else (hi, lo)
        while search.count < max_evals and not _close(good, bad, rel_tol, integer):
            mid = (good + bad) // 2 if integer else (good + bad) / 2
            if search.met(mid):
                good = mid
            else:
                bad = mid
    passing = [e.value for e in search.evaluations if e.met]
    value = (max if good_low else min)(passing) if passing else None
    return CapacityResult(key, direction, list(targets), value, bracketed and value is not None,
                          search.evaluations, search.length)


class _Search:
    """Evaluates a value (mean metrics over the seeds), caching by value."""

    def __init__(self, base, key, targets, seeds, integer, on_eval, steady=None):
        self.base, self.key, self.targets, self.seeds = base, key, targets, seeds
        self.integer, self.on_eval, self.steady = integer, on_eval, steady
        self.evaluations: list[Evaluation] = []
        self._cache: dict[float, bool] = {}
        self.length = _length(base) if steady is not None else None
        """(key, value) of the workload's length, doubled when a run is too short."""

    @property
    def count(self) -> int:
        return len(self.evaluations)

    def met(self, value) -> bool:
        if value in self._cache:
            return self._cache[value]
        while True:
            metrics, frames = self._run(value)
            ok = all(t.holds(metrics) for t in self.targets)
            why = self._unsteady(metrics, frames) if ok and self.steady is not None else None
            if why is None or not self._lengthen():
                break
        state = "not checked" if self.steady is None or not ok else "steady"
        if why is not None:
            if why.kind != GROWING:
                raise ConfigError(
                    self.length[0] if self.length else "workload",
                    f"too short for a steady-state verdict at {self.key}={value:g}: {why.message}; "
                    "lengthen the workload, or skip the steady-state check",
                )
            ok, state = False, f"unsustainable: {why.message}"
        e = Evaluation(value, ok, metrics, self.length[1] if self.length else None, state)
        self.evaluations.append(e)
        self._cache[value] = ok
        if self.on_eval:
            self.on_eval(e)
        return ok

    def _run(self, value):
        """Mean flattened metrics over the seeds, and each seed's requests frame."""
        overrides = {self.key: value}
        if self.length is not None:
            overrides[self.length[0]] = self.length[1]
        runs, frames = [], []
        for seed in self.seeds:
            try:
                result = simulate(load_config(self.base, {**overrides, "seed": seed}))
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001  (one line naming the evaluation)
                message = " ".join(str(exc).split()) or type(exc).__name__
                raise ConfigError(self.key, f"evaluation at {value} failed: {message}") from None
            runs.append(flatten(result.summary))
            frames.append(result.requests)
        metrics = {m: float(sum(r.get(m, math.nan) for r in runs) / len(runs))
                   for m, v in runs[0].items() if isinstance(v, (int, float))}
        missing = [t.metric for t in self.targets if t.metric not in metrics]
        if missing:
            raise ArgumentError("target", f"unknown metric {missing[0]!r}")
        return metrics, frames

    def _unsteady(self, metrics, frames):
        """The first seed's reason not to trust the run (counts and latency: the seeds' mean)."""
        for frame in frames:
            why = verdict(frame, metrics, self.targets, self.steady)
            if why is not None:
                return why
        return None

    def _lengthen(self) -> bool:
        """Double the workload's length, if allowed; False when it cannot grow."""
        if self.length is None:
            return False
        key, current = self.length
        limit = self.steady.max_requests
        if key == "workload.num_requests":
            if current >= limit:
                return False
            self.length = (key, min(2 * current, limit))
            return True
        if _count(self.base, 2 * current) > limit:
            return False
        self.length = (key, 2 * current)
        return True


def _length(base: SimConfig) -> tuple[str, float] | None:
    """The key that sets how long a synthetic workload runs, and its value (None: a trace)."""
    w = base.workload
    if not w.has_synthetic_source:
        return None
    if w.num_requests is not None:
        return "workload.num_requests", w.num_requests
    return "workload.duration_s", w.duration_s


def _count(base: SimConfig, duration_s: float) -> float:
    """Requests a duration-bounded workload is expected to generate (rate x duration)."""
    rate = base.workload.rate or base.workload.arrival.rate
    return rate * duration_s


def _bracket(search: _Search, start, low, high, good_low: bool, integer: bool):
    """(lo, hi) with the targets met on the good side and missed on the other; None for a side
    that the expansion could not find."""
    if low is not None and high is not None:
        good_end, bad_end = (low, high) if good_low else (high, low)
        if not search.met(good_end):
            return (None, good_end) if good_low else (good_end, None)
        if search.met(bad_end):
            return (bad_end, None) if good_low else (None, bad_end)
        return low, high
    x = start
    up = 2
    toward_bad = (lambda v: v * up) if good_low else (lambda v: _shrink(v, integer))
    toward_good = (lambda v: _shrink(v, integer)) if good_low else (lambda v: v * up)
    first_met = search.met(x)
    step = toward_bad if first_met else toward_good
    prev = x
    for _ in range(MAX_EXPANSIONS):
        nxt = step(prev)
        if nxt == prev or not _allowed(search, nxt):
            break
        if search.met(nxt) != first_met:
            good, bad = (prev, nxt) if first_met else (nxt, prev)
            return (good, bad) if good_low else (bad, good)
        prev = nxt
    # Ran out of room: all evaluations agreed.
    if first_met:
        return (prev, None) if good_low else (None, prev)
    return (None, prev) if good_low else (prev, None)


def _shrink(v, integer: bool):
    return max(1, v // 2) if integer else v / 2


def _allowed(search: _Search, value) -> bool:
    """Whether the schema accepts the value (a rate above its bound ends the expansion)."""
    try:
        load_config(search.base, {search.key: value})
    except ConfigError:
        return False
    return True


def _close(a, b, rel_tol: float, integer: bool) -> bool:
    if integer:
        return abs(a - b) <= 1
    return abs(a - b) <= rel_tol * min(abs(a), abs(b))


def _start_value(base: SimConfig, key: str, low, high) -> tuple[Any, bool]:
    """The search's first value (the config's own) and whether the key takes integers."""
    load_config(base, {key: _lookup(base, key, required=False)})  # key exists in the schema
    current = _lookup(base, key, required=low is None and high is None)
    sample = current if current is not None else (low if low is not None else high)
    integer = isinstance(sample, int) and not isinstance(sample, bool)
    if not isinstance(sample, (int, float)) or isinstance(sample, bool):
        raise ConfigError(key, f"is not numeric (got {sample!r}); capacity varies a number")
    for name, bound in (("low", low), ("high", high)):
        if bound is not None and bound <= 0:
            raise ArgumentError(name, f"must be > 0, got {bound}")
    if low is not None and high is not None and low >= high:
        raise ArgumentError("low", f"must be below high ({low} >= {high})")
    if integer:
        low = int(low) if low is not None else None
        high = int(high) if high is not None else None
    if current is None or (low is not None and current < low) or (high is not None and current > high):
        current = low if low is not None else high
    return current, integer


def _lookup(config: SimConfig, key: str, required: bool):
    node: Any = config.model_dump(mode="python")
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            if required:
                raise ConfigError(key, "not set in the config; give the search range (low and high)")
            return None
        node = node[part]
    if node is None and required:
        raise ConfigError(key, "not set in the config; give the search range (low and high)")
    return node
