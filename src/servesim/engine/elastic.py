"""Running an elastic cluster: the fleet, the arrival process, and the autoscaling, fault and
migration processes, in one SimPy run (`run_cluster` hands over here when `ElasticParts` is given).

The run ends when every request is completed, rejected or failed (or at `max_time`); the
periodic controllers stop with it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import simpy

from servesim.core.request import Request
from servesim.elastic.base import FleetState
from servesim.engine.faults import fault_processes
from servesim.engine.fleet import DRAINING, SERVING, STARTING, Fleet
from servesim.engine.instance import Instance
from servesim.engine.migration import Migrator
from servesim.engine.transfer import KVLink
from servesim.metrics.lifecycle import LifecycleLog


@dataclass
class ElasticParts:
    """Everything an elastic run needs beyond the instances, built by build.py."""

    make_part: Callable[[int], object]
    """make_part(slot) -> fresh InstanceParts for an instance that starts."""
    initial_instances: int
    autoscaling: object | None = None
    """The `cluster.autoscaling` config, or None (a fixed fleet, with faults or migration)."""
    autoscaler: object | None = None
    cold_start_s: float = 0.0
    faults: object | None = None
    fault_rng: np.random.Generator | None = None
    rebalancer: object | None = None
    migration: object | None = None
    migration_link: KVLink | None = None
    kv_bytes_per_token: float = 0.0
    static: bool = False
    """A fixed fleet (any cluster shape) with only stragglers and link degradation."""
    log: LifecycleLog = field(default_factory=LifecycleLog)
    parts: list = field(default_factory=list)
    """Every InstanceParts created during the run (for KV and preemption statistics)."""
    instances: list = field(default_factory=list)
    """Every Instance started during the run, in order (checks read their final state)."""


def run_elastic(
    requests: Sequence[Request], elastic: ElasticParts, router, step_log, max_time: float,
    on_finish=None, after_step=None, token_gaps=None,
):
    from servesim.engine.cluster import CountingEnvironment, RunStats

    wall0 = time.perf_counter()
    env = CountingEnvironment()
    faults = elastic.faults
    fleet = Fleet(
        env, None, router, elastic.log, len(requests), elastic.cold_start_s,
        on_failure=faults.on_failure if faults else "retry",
        max_retries=faults.max_retries if faults else 0,
    )
    migrator = None
    if elastic.rebalancer is not None:
        m = elastic.migration
        migrator = Migrator(fleet, elastic.rebalancer, elastic.migration_link,
                            elastic.kv_bytes_per_token, m.interval_s, m.drain)
    if elastic.autoscaling is not None:
        fleet.max_up = elastic.autoscaling.max_instances
    fleet.spawn = _spawner(env, elastic, fleet, migrator, step_log, on_finish, after_step,
                           token_gaps, max_time)
    for _ in range(elastic.initial_instances):
        fleet.launch(cold=False)
    env.process(_arrivals(env, requests, fleet))
    if elastic.autoscaler is not None:
        env.process(autoscale(fleet, elastic.autoscaler, elastic.autoscaling))
    if migrator is not None:
        env.process(migrator.process())
    if faults is not None:
        links = {"migration": elastic.migration_link} if elastic.migration_link else {}
        for proc in fault_processes(fleet, faults, elastic.fault_rng, links):
            env.process(proc)
    stop = fleet.done if not math.isfinite(max_time) else env.any_of([fleet.done, env.timeout(max_time)])
    env.run(until=stop)
    parts = elastic.parts
    link = elastic.migration_link
    return RunStats(
        simulated_s=env.now,
        wall_s=time.perf_counter() - wall0,
        iterations=step_log.num_steps,
        events=env.num_events,
        peak_kv_usage=max(p.kv.peak_used_blocks / p.kv.num_blocks for p in parts),
        preemptions=sum(p.scheduler.num_preemptions for p in parts),
        migration_link=link.stats(env.now) if link is not None and link.num_transfers else None,
    )


def _spawner(env, elastic: ElasticParts, fleet: Fleet, migrator, step_log, on_finish, after_step,
             token_gaps=None, max_time: float = math.inf):
    from servesim.engine.cluster import start_instance
    def on_terminal(request):
        if on_finish is not None:
            on_finish(request)
        fleet.terminal(request)

    def spawn(slot: int) -> Instance:
        p = elastic.make_part(slot)
        elastic.parts.append(p)
        instance = start_instance(env, slot, p, step_log, on_terminal, fleet.terminal, max_time)
        instance.after_step = after_step
        instance.mixed_runs = False  # autoscaling reads busy time between steps
        instance.gaps = instance.cohort.gaps = token_gaps  # pooled inter-token gaps
        elastic.instances.append(instance)
        if migrator is not None:
            instance.between_steps = migrator.take_out
        return instance

    return spawn


def _arrivals(env: simpy.Environment, requests: Sequence[Request], fleet: Fleet):
    for request in requests:
        delay = request.arrival_time - env.now
        if delay > 0:
            yield env.timeout(delay)
        fleet.arrive(request)


def autoscale(fleet: Fleet, policy, config):
    """Every `interval_s`: ask the policy, clamp to [min, max]; scale up at once (draining
    instances first), scale down (least-loaded serving instances drain) after the cooldown."""
    env = fleet.env
    last_action = -math.inf
    busy_seen: dict[Instance, float] = {}
    while not fleet.done.triggered:
        yield env.timeout(config.interval_s)
        state = snapshot(fleet, policy, busy_seen, config.interval_s)
        up = len(fleet.serving) + fleet.count(STARTING)
        want = min(max(int(policy.desired(state)), config.min_instances), config.max_instances)
        if want > up:
            scale_up(fleet, want - up, config.max_instances)
            last_action = env.now
        elif want < up and env.now - last_action >= config.cooldown_s:
            scale_down(fleet, up - want)
            last_action = env.now


def snapshot(fleet: Fleet, policy, busy_seen: dict, interval_s: float) -> FleetState:
    serving = list(fleet.serving)
    busy = 0.0
    for instance in serving:
        seen = busy_seen.get(instance, instance.busy_s)
        busy += min(instance.busy_s - seen, interval_s)
        busy_seen[instance] = instance.busy_s
    rate, previous = fleet.arrival_rate(getattr(policy, "rate_window_s", 60.0))
    kv = sum(i.kv.usage for i in serving) / len(serving) if serving else 0.0
    return FleetState(
        now=fleet.env.now, serving=list(fleet.views), starting=fleet.count(STARTING),
        draining=fleet.count(DRAINING), pending=len(fleet.pending), arrivals=fleet.num_arrivals,
        arrival_rate=rate, previous_arrival_rate=previous,
        utilization=busy / (interval_s * len(serving)) if serving else 0.0, kv_usage=kv,
    )


def scale_up(fleet: Fleet, n: int, max_instances: int) -> None:
    draining = [s for s, state in enumerate(fleet.state) if state == DRAINING]
    for slot in draining[:n]:
        fleet.undrain(slot)  # cheaper than a cold start: it is still warm
    n -= min(n, len(draining))
    room = max_instances - fleet.count(STARTING, SERVING, DRAINING)
    for _ in range(min(n, room)):
        fleet.launch(cold=True)


def scale_down(fleet: Fleet, n: int) -> None:
    if len(fleet.serving) <= 1:
        return
    by_load = sorted(
        fleet.serving,
        key=lambda i: (i.load().num_waiting + i.load().num_running, -i.index),
    )
    for instance in by_load[: min(n, len(fleet.serving) - 1)]:
        fleet.drain(instance.index)
