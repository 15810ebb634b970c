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

from dataclasses import dataclass

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

    def end_steps(self, now: float, joules: list[float]) -> None:
        """`end` of several steps in a row, the last ending at `now`: their joules settle one
        after another, in order (the same sum)."""
        settled = self._settled_j
        for j in joules:
            settled += j
        self._settled_j = settled
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
    samples: int = 0
    """Controller readings (one per interval)."""
    total_w: float = 0.0
    peak_w: float = 0.0
    capped_s: float = 0.0
    over_s: float = 0.0
    cap_events: int = 0

    def add(self, watts: float, readings: int = 1) -> None:
        self.samples += readings
        self.total_w += watts * readings
        self.peak_w = max(self.peak_w, watts)

    def summary(self, interval_s: float) -> dict:
        mean = self.total_w / self.samples if self.samples else 0.0
        return {
            "budget_w": self.budget_w, "peak_w": self.peak_w, "mean_w": mean, "interval_s": interval_s,
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
        for instance in instances:  # the controller reads every meter between steps
            instance.mixed_runs = False
        env.process(self._process(env, instances, managed))

    def _process(self, env, instances, managed):
        saved = [(i.power.limit.cap_w, i.power.limit.clock_frac) for i, _ in managed]
        capped = [(_tighter(self.cap_w, c), _tighter(clock, f)) for (_, clock), (c, f) in zip(managed, saved)]
        targets = [i for i, _ in managed]
        last = sum(i.meter.joules(env.now) for i in instances)
        ticks = 1
        while True:
            yield env.timeout(ticks * self.interval_s)
            if env.peek() == float("inf"):
                return  # nothing else will ever happen: the run is over
            total = sum(i.meter.joules(env.now) for i in instances)
            watts, last = (total - last) / (ticks * self.interval_s), total
            self._account(watts, ticks)
            action = self._decide(watts)
            if action is not None:
                _apply(targets, capped if action else saved)
            ticks = self._quiet_ticks(env, instances)

    def _decide(self, watts: float) -> bool | None:
        """True: engage the cap; False: lift it; None: leave it."""
        if not self.engaged and watts > self.engage_frac * self.budget_w:
            self.engaged = True
            self.stats.cap_events += 1
            return True
        if self.engaged and watts < self.release_frac * self.budget_w:
            self.engaged = False
            return False
        return None

    def _quiet_ticks(self, env, instances) -> int:
        """Readings to take at once: while no step runs and no event comes before them, each reads the
        same idle power, and once the controller holds at that power (release_frac <= engage_frac, so it
        does after one reading) they change nothing but its statistics. Skipping them keeps a long idle
        stretch (a far `max_sim_time_s`) from costing one event per interval."""
        if any(i.meter.watts(env.now) != i.meter.idle_w for i in instances):
            return 1
        idle = sum(i.meter.idle_w for i in instances)
        holds = idle >= self.release_frac * self.budget_w if self.engaged else \
            idle <= self.engage_frac * self.budget_w
        if not holds:
            return 1
        return max(1, int((env.peek() - env.now) // self.interval_s))

    def _account(self, watts: float, readings: int = 1) -> None:
        self.stats.add(watts, readings)
        if watts > self.budget_w:
            self.stats.over_s += self.interval_s * readings
        if self.engaged:
            self.stats.capped_s += self.interval_s * readings


def _apply(instances, limits) -> None:
    for instance, (cap_w, clock_frac) in zip(instances, limits):
        instance.power.limit.cap_w = cap_w
        instance.power.limit.clock_frac = clock_frac
        instance.wake()  # a run of decode steps re-prices at the new clock


def _tighter(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)
