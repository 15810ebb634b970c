"""Helpers for cluster tests: request tables with prefix hashes, and checked runs."""

from __future__ import annotations

import numpy as np

from servesim.build import build
from servesim.config import load_config
from servesim.simulation import run
from servesim.workload import RequestTable


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
    built = build(load_config(config), table=table)
    return run(built, after_step=after_step), built


def check_kv_blocks(instance) -> None:
    """KV block conservation with prefix caching and handoffs, after a step:
    unnamed free + cached + private blocks of running requests + reserved cohort steps
    + detached (in transfer) == pool size."""
    kv, bs = instance.kv, instance.kv.block_size
    private = 0
    for r in instance.scheduler.running:
        total = -(-r.num_computed_tokens // bs) if r.in_cohort else r.num_blocks
        private += total - kv.num_shared_blocks(r)
    private += instance.cohort.blocks_needed(0, instance.cohort.reserved_steps)
    assert kv.num_unnamed_free_blocks + kv.num_cached_blocks + private + kv.num_detached_blocks == (
        kv.num_blocks
    )
    assert 0 <= kv.num_free_blocks <= kv.num_blocks
    if kv.prefix is not None:
        assert all(c >= 0 for c in kv.prefix.ref_counts.values())
