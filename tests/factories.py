"""Hand-built requests and schedulers, and a SimPy-free step driver, for unit tests."""

from __future__ import annotations

import numpy as np

from servesim.core.request import Request
from servesim.kv.manager import KVCacheManager
from servesim.predictors.oracle import OraclePredictor
from servesim.schedulers import BATCHINGS, POLICIES, EngineLimits, Scheduler

BLOCK = 4
"""Default block size of `make_scheduler`: small, so block boundaries come often."""


def make_request(rid: int, prompt: int, output: int, arrival: float = 0.0, **kw) -> Request:
    return Request(rid, arrival, prompt, output, **kw)


def req(i: int, prompt: int, output: int, arrival: float | None = None, **kw) -> Request:
    """A request arriving at `i` seconds unless told otherwise (arrival order = id order)."""
    return Request(i, float(i) if arrival is None else arrival, prompt, output, **kw)


def make_kv(num_blocks: int = 100, block_size: int = 16, **kw) -> KVCacheManager:
    return KVCacheManager(num_blocks, block_size, watermark=kw.pop("watermark", 0.0), **kw)


def make_scheduler(
    policy="fcfs",
    *,
    batching="whole",
    blocks: int = 1000,
    block_size: int = BLOCK,
    seqs: int = 8,
    budget: int = 256,
    chunk: int = 64,
    max_context: int = 1 << 20,
    preemption: str = "recompute",
    kv_allocation: str = "prompt",
    watermark: float = 0.0,
    params: dict | None = None,
    batching_params: dict | None = None,
    predictor=None,
    cost_model=None,
    prefix_caching: bool = False,
    hash_block_size: int = 0,
) -> Scheduler:
    """A scheduler over a fresh KV cache: `policy` is a registered name, a class or an instance."""
    kv = KVCacheManager(
        blocks, block_size, watermark=watermark, prefix_caching=prefix_caching,
        hash_block_size=hash_block_size,
    )
    limits = EngineLimits(seqs, budget, chunk, max_context, preemption, kv_allocation)
    if isinstance(policy, str):
        policy = POLICIES.create({"name": policy, **(params or {})})
    elif isinstance(policy, type):
        policy = policy(policy.Params(**(params or {}))) if hasattr(policy, "Params") else policy()
    batch = BATCHINGS.create({"name": batching, **(batching_params or {})})
    return Scheduler(
        kv, limits, policy, batch, predictor=predictor or OraclePredictor(), cost_model=cost_model
    )


def apply_plan(scheduler: Scheduler, plan, end_time: float) -> list[Request]:
    """What the engine does after a step: advance, join decoders to the cohort; returns finished
    (not yet reported to the scheduler)."""
    kv = scheduler.kv
    finished = kv.advance_cohort(np.array([end_time])) if plan.decode_cohort else []
    for request, n in plan.tokens.items():
        if request.advance(n, end_time):
            finished.append(request)
        elif request.num_pending_tokens == 1 and request.num_generated_tokens:
            kv.join_cohort(request)
    return finished


def step(scheduler: Scheduler, now: float, duration: float = 0.01):
    """Plan one step at `now`, apply it as the instance does (ending at `now + duration`), report
    finishes, and check KV conservation; returns the plan."""
    plan = scheduler.schedule(now)
    finished = apply_plan(scheduler, plan, now + duration)
    if finished:
        scheduler.finish(finished, now + duration)
    scheduler.kv.check_conservation()
    return plan


def drain(scheduler: Scheduler, now: float = 0.0, limit: int = 10_000) -> float:
    """Step until idle; return the time reached."""
    for _ in range(limit):
        plan = step(scheduler, now)
        now += 0.01
        if plan.is_empty(scheduler.cohort.size) and not scheduler.running and not scheduler.waiting:
            return now
    raise AssertionError("did not drain")


def finish_order(requests) -> list[int]:
    return [r.request_id for r in sorted(requests, key=lambda r: (r.finish_time, r.request_id))]


def simulate_checked(config, table=None, **overrides):
    """Simulate a config (dict, path or SimConfig) with KV conservation checked after every step
    of every instance, and no block left held at the end; returns (result, built)."""
    from servesim.build import build
    from servesim.config import load_config
    from servesim.simulation import run

    built = build(load_config(config, overrides), table=table)
    result = run(built, after_step=lambda instance: instance.kv.check_conservation())
    for part in built.parts:
        part.kv.check_conservation()
        assert part.kv.num_free_blocks == part.kv.num_blocks, "blocks leaked at the end"
        assert part.kv.num_detached_blocks == 0
    return result, built
