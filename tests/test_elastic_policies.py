"""Autoscaling and rebalancing policies on hand-built fleet views (no SimPy)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from servesim.elastic import AUTOSCALERS, REBALANCERS, FleetState
from servesim.schedulers import SchedulerLoad
from tests.factories import make_request


@dataclass
class FakeKV:
    num_blocks: int
    num_free_blocks: int
    block_size: int = 16


@dataclass
class FakeInstance:
    index: int
    kv: FakeKV
    decodes: list = field(default_factory=list)
    waiting: int = 0
    queued_tokens: int = 0

    def load(self):
        return SchedulerLoad(self.waiting, len(self.decodes), self.queued_tokens, 0)

    def decoding(self):
        return list(self.decodes)


def decoding(rid, computed, priority=0):
    r = make_request(rid, computed, 100, priority=priority)
    r._computed = computed
    return r


def state(**kw):
    base = dict(now=0.0, serving=[], starting=0, draining=0, pending=0, arrivals=0,
                arrival_rate=0.0, previous_arrival_rate=0.0, utilization=0.0, kv_usage=0.0)
    return FleetState(**{**base, **kw})


def policy(registry, name, **params):
    cls = registry.get(name)
    return cls(cls.Params(**params))


def test_predicted_load_extrapolates_a_rising_rate_only():
    p = policy(AUTOSCALERS, "predicted_load", requests_per_instance=10, window_s=30,
               lookahead_s=60)
    assert p.desired(state(arrival_rate=25, previous_arrival_rate=25)) == 3
    # rising 10 req/s per 30 s window: 60 s ahead it is 20 req/s higher
    assert p.desired(state(arrival_rate=25, previous_arrival_rate=15)) == 5
    assert p.desired(state(arrival_rate=25, previous_arrival_rate=40)) == 3
    assert p.rate_window_s == 30


def test_target_utilization_keeps_the_fleet_within_tolerance():
    p = policy(AUTOSCALERS, "target_utilization", target=0.5, tolerance=0.1)
    serving = [object()] * 4
    assert p.desired(state(serving=serving, kv_usage=0.55)) == 4
    assert p.desired(state(serving=serving, kv_usage=0.9)) == 8
    assert p.desired(state(serving=serving, kv_usage=0.1)) == 1
    busy = policy(AUTOSCALERS, "target_utilization", target=0.5, metric="busy")
    assert busy.desired(state(serving=serving, utilization=1.0, kv_usage=0.0)) == 8


def test_queue_length_and_schedule():
    q = policy(AUTOSCALERS, "queue_length", requests_per_instance=5)
    inst = FakeInstance(0, FakeKV(100, 50), decodes=[decoding(i, 10) for i in range(6)], waiting=3)
    assert q.desired(state(serving=[inst], pending=2)) == 3
    s = policy(AUTOSCALERS, "schedule", points=[[0, 1], [100, 4], [200, 2]])
    assert [s.desired(state(now=t)) for t in (0, 99, 100, 250)] == [1, 1, 4, 2]
    with pytest.raises(ValueError):
        AUTOSCALERS.get("schedule").Params(points=[[5, 1]])


def test_load_rebalancer_moves_least_kv_first_from_the_fullest_to_the_emptiest():
    full = FakeInstance(0, FakeKV(100, 2), decodes=[decoding(1, 400), decoding(2, 64)],
                        queued_tokens=320)
    empty = FakeInstance(1, FakeKV(100, 90))
    mid = FakeInstance(2, FakeKV(100, 50))
    moves = policy(REBALANCERS, "load", threshold=0.2, min_pressure=0.9, max_moves=1).plan(
        [full, empty, mid], 0.0)
    assert [(m.source, m.dest, m.request.request_id) for m in moves] == [(0, 1, 2)]
    # balanced fleets stay put
    calm = [FakeInstance(i, FakeKV(100, 40), decodes=[decoding(i, 64)]) for i in range(3)]
    assert policy(REBALANCERS, "load").plan(calm, 0.0) == []


def test_fragmentation_rebalancer_frees_room_for_a_blocked_queue():
    blocked = FakeInstance(0, FakeKV(100, 1), decodes=[decoding(1, 160), decoding(2, 320)],
                           waiting=1, queued_tokens=160)
    roomy = FakeInstance(1, FakeKV(100, 80))
    moves = policy(REBALANCERS, "fragmentation").plan([blocked, roomy], 0.0)
    assert [(m.source, m.dest, m.request.request_id) for m in moves] == [(0, 1, 1)]


def test_priority_rebalancer_moves_background_work_off_urgent_instances():
    mixed = FakeInstance(0, FakeKV(100, 30), decodes=[decoding(1, 64, priority=2),
                                                      decoding(2, 64, priority=0)])
    other = FakeInstance(1, FakeKV(100, 60), decodes=[decoding(3, 64, priority=0)])
    moves = policy(REBALANCERS, "priority", min_priority=1).plan([mixed, other], 0.0)
    assert [(m.source, m.dest, m.request.request_id) for m in moves] == [(0, 1, 2)]


class AlwaysTwo:
    """A plugin autoscaler: no Params, just `desired`."""

    def __init__(self, params=None):
        pass

    def desired(self, state):
        return 2


def test_a_plugin_autoscaler_runs_by_module_path():
    import servesim
    from tests.factories import small_config

    result = servesim.simulate(small_config(**{
        "cluster.instances": 1,
        "cluster.autoscaling.policy": "tests.test_elastic_policies:AlwaysTwo",
        "cluster.autoscaling.interval_s": 0.5,
        "cluster.autoscaling.cold_start.fixed_s": 0.1,
    }))
    assert result.summary["cluster"]["peak_instances"] == 2
    assert result.summary["cluster"]["cold_starts"] == 1
