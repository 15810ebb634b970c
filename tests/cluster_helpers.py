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
    """KV block conservation after a step (prefix caching, handoffs and reservations included)."""
    instance.kv.check_conservation()
