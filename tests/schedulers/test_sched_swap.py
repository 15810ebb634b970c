"""Swap preemption: KV copied to host and back, and the PCIe time charged to the step."""

import numpy as np
import pytest
import simpy

from servesim import simulate
from servesim.build import build
from servesim.config import load_config
from servesim.core.request import RequestStatus
from servesim.core.step import StepPlan
from servesim.engine.instance import Instance
from servesim.kv.manager import KVCacheManager
from servesim.metrics import StepLog
from servesim.schedulers import SchedulerLoad
from tests.compiled import pure_python_only
from tests.factories import make_scheduler, req, step


def test_swapped_victim_keeps_its_progress_and_comes_back_over_pcie():
    s = make_scheduler(blocks=3, preemption="swap")
    a, b = req(0, 4, 5), req(1, 4, 6)
    s.add_request(a, 0.0)
    s.add_request(b, 0.0)
    step(s, 0.0)  # both prompts, one block each
    plan = step(s, 0.01)  # both need a new block, one is free: the latest arrival goes
    assert plan.preempted == [b] and plan.num_swap_out_tokens == 4
    assert b.status == RequestStatus.SWAPPED and b.num_computed_tokens == 4 and s.kv.blocks_of(b) == 0
    while a.status != RequestStatus.FINISHED:
        step(s, 0.02)
    plan = step(s, 0.1)
    assert plan.tokens == {b: 1} and plan.num_swap_in_tokens == 4  # its next token, no recompute
    assert b.status == RequestStatus.RUNNING and s.kv.blocks_of(b) == 2 and b.in_cohort
    assert b.num_preemptions == 1


def test_recompute_victim_starts_over():
    s = make_scheduler(blocks=3)
    a, b = req(0, 4, 5), req(1, 4, 6)
    s.add_request(a, 0.0)
    s.add_request(b, 0.0)
    step(s, 0.0)
    plan = step(s, 0.01)
    assert plan.preempted == [b] and plan.num_swap_out_tokens == 0
    assert b.status == RequestStatus.WAITING and b.num_computed_tokens == 0


class OnePlan:
    """A scheduler that returns one given plan, then idles."""

    num_preemptions = 0

    def __init__(self, plan):
        self.plans = [plan]

    def schedule(self, now):
        return self.plans.pop() if self.plans else StepPlan()

    def finish(self, requests, now):
        pass

    def load(self):
        return SchedulerLoad(0, 0, 0)


class ConstantCost:
    def step_time(self, shape):
        return 0.5

    def decode_step_times(self, n, ctx, longest=None):
        return np.full(len(ctx), 0.5)


@pure_python_only  # a stand-in scheduler
def test_instance_adds_pcie_time_to_the_step():
    env = simpy.Environment()
    log = StepLog()
    plan = StepPlan(num_swap_out_tokens=100, num_swap_in_tokens=50)
    Instance(
        env,
        0,
        OnePlan(plan),
        ConstantCost(),
        KVCacheManager(10, 4),
        log,
        swap_s_per_token=0.001,
    )
    env.run()
    assert log.rows["end_s"] == [pytest.approx(0.5 + 150 * 0.001)]


def test_swap_time_per_token_is_kv_bytes_over_pcie():
    built = build(
        load_config({"model": "llama3-8b", "hardware": "h100-sxm", "workload": {"num_requests": 1}})
    )
    kv_bytes = 2 * 32 * 8 * 128 * 2  # K and V, 32 layers, 8 KV heads of 128, bf16
    assert built.parts[0].swap_s_per_token == pytest.approx(kv_bytes / 64e9)


@pytest.mark.parametrize("scheduler", ["fcfs", "chunked_prefill", "srtf", "priority"])
def test_swap_runs_end_to_end(scheduler):
    cfg = {
        "seed": 5,
        "engine": {"scheduler": scheduler, "kv_capacity_tokens": 6000, "preemption": "swap"},
        "workload": {
            "num_requests": 60,
            "arrival": {"rate": 40.0},
            "lengths": {
                "prompt": {"dist": "uniform", "min": 100, "max": 900},
                "output": {"dist": "uniform", "min": 50, "max": 400},
            },
        },
    }
    result = simulate(cfg)
    assert result.summary["requests"]["completed"] == 60
    assert result.summary["kv"]["preemptions"] > 0


def test_recompute_longer_than_the_budget_still_restarts():
    # A victim's prompt plus generated output may exceed max_num_batched_tokens; it must still
    # restart (alone in its step), or it would block the queue forever.
    s = make_scheduler(budget=16)
    r = req(0, 12, 10)
    s.add_request(r, 0.0)
    for i in range(6):
        step(s, 0.01 * i)
    assert r.num_generated_tokens == 6
    s.plan = StepPlan()
    s.preempt(r)
    s.plan = s._ranked = None
    assert step(s, 0.1).tokens == {r: 18}
