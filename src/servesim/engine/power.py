"""Power over simulated time: a meter per instance and a cluster power budget that caps instances.

`PowerMeter` knows how many joules an instance has drawn up to any instant: settled steps, the step in
flight pro rata, and idle power in between (a board draws its idle power whenever no step runs).

`PowerBudget` is a POLCA-style oversubscription controller (Patel et al., "Characterizing Power
Management Opportunities for LLMs in the Cloud", ASPLOS 2024): the cluster is provisioned for less
than the sum of its boards' TDP; every `interval_s` the controller reads the cluster's average power
over the last interval, and when it exceeds `engage_frac` of the budget it caps the instances it
manages (a per-GPU power cap, or an SM clock limit), lifting the cap once power stays below
`release_frac` of the budget. A changed cap interrupts runs of decode steps so they re-price at the new
clock. What it costs shows up as latency; what it saves, as the peak.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import simpy


class PowerMeter:
    def __init__(self, idle_w: float):
        self.idle_w = idle_w
        self._settled_j = 0.0
        self._settled_t = 0.0
        self._step: tuple[float, float, float] | None = None
        """(start, planned end, watts) of the step in flight."""

    def begin(self, start: float, seconds: float, joules: float) -> None:
        self._settled_j += self.idle_w * max(0.0, start - self._settled_t)
        self._settled_t = start
        self._step = (start, start + seconds, joules / seconds if seconds > 0 else 0.0)

    def end(self, now: float, joules: float) -> None:
        self._settled_j += joules
        self._settled_t = now
        self._step = None

    @property
    def last_time(self) -> float:
        """When the last step ended (or started, while one runs)."""
        return self._settled_t

    def joules(self, now: float) -> float:
        if self._step is None:
            return self._settled_j + self.idle_w * max(0.0, now - self._settled_t)
        start, end, watts = self._step
        return self._settled_j + watts * (min(now, end) - start)

    def watts(self, now: float) -> float:
        if self._step is None or now >= self._step[1]:
            return self.idle_w
        return self._step[2]


@dataclass
class BudgetStats:
    budget_w: float
    samples_w: list[float] = field(default_factory=list)
    capped_s: float = 0.0
    over_s: float = 0.0
    cap_events: int = 0

    def summary(self, interval_s: float) -> dict:
        peak = max(self.samples_w, default=0.0)
        mean = sum(self.samples_w) / len(self.samples_w) if self.samples_w else 0.0
        return {
            "budget_w": self.budget_w, "peak_w": peak, "mean_w": mean, "interval_s": interval_s,
            "over_budget_s": self.over_s, "capped_s": self.capped_s, "cap_events": self.cap_events,
        }


class PowerBudget:
    """Caps the instances of some pools while the cluster's power exceeds the budget (module doc)."""

    def __init__(
        self, budget_w: float, interval_s: float, engage_frac: float, release_frac: float,
        cap_w: float | None, clock_by_pool: dict[str, float | None],
    ):
        self.budget_w, self.interval_s = budget_w, interval_s
        self.engage_frac, self.release_frac = engage_frac, release_frac
        self.cap_w = cap_w
        self.clock_by_pool = clock_by_pool
        """Pools the budget may cap, with the clock limit (fraction of maximum) it applies to each."""
        self.stats = BudgetStats(budget_w)
        self.engaged = False

    def start(self, env: simpy.Environment, instances: list, pool_of: list[str]) -> None:
        managed = [(i, self.clock_by_pool[p]) for i, p in zip(instances, pool_of) if p in self.clock_by_pool]
        env.process(self._process(env, instances, managed))

    def _process(self, env, instances, managed):
        saved = [(i.power.limit.cap_w, i.power.limit.clock_frac) for i, _ in managed]
        capped = [(_tighter(self.cap_w, c), _tighter(clock, f)) for (_, clock), (c, f) in zip(managed, saved)]
        targets = [i for i, _ in managed]
        last = sum(i.meter.joules(env.now) for i in instances)
        while True:
            yield env.timeout(self.interval_s)
            if env.peek() == float("inf"):
                return  # nothing else will ever happen: the run is over
            total = sum(i.meter.joules(env.now) for i in instances)
            watts, last = (total - last) / self.interval_s, total
            self._account(watts)
            if not self.engaged and watts > self.engage_frac * self.budget_w:
                self.engaged = True
                self.stats.cap_events += 1
                _apply(targets, capped)
            elif self.engaged and watts < self.release_frac * self.budget_w:
                self.engaged = False
                _apply(targets, saved)

    def _account(self, watts: float) -> None:
        self.stats.samples_w.append(watts)
        if watts > self.budget_w:
            self.stats.over_s += self.interval_s
        if self.engaged:
            self.stats.capped_s += self.interval_s


def _apply(instances, limits) -> None:
    for instance, (cap_w, clock_frac) in zip(instances, limits):
        instance.power.limit.cap_w = cap_w
        instance.power.limit.clock_frac = clock_frac
        instance.wake()  # a run of decode steps re-prices at the new clock


def _tighter(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)
