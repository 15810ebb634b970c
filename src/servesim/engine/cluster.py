"""Cluster wiring: the arrival process, the router and the instance processes in one SimPy run.

Instances come in pools. Colocated (`mixed`) instances take arrivals and run requests to the end.
Disaggregated, arrivals go to the `prefill` pool and prefilled requests move to the `decode` pool
(see `disaggregation`); the cluster router only ever sees the instances that take arrivals.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import simpy

from servesim.core.request import Request
from servesim.cost.base import CostModel
from servesim.engine.clock import drop_abandoned
from servesim.engine.completion import Completion
from servesim.engine.instance import DEFAULT_MAX_RUN_STEPS, Instance
from servesim.engine.stream import RequestStream
from servesim.engine.transfer import KVLink
from servesim.kv.manager import KVCacheManager
from servesim.metrics.steps import StepLog
from servesim.routers.base import Router
from servesim.schedulers.core import Scheduler

if TYPE_CHECKING:  # types only
    from servesim.cost.power import PowerModel


@dataclass
class InstanceParts:
    """Everything one instance needs, built by build.py."""

    scheduler: Scheduler
    cost_model: CostModel
    kv: KVCacheManager
    swap_s_per_token: float = 0.0
    """PCIe seconds per token of KV copied to or from host memory (swap preemption)."""
    role: str = "mixed"
    """`mixed` (colocated), `prefill` or `decode`."""
    pool: str = "default"
    max_run_steps: int = DEFAULT_MAX_RUN_STEPS
    """Most steps of a decode or mixed run simulated as one event (`engine.max_run_steps`)."""
    power: PowerModel | None = None
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
    """What the engine counted during a run (summary.json's `sim` and part of `kv`)."""

    simulated_s: float
    wall_s: float
    iterations: int
    events: int
    peak_kv_usage: float
    preemptions: int
    kv_link: dict | None = None
    """Transfer statistics of a disaggregated run (KVLink.stats)."""
    migration_link: dict | None = None
    """Transfer statistics of the migration link (elastic runs that migrated)."""
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
    elastic=None,
    power_budget=None,
    token_gaps=None,
) -> RunStats:
    """Simulate until every request is finished or rejected (or `max_time`); requests are mutated.
    `requests` may be a `RequestStream` (made on arrival, logged when they end). With `elastic`
    (`engine.elastic.ElasticParts`) the fleet changes during the run."""
    if elastic is not None and not elastic.static:
        from servesim.engine.elastic import run_elastic

        return run_elastic(requests, elastic, router, step_log, max_time, on_finish, after_step,
                           token_gaps)
    wall0 = time.perf_counter()
    env = CountingEnvironment()
    entry: list[Instance] = []  # the instances that take arrivals, filled once they exist
    completion, on_finish, on_reject, arriving = _request_ends(env, requests, router, entry, on_finish)
    instances = [start_instance(env, i, p, step_log, on_finish, on_reject, max_time)
                 for i, p in enumerate(parts)]
    _observe(instances, after_step, token_gaps)
    kv_link = _wire_disaggregation(env, instances, disaggregation)
    entry.extend(i for i in instances if i.role != "decode")
    env.process(arrival_process(env, arriving, router, entry))
    if elastic is not None:  # slowdowns on a fixed fleet
        _start_static_faults(env, instances, elastic, kv_link)
    if power_budget is not None:
        power_budget.start(env, instances, [p.pool for p in parts])
    _run_until_done(env, completion.done, max_time)
    return _run_stats(env, wall0, step_log, parts, kv_link, power_budget)


def _request_ends(env: simpy.Environment, requests: Sequence[Request], router: Router,
                  entry: list[Instance], on_finish: Callable[[Request], None] | None):
    """What follows a request's end: the run's completion (its `done` event), the finish and
    reject callbacks that feed it (and agentic programs), and the requests that arrive on their
    own (agentic calls wait for their parents)."""
    completion: Completion | RequestStream
    if isinstance(requests, RequestStream):  # made on arrival, logged when they end; no programs
        completion, programs, arriving = requests.start(env), None, requests
    else:
        completion = Completion(env, requests)
        programs, on_finish, arriving = _programs(env, requests, router, entry, on_finish)
    on_reject = _both(programs.on_reject if programs is not None else None, completion.check)
    return completion, _both(on_finish, completion.check), on_reject, arriving


def _observe(instances: list[Instance], after_step, token_gaps) -> None:
    """Hook every instance up to the run's observers: the per-step callback and the pooled
    inter-token gaps (metrics/gaps.py)."""
    for instance in instances:
        instance.after_step = after_step
        instance.gaps = instance.cohort.gaps = token_gaps


