"""`priority` on hand-built request sets: class levels, pausing and evicting lower classes."""

from servesim.core.request import RequestStatus
from tests.factories import make_scheduler, req, step

CLASSES = {"class_priority": {"online": 1, "offline": 0}}


def test_priority_comes_from_the_class_else_the_request():
    s = make_scheduler("priority", params=CLASSES)
    assert s.policy.priority(req(0, 1, 1, class_name="offline")) == 0
    assert s.policy.priority(req(1, 1, 1, class_name="batch", priority=7)) == 7


def test_higher_request_priority_runs_first_by_default():
    """Issue 11.4: the workload says higher priority is more urgent; without `class_priority` the
    policy must follow it (it used to run the lowest level first)."""
    s = make_scheduler("priority", budget=16)
    low, high = req(0, 10, 2, priority=0), req(1, 10, 2, priority=1)
    s.add_request(low, 0.0)
    s.add_request(high, 0.0)
    assert step(s, 0.0).tokens == {high: 10}


def test_the_old_lower_first_classes_key_is_refused_not_reinterpreted():
    import pytest

    from servesim.core.errors import ConfigError
    from servesim.schedulers import POLICIES

    with pytest.raises(ConfigError, match="class_priority"):
        POLICIES.create({"name": "priority", "classes": {"online": 0}})


def test_higher_class_starts_first_then_arrival_order():
    s = make_scheduler("priority", budget=16, params=CLASSES)
    reqs = [
        req(0, 10, 2, class_name="offline"),
        req(1, 10, 2, class_name="online"),
        req(2, 10, 2, class_name="online"),
    ]
    for r in reqs:
        s.add_request(r, 3.0)
    order = [next(iter(step(s, 3.0 + i).tokens)).request_id for i in range(3)]
    assert order == [1, 2, 0]


def test_online_arrival_pauses_offline_work():
    s = make_scheduler("priority", seqs=1, params=CLASSES)
    off = req(0, 8, 30, class_name="offline")
    s.add_request(off, 0.0)
    step(s, 0.0)
    on = req(1, 8, 3, class_name="online")
    s.add_request(on, 1.0)
    assert step(s, 1.0).tokens == {on: 8}
    assert step(s, 1.01).as_dict(s.cohort) == {1: 1}
    assert not off.in_cohort and off in s.running  # paused, KV kept


def test_online_arrival_evicts_offline_kv_when_memory_is_short():
    s = make_scheduler("priority", blocks=6, params=CLASSES)
    off = req(0, 12, 10, class_name="offline")  # holds 3 blocks, then 4
    s.add_request(off, 0.0)
    step(s, 0.0)
    step(s, 0.01)
    on = req(1, 12, 3, class_name="online")  # needs 3 blocks, 2 are free
    s.add_request(on, 1.0)
    plan = step(s, 1.0)
    assert plan.preempted == [off] and plan.tokens == {on: 12}
    assert off.status == RequestStatus.WAITING and off.num_preemptions == 1


def test_same_class_never_evicts_an_earlier_arrival():
    s = make_scheduler("priority", blocks=6, params=CLASSES)
    first = req(0, 12, 10, class_name="online")
    s.add_request(first, 0.0)
    step(s, 0.0)
    step(s, 0.01)
    later = req(1, 12, 3, class_name="online")
    s.add_request(later, 1.0)
    plan = step(s, 1.0)
    assert not plan.preempted and later in s.waiting


def test_online_traffic_is_served_ahead_of_offline_end_to_end():
    from servesim.build import build
    from servesim.config import load_config
    from servesim.engine import run_cluster
    from servesim.metrics import StepLog, request_frame

    config = {
        "seed": 2,
        "engine": {
            "scheduler": "priority",
            "max_num_seqs": 16,
            "kv_capacity_tokens": 20000,
            "priority": {"class_priority": {"online": 1, "offline": 0}},
        },
        "workload": {"num_requests": 200, "arrival": {"rate": 25.0}},
    }
    built = build(load_config(config))
    for r in built.requests:
        r.class_name = "online" if r.request_id % 4 == 0 else "offline"
    run_cluster(built.requests, built.parts, built.router, StepLog(enabled=False))
    frame = request_frame(built.requests)
    assert (frame["status"] != "unfinished").all()
    ttft = frame.groupby("class")["ttft_s"].mean()
    assert ttft["online"] < 0.2 * ttft["offline"]


def test_workload_priority_is_served_first_end_to_end():
    """Issue 11.4 end to end: a class with `priority: 1` in the workload gets the shorter queue
    under `priority` with no `class_priority` given (it used to be served last)."""
    from servesim import simulate

    lengths = {"prompt": {"dist": "fixed", "value": 600}, "output": {"dist": "fixed", "value": 100}}
    cls = {"arrival": {"process": "poisson", "rate": 12.0}, "lengths": lengths}
    config = {
        "seed": 1,
        "engine": {"scheduler": "priority", "max_num_seqs": 8, "kv_capacity_tokens": 20000},
        "workload": {"num_requests": 240, "classes": [{"name": "urgent", "priority": 1, **cls},
                                                     {"name": "bulk", "priority": 0, **cls}]},
    }
    frame = simulate(config).requests
    ttft = frame.groupby("class")["ttft_s"].mean()
    assert ttft["urgent"] < 0.5 * ttft["bulk"]
