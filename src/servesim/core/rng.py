"""Named random streams: one seed, one independent generator per subsystem.

Streams are keyed by name, so adding draws to one subsystem (say, the router) never shifts
another's (the arrivals). That is what makes A/B comparisons paired.
"""

from zlib import crc32

import numpy as np


def stream(seed: int, name: str) -> np.random.Generator:
    """The generator for subsystem `name` under `seed`; the same pair always gives the same draws."""
    return np.random.default_rng([int(seed), crc32(name.encode())])