def _wire_disaggregation(env: simpy.Environment, instances: list[Instance],
                         disaggregation: DisaggregationParts | None) -> KVLink | None:
    """Prefill instances hand prefilled requests to the decode pool over the KV link, which this
    returns (None without a decode pool)."""
    decode = [i for i in instances if i.role == "decode"]
    if not decode:
        return None
    if disaggregation is None:
        raise ValueError("decode instances need DisaggregationParts")
    from servesim.engine.disaggregation import KVHandoff  # imported by the runs that hand off

    d = disaggregation
    hand_off = KVHandoff(env, decode, d.decode_router, d.link, d.kv_bytes_per_token)
    for instance in instances:
        if instance.role == "prefill":
            instance.hand_off = hand_off
    return d.link


def _start_static_faults(env: simpy.Environment, instances: list[Instance], elastic,
                         kv_link: KVLink | None) -> None:
    """Stragglers and link degradation on a fixed fleet (`ElasticParts.static`)."""
    from servesim.engine.faults import static_fault_processes

    links = {"kv": kv_link} if kv_link is not None else {}
    for proc in static_fault_processes(env, instances, elastic, links):
        env.process(proc)


def _run_stats(env: CountingEnvironment, wall0: float, step_log: StepLog,
               parts: Sequence[InstanceParts], kv_link: KVLink | None, power_budget) -> RunStats:
    """What the engine counted, read once the run has stopped."""
    simulated = env.now
    return RunStats(
        simulated_s=simulated,
        wall_s=time.perf_counter() - wall0,
        iterations=step_log.num_steps,
        events=env.num_events,
        peak_kv_usage=max(p.kv.peak_used_blocks / p.kv.num_blocks for p in parts),
        preemptions=sum(p.scheduler.num_preemptions for p in parts),
        kv_link=kv_link.stats(simulated) if kv_link is not None else None,
        power_budget=power_budget.stats.summary(power_budget.interval_s) if power_budget else None,
    )


def start_instance(
    env: simpy.Environment, index: int, p: InstanceParts, step_log: StepLog, on_finish=None,
    on_reject=None, max_time: float = math.inf,
) -> Instance:
    """The Instance for one InstanceParts (the one place the engine builds instances); its runs
    end before `max_time`, where the simulation stops."""
    return Instance(
        env, index, p.scheduler, p.cost_model, p.kv, step_log, on_finish,
        on_reject=on_reject, swap_s_per_token=p.swap_s_per_token, role=p.role,
        max_run_steps=p.max_run_steps, power=p.power, horizon=max_time,
    )


def _run_until_done(env: simpy.Environment, done, max_time: float) -> None:
    """Run until every request has ended or `max_time`. A run whose events run out first (requests
    that can never end) stops there; its requests are reported unfinished."""
    stop = done if not math.isfinite(max_time) else env.any_of([done, env.timeout(max_time)])
    try:
        env.run(until=stop)
    except RuntimeError:  # simpy: the schedule ran empty before `stop`; anything else is a bug
        if stop.triggered or env.peek() != math.inf:
            raise


def arrival_process(env: simpy.Environment, requests: Sequence[Request], router, instances):
    views = [instance.view for instance in instances]
    for request in requests:
        delay = request.arrival_time - env.now
        if delay > 0:
            yield env.timeout(delay)
        choice = router.route(request, views, env.now)
        instances[choice].submit(request)


def _programs(env, requests, router, entry: list, on_finish):
    """Agentic calls wait for their parents (engine/programs.py): the driver (None without
    programs), the finish callback that feeds it, and the requests that arrive on their own."""
    if not any(r.program_parents for r in requests):
        return None, on_finish, requests
    from servesim.engine.programs import ProgramDriver  # imported by the runs that have programs

    def submit(request):  # routers see instances through their views, as at arrival
        entry[router.route(request, [i.view for i in entry], env.now)].submit(request)

    driver = ProgramDriver(env, requests, submit)
    arriving = [r for r in requests if not driver.held(r)]
    return driver, _both(on_finish, driver.on_finish), arriving


def _both(first, second):
    if first is None:
        return second

    def call(request):
        first(request)
        second(request)

    return call


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it processes (cheap: one integer add each) and
    skips those `clock.wake_early` abandoned (neither processed nor counted, nor seen by `peek`)."""

    def __init__(self) -> None:
        super().__init__()
        self.num_events = 0

    def step(self) -> None:
        drop_abandoned(self._queue)
        self.num_events += 1
        simpy.Environment.step(self)

    def peek(self) -> float:
        drop_abandoned(self._queue)
        return simpy.Environment.peek(self)
