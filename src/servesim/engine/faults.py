"""Faults: instance failures (scheduled, or random from the `faults` RNG stream), stragglers
(an instance's steps slowed by a factor for a while) and KV-link degradation.

Each is a SimPy process that acts on the fleet at its time; every draw comes from one named
stream, so the same seed fails the same instances at the same times whatever the policies.
"""

from __future__ import annotations

import numpy as np

from servesim.engine.fleet import DRAINING, SERVING, Fleet
from servesim.engine.transfer import KVLink


def fault_processes(fleet: Fleet, faults, rng: np.random.Generator, links: dict[str, KVLink]):
    """The SimPy generators for a `cluster.faults` config."""
    procs = [scheduled_failure(fleet, f, faults.repair_s) for f in faults.failures]
    if faults.mtbf_s is not None:
        procs.append(random_failures(fleet, faults.mtbf_s, faults.repair_s, rng))
    procs += [straggler(fleet, s) for s in faults.stragglers]
    for d in faults.link_degradations:
        chosen = [link for name, link in links.items() if d.link in (name, "all")]
        if chosen:
            procs.append(link_degradation(fleet, d, chosen))
    return procs


class FixedFleet:
    """What the slowdown processes need of a fleet that never changes (any cluster shape)."""

    def __init__(self, env, instances, log):
        self.env, self.instances, self.log = env, instances, log
        self.done = env.event()  # never: the slowdowns just run out
        for instance in instances:
            log.state(0.0, instance.index, "starting")
            log.state(0.0, instance.index, "serving")


def static_fault_processes(env, instances, elastic, links: dict[str, KVLink]):
    """Stragglers and link degradation on a fixed fleet (`ElasticParts.static`)."""
    fleet = FixedFleet(env, instances, elastic.log)
    return fault_processes(fleet, elastic.faults, elastic.fault_rng, links)


def _up_slot(fleet: Fleet, preferred: int) -> int | None:
    """`preferred` if it is up (serving or draining), else the lowest serving slot."""
    if preferred < len(fleet.state) and fleet.state[preferred] in (SERVING, DRAINING):
        return preferred
    return fleet.state.index(SERVING) if SERVING in fleet.state else None


def scheduled_failure(fleet: Fleet, failure, repair_s: float):
    yield fleet.env.timeout(failure.at_s)
    slot = _up_slot(fleet, failure.instance)
    if slot is not None:
        fleet.fail(slot, failure.duration_s or repair_s)


def random_failures(fleet: Fleet, mtbf_s: float, repair_s: float, rng: np.random.Generator):
    while True:
        yield fleet.env.timeout(float(rng.exponential(mtbf_s)))
        if fleet.done.triggered:
            return
        up = [i for i, s in enumerate(fleet.state) if s == SERVING]
        pick = float(rng.random())  # drawn whatever the fleet looks like: the stream stays aligned
        if up:
            fleet.fail(up[int(pick * len(up))], repair_s)
        else:  # nothing to hit until an instance serves again (memoryless gaps: the next is drawn then);
            # ticking on through a long repair or cold start would take mtbf-spaced events forever
            yield fleet.env.any_of([fleet.until_serving(), fleet.done])


def straggler(fleet: Fleet, spec):
    env = fleet.env
    yield env.timeout(spec.at_s)
    if spec.instance >= len(fleet.instances):
        return
    instance = fleet.instances[spec.instance]
    instance.slowdown = spec.factor
    fleet.log.mark(env.now, spec.instance, "slowdown", spec.factor)
    instance.wake()  # a multi-step decode run re-prices from the next step
    yield env.timeout(spec.duration_s)
    instance.slowdown = 1.0
    fleet.log.mark(env.now, spec.instance, "slowdown", 1.0)
    instance.wake()


def link_degradation(fleet: Fleet, spec, links: list[KVLink]):
    env = fleet.env
    yield env.timeout(spec.at_s)
    for link in links:
        link.bandwidth /= spec.factor
    fleet.log.mark(env.now, -1, "link_bandwidth_factor", spec.factor)
    yield env.timeout(spec.duration_s)
    for link in links:
        link.bandwidth *= spec.factor
    fleet.log.mark(env.now, -1, "link_bandwidth_factor", 1.0)
