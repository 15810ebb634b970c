"""Cluster wiring: the arrival process, the router and the instance processes in one SimPy run.

Instances come in pools. Colocated (`mixed`) instances take arrivals and run requests to the end.
Disaggregated, arrivals go to the `prefill` pool and prefilled requests move to the `decode` pool
(see `disaggregation`); the cluster router only ever sees the instances that take arrivals.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import simpy

from servesim.core.cohort import DecodeCohort
from servesim.core.request import Request, RequestStatus
from servesim.cost.base import CostModel
from servesim.engine.disaggregation import KVHandoff
from servesim.engine.instance import Instance
from servesim.engine.transfer import KVLink
from servesim.kv.manager import KVCacheManager
from servesim.metrics.steps import StepLog
from servesim.routers.base import Router


@dataclass
class InstanceParts:
    """Everything one instance needs, built by build.py."""

    scheduler: object
    cost_model: CostModel
    kv: KVCacheManager
    cohort: DecodeCohort
    swap_s_per_token: float = 0.0
    """PCIe seconds per token of KV copied to or from host memory (swap preemption)."""
    role: str = "mixed"
    """`mixed` (colocated), `prefill` or `decode`."""
    pool: str = "default"
    power: object = None
    """The instance's `PowerModel` (cost/power.py), or None: no energy accounting."""


@dataclass
class DisaggregationParts:
    """The decode side of a disaggregated cluster, built by build.py."""

    decode_router: Router
    link: KVLink
    kv_bytes_per_token: float
    """Bytes of KV one token moves over the link (all layers and heads)."""


@dataclass
class RunStats:
    simulated_s: float
    wall_s: float
    iterations: int
    events: int
    peak_kv_usage: float
    preemptions: int
    kv_link: dict | None = None
    """Transfer statistics of a disaggregated run (KVLink.stats)."""
    power_budget: dict | None = None
    """What the cluster power budget did (BudgetStats.summary)."""


def run_cluster(
    requests: Sequence[Request],
    parts: Sequence[InstanceParts],
    router: Router,
    step_log: StepLog,
    max_time: float = math.inf,
    on_finish: Callable[[Request], None] | None = None,
    after_step: Callable[[Instance], None] | None = None,
    disaggregation: DisaggregationParts | None = None,
    power_budget=None,
    token_gaps=None,
) -> RunStats:
    """Simulate until every request is finished or rejected (or `max_time`); requests are mutated."""
    wall0 = time.perf_counter()
    env = simpy.Environment()
    instances = [
        Instance(
            env, i, p.scheduler, p.cost_model, p.kv, p.cohort, step_log, on_finish,
            swap_s_per_token=p.swap_s_per_token, role=p.role, power=p.power,
        )
        for i, p in enumerate(parts)
    ]
    for instance in instances:
        instance.after_step = after_step
        instance.gaps = instance.cohort.gaps = token_gaps  # pooled inter-token gaps (metrics/gaps.py)
    decode = [i for i in instances if i.role == "decode"]
    if decode:
        if disaggregation is None:
            raise ValueError("decode instances need DisaggregationParts")
        d = disaggregation
        hand_off = KVHandoff(env, decode, d.decode_router, d.link, d.kv_bytes_per_token)
        for instance in instances:
            if instance.role == "prefill":
                instance.hand_off = hand_off
    entry = [i for i in instances if i.role != "decode"]
    env.process(arrival_process(env, requests, router, entry))
    if power_budget is not None:
        power_budget.start(env, instances, [p.pool for p in parts])
    events = _count_events(env)
    if math.isfinite(max_time):
        env.run(until=max_time)
    else:
        env.run()
    last = max((r.finish_time for r in requests if r.status == RequestStatus.FINISHED), default=0.0)
    simulated = env.now if math.isfinite(max_time) else max(env.now, last)
    if power_budget is not None and not math.isfinite(max_time):
        # The budget's last tick came after the last event of the run itself.
        arrivals = max((r.arrival_time for r in requests), default=0.0)
        simulated = max(last, arrivals, max(i.meter.last_time for i in instances))
    return RunStats(
        simulated_s=simulated,
        wall_s=time.perf_counter() - wall0,
        iterations=step_log.num_steps,
        events=events(),
        peak_kv_usage=max(p.kv.peak_used_blocks / p.kv.num_blocks for p in parts),
        preemptions=sum(p.scheduler.num_preemptions for p in parts),
        kv_link=disaggregation.link.stats(simulated) if decode else None,
        power_budget=power_budget.stats.summary(power_budget.interval_s) if power_budget else None,
    )


def arrival_process(env: simpy.Environment, requests: Sequence[Request], router, instances):
    for request in requests:
        delay = request.arrival_time - env.now
        if delay > 0:
            yield env.timeout(delay)
        choice = router.route(request, instances, env.now)
        instances[choice].submit(request)


def _count_events(env: simpy.Environment):
    """Wrap env.step to count processed events (cheap: one integer add per event)."""
    count = [0]
    step = env.step

    def counted_step():
        count[0] += 1
        step()

    env.step = counted_step
    return lambda: count[0]
