"""Test helpers: hand-built requests and scheduler fixtures without SimPy."""

from __future__ import annotations

from servesim.core.cohort import DecodeCohort
from servesim.core.request import Request
from servesim.kv.manager import KVCacheManager
from servesim.schedulers.base import EngineLimits


def make_request(rid: int, prompt: int, output: int, arrival: float = 0.0, **kw) -> Request:
    return Request(rid, arrival, prompt, output, **kw)


def make_parts(num_blocks=100, block_size=16, **limits):
    kv = KVCacheManager(num_blocks, block_size, watermark=0.0)
    cohort = DecodeCohort(block_size)
    return kv, cohort, EngineLimits(**limits)


def apply_plan(plan, cohort, end_time: float):
    """What the engine does after a step: advance, join decoders to the cohort; returns finished."""
    import numpy as np

    finished = cohort.advance(np.array([end_time])) if plan.decode_cohort else []
    for request, n in plan.tokens.items():
        if request.advance(n, end_time):
            finished.append(request)
        elif request.num_pending_tokens == 1:
            cohort.join(request)
    return finished


def held_blocks(requests, block_size: int) -> int:
    """Blocks the requests hold after a step: cohort members by their computed tokens."""
    total = 0
    for r in requests:
        total += -(-r.num_computed_tokens // block_size) if r.in_cohort else r.num_blocks
    return total
