"""Hand-built schedulers and a SimPy-free step driver for the scheduling tests."""

from __future__ import annotations

import numpy as np

from servesim.core.cohort import DecodeCohort
from servesim.core.request import Request
from servesim.kv.manager import KVCacheManager
from servesim.predictors.oracle import OraclePredictor
from servesim.schedulers import EngineLimits

BLOCK = 4


def make(
    cls,
    *,
    blocks=1000,
    seqs=8,
    budget=256,
    chunk=64,
    preemption="recompute",
    params=None,
    predictor=None,
    cost_model=None,
):
    kv = KVCacheManager(blocks, BLOCK, watermark=0.0)
    cohort = DecodeCohort(BLOCK)
    limits = EngineLimits(seqs, budget, chunk, 1 << 20, preemption)
    if params is not None and not isinstance(params, cls.Params):
        params = cls.Params(**params)
    return cls(
        kv, cohort, limits, params, predictor=predictor or OraclePredictor(), cost_model=cost_model
    )


def req(i, prompt, output, arrival=None, **kw) -> Request:
    return Request(i, float(i) if arrival is None else arrival, prompt, output, **kw)


def step(s, now):
    """Plan one step at `now` and apply it as the instance does, ending at `now + 0.01`."""
    plan = s.schedule(now)
    end = now + 0.01
    finished = s.cohort.advance(np.array([end])) if plan.decode_cohort else []
    for r, n in plan.tokens.items():
        if r.advance(n, end):
            finished.append(r)
        elif r.num_pending_tokens == 1 and r.num_generated_tokens:
            s.cohort.join(r)
    if finished:
        s.finish(finished, end)
    check_blocks(s)
    return plan


def drain(s, now=0.0, limit=10_000) -> float:
    """Step until idle; return the time reached."""
    for _ in range(limit):
        plan = step(s, now)
        now += 0.01
        if plan.is_empty(s.cohort.size) and not s.running and not s.waiting:
            return now
    raise AssertionError("did not drain")


def finish_order(requests) -> list[int]:
    return [r.request_id for r in sorted(requests, key=lambda r: (r.finish_time, r.request_id))]


def check_blocks(s):
    """KV block conservation: free + held == pool (between steps, nothing reserved ahead)."""
    held = sum(
        s.kv.blocks_for(r.num_computed_tokens) if r.in_cohort else r.num_blocks for r in s.running
    )
    assert s.kv.num_free_blocks + held == s.kv.num_blocks


def plan_ids(plan, cohort):
    return plan.as_dict(cohort)
