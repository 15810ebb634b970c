"""Multi-turn conversations: each arrival opens a session whose later turns carry the history.

Turn j's prompt is the shared system prompt, then every earlier turn's new tokens and output, then
its own new tokens. Arrivals are open-loop: turn j+1 arrives `think_time` after turn j *arrived*,
so the workload never depends on how fast the simulated cluster serves (same seed, same requests,
whatever the scheduler); the price is that a slow cluster can see a turn before the previous one
has finished.

Prefix hashes name the prompt's blocks of `hash_block_size` tokens the way a KV cache would see
them: blocks wholly inside the system prompt are shared by all sessions; later full blocks are
shared by the turns of one session; a partial last block is unique to its request.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from servesim.config.workload import MAX_REQUESTS, SessionsConfig, ThinkTime
from servesim.core.errors import ConfigError
from servesim.workload.streams import substream
from servesim.workload.synthetic import lengths
from servesim.workload.table import RequestTable

LengthSampler = Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]
"""(n, rng) -> (new prompt tokens, output tokens) of n turns."""
MAX_HISTORY_BLOCKS = 100_000_000
"""Most prefix-hash blocks all turns' prompts may hold together: each turn repeats its session's
history, so long sessions grow quadratically (turns up to the default `turns.max` of 1,000,000
would take terabytes); ~4 GB of block ids at this bound."""


def expand_sessions(
    starts: np.ndarray, cfg: SessionsConfig, sample_lengths: LengthSampler, rng: np.random.Generator
) -> RequestTable:
    """The turns of one session per start time, in session order (not sorted by arrival)."""
    num_sessions = len(starts)
    turns = lengths(cfg.turns, num_sessions, substream(rng, "turns"))
    total = turns.sum(dtype=np.float64)
    if total > MAX_REQUESTS:
        raise ConfigError("workload.sessions.turns", f"{num_sessions} sessions draw {total:.3g} turns, more "
                          f"than the {MAX_REQUESTS:,} requests one run holds; lower turns.max")
    session = np.repeat(np.arange(num_sessions), turns)
    first = np.concatenate([[0], np.cumsum(turns)[:-1]])  # index of each session's first turn
    turn = np.arange(len(session)) - first[session]

    new_tokens, output = sample_lengths(len(session), substream(rng, "lengths"))
    think = think_times(cfg.think_time, len(session), substream(rng, "think"))
    think[turn == 0] = 0.0
    arrival = starts[session] + _restart(np.cumsum(think), first, session)

    spent = new_tokens + output
    history = _restart(np.cumsum(spent), first, session) - spent
    prompt = cfg.system_prompt_tokens + history + new_tokens

    keep = np.ones(len(session), dtype=bool)
    if cfg.max_context_tokens is not None:  # a session ends before its first turn that does not fit
        over = (prompt + output > cfg.max_context_tokens).astype(np.int64)
        keep = _restart(np.cumsum(over), first, session) == 0
    blocks = (prompt // cfg.hash_block_size).sum(dtype=np.float64)
    if blocks > MAX_HISTORY_BLOCKS:
        raise ConfigError("workload.sessions.turns", f"the turns' prompts hold {blocks:.3g} KV blocks in all "
                          f"(each repeats its history), more than {MAX_HISTORY_BLOCKS:,}; lower turns.max "
                          "or the lengths")
    hashes = prefix_hashes(prompt, session, turns, cfg.system_prompt_tokens, cfg.hash_block_size)
    table = RequestTable(
        arrival, prompt, output, session_id=session, prefix_hashes=hashes, hash_block_size=cfg.hash_block_size
    )
    return table.take(keep)


def _restart(cumulative: np.ndarray, first: np.ndarray, session: np.ndarray) -> np.ndarray:
    """An inclusive running total restarted at each session's first turn."""
    start = first[session]
    return cumulative - np.where(start > 0, cumulative[np.maximum(start - 1, 0)], 0)


def think_times(cfg: ThinkTime, n: int, rng: np.random.Generator) -> np.ndarray:
    if cfg.dist == "fixed":
        return np.full(n, cfg.mean)
    if cfg.dist == "exponential":
        return rng.exponential(cfg.mean, n)
    if cfg.dist == "uniform":
        return rng.uniform(cfg.min, max(cfg.min, cfg.max), n)
    if cfg.mean == 0:
        return np.zeros(n)
    return rng.lognormal(np.log(cfg.mean) - cfg.sigma**2 / 2, cfg.sigma, n)


def prefix_hashes(
    prompt: np.ndarray, session: np.ndarray, turns: np.ndarray, system_tokens: int, block: int
) -> list[tuple[int, ...]]:
    """Block ids per turn: 0..S-1 for the system prompt's S full blocks, then one id range per session
    for its later full blocks, then a fresh id for every partial last block."""
    num_system = system_tokens // block
    full = prompt // block
    longest = np.zeros(len(turns), dtype=np.int64)  # a session's most full blocks (its longest prompt)
    np.maximum.at(longest, session, full)
    own = np.maximum(longest - num_system, 0)
    own_start = (num_system + np.cumsum(own) - own).tolist()
    next_partial = int(num_system + own.sum())
    system_ids = tuple(range(num_system))
    out = []
    for p, s, f in zip(prompt.tolist(), session.tolist(), full.tolist()):
        ids = system_ids[: min(f, num_system)] + tuple(
            range(own_start[s], own_start[s] + max(f - num_system, 0))
        )
        if p % block:
            ids += (next_partial,)
            next_partial += 1
        out.append(ids)
    return out
