"""Keyed sub-streams of the workload's RNG stream.

A sub-stream is named, not numbered: a class, or a purpose within it (arrivals, prompt lengths),
always gets the same draws, so adding a class or a new draw elsewhere shifts nothing else.
"""

from __future__ import annotations

from zlib import crc32

import numpy as np


def substream(rng: np.random.Generator, *names: str) -> np.random.Generator:
    """The generator for `names` under `rng`'s seed (independent of how much `rng` has drawn)."""
    seq = rng.bit_generator.seed_seq
    key = tuple(seq.spawn_key) + tuple(crc32(n.encode()) for n in names)
    return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=key))
