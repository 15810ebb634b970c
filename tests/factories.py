"""Test factories: small configs, hand-built requests, tables and schedulers, a SimPy-free step
driver, and checked runs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import yaml

from servesim.core.request import Request
from servesim.kv.manager import KVCacheManager
from servesim.predictors.oracle import OraclePredictor
from servesim.schedulers import BATCHINGS, POLICIES, EngineLimits, Scheduler
from servesim.workload import RequestTable

BLOCK = 4
"""Default block size of `make_scheduler`: small, so block boundaries come often."""


def make_request(rid: int, prompt: int, output: int, arrival: float = 0.0, **kw) -> Request:
    return Request(rid, arrival, prompt, output, **kw)


def req(i: int, prompt: int, output: int, arrival: float | None = None, **kw) -> Request:
    """A request arriving at `i` seconds unless told otherwise (arrival order = id order)."""
    return Request(i, float(i) if arrival is None else arrival, prompt, output, **kw)


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


# -- configs ----------------------------------------------------------------------------------------
SMALL = {
    "seed": 7,
    "model": "llama3-8b",
    "hardware": "h100-sxm",
    "engine": {"scheduler": "fcfs", "max_num_seqs": 32, "max_num_batched_tokens": 4096},
    "workload": {
        "num_requests": 60,
        "arrival": {"process": "poisson", "rate": 20.0},
        "lengths": {
            "prompt": {"dist": "lognormal", "mean": 400, "sigma": 0.8, "max": 3000},
            "output": {"dist": "lognormal", "mean": 60, "sigma": 0.8, "max": 400},
        },
    },
}


def small_config(**changes) -> dict:
    """A deep copy of SMALL with dotted-key changes applied."""
    from servesim.config.loader import set_dotted

    cfg = copy.deepcopy(SMALL)
    for key, value in changes.items():
        set_dotted(cfg, key, value)
    return cfg


STUDY_SMALL = small_config(**{
    "seed": 3, "engine": {}, "slo": {"ttft_s": 0.5, "tpot_s": 0.05},
    "workload.lengths.prompt.mean": 500, "workload.lengths.output.mean": 80,
    "workload.lengths.output.max": 600,
})
"""The studies tests' config (engine defaults)."""


def write_config(folder: Path, name: str = "small.yaml", **top) -> Path:
    path = Path(folder) / name
    path.write_text(yaml.safe_dump({**STUDY_SMALL, **top}, sort_keys=False))
    return path


# -- request tables and runs on them -----------------------------------------------------------------
def table_from_rows(rows, hash_block_size: int = 512) -> RequestTable:
    """`rows`: (arrival_s, prompt_tokens, output_tokens, hashes) tuples."""
    arrival, prompt, output, hashes = zip(*rows)
    return RequestTable(
        np.array(arrival), np.array(prompt), np.array(output),
        prefix_hashes=[tuple(h) for h in hashes], hash_block_size=hash_block_size,
    )


def session_table(n: int, seed: int = 0, rate: float = 20.0, block: int = 512,
                  max_blocks: int = 8, output_mean: float = 40.0) -> RequestTable:
    """Multi-turn sessions: a shared system block, then each turn extends its session's prefix."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1 / rate, n))
    sessions: list[list[int]] = []
    next_id = 1
    rows = []
    for t in arrival:
        if not sessions or rng.random() < 0.35 or all(len(s) >= max_blocks for s in sessions):
            sessions.append([0])  # block 0: a system prompt every session shares
        s = sessions[int(rng.integers(len(sessions)))]
        if len(s) >= max_blocks:
            s = sessions[-1] = [0]
        grow = int(rng.integers(1, 3))
        s.extend(range(next_id, next_id + grow))
        next_id += grow
        prompt = (len(s) - 1) * block + int(rng.integers(1, block + 1))
        output = max(2, int(rng.exponential(output_mean)))
        rows.append((float(t), prompt, output, list(s)))
    return table_from_rows(rows, block)


def run_table(config: dict, table: RequestTable, after_step=None):
    from servesim.build import build
    from servesim.config import load_config
    from servesim.simulation import run

    built = build(load_config(config), table=table)
    return run(built, after_step=after_step), built


def check_kv(instance) -> None:
    """An `after_step` hook: KV block conservation after every step."""
    instance.kv.check_conservation()


def same_summary(a: dict, b: dict, ignore: tuple[str, ...] = ("wall_s",)) -> bool:
    """Two summaries equal bit for bit, NaN included (a run with nothing finished has NaN
    latencies, and `nan == nan` is false): compared as the JSON they are written as, less the
    `sim` keys in `ignore` (wall time; `events` where runs change the engine's own work)."""
    def text(summary: dict) -> str:
        sim = {k: v for k, v in summary["sim"].items() if k not in ignore}
        return json.dumps({**summary, "sim": sim}, sort_keys=True)
    return text(a) == text(b)
