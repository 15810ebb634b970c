"""Caches shared by the cost models of instances with the same constants.

A fleet builds one cost model per instance, and each priced its linear layers for every
(tokens, logits) pair it met on its own: at 64 instances half of those calls missed their cache.
A cached value is a pure function of its key and of the constants named in `shared_cache`'s key,
so models with equal constants may share one dict, and results do not change.
"""

from __future__ import annotations

from typing import TypeVar

V = TypeVar("V")

LIMIT = 1 << 16
"""Entries a price cache holds before it starts again (long sweeps meet many shapes)."""

KEEP = 16
"""Caches kept for the most recently built constants (a sweep builds many models in one process)."""

_CACHES: dict[tuple, dict] = {}


def shared_cache(constants: tuple) -> dict:
    """The cache of models whose cached values depend on `constants` (hashable) alone."""
    cache = _CACHES.pop(constants, None)
    if cache is None:
        cache = {}
        if len(_CACHES) >= KEEP:
            del _CACHES[next(iter(_CACHES))]  # the least recently built
    _CACHES[constants] = cache
    return cache


def remember(cache: dict, key: object, value: V) -> V:
    """Store `value` under `key` in a price cache, emptied first once it holds LIMIT entries."""
    if len(cache) > LIMIT:
        cache.clear()
    cache[key] = value
    return value
