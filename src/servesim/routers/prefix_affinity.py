"""`prefix_affinity`: send requests that share a prompt prefix to the same instance, unless it is
overloaded (after DualMap: cache affinity and load balance from two hashed candidates).

The affinity key is the hash chain of the prompt's first `prefix_blocks` hash blocks (so turns of
one conversation, which extend the same prefix, share it). Two independent hashes of the key pick
two candidates on a consistent-hashing ring (`virtual_nodes` points per instance), so adding an
instance moves only the keys it takes over. The first candidate is preferred; when its load is
above `overload_factor` times the mean load plus `overload_margin`, the less loaded of the two
wins (ties: the first). The default load is the prefill backlog (`queued_tokens`), which is
what a new request's TTFT waits behind; the defaults were chosen on the Mooncake conversation
trace (examples/studies/cluster_studies.py). Requests without prefix hashes are keyed by their
session, or, with neither, go to the less loaded of two random instances.
"""

from __future__ import annotations

import bisect

from pydantic import BaseModel, ConfigDict, Field

from servesim.kv.block_pool import chain_hashes, mix64
from servesim.routers.base import LOAD_MEASURES, ROUTERS, BaseRouter, LoadMeasure

_SECOND_HASH_SALT = 0x5851F42D4C957F2D


@ROUTERS.register("prefix_affinity")
class PrefixAffinityRouter(BaseRouter):
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        prefix_blocks: int = Field(2, ge=1, le=1_000_000)
        """Leading hash blocks of the prompt that form the affinity key."""
        overload_factor: float = Field(1.1, ge=1.0)
        """The preferred instance is overloaded above this multiple of the mean load (+ margin)."""
        overload_margin: float = Field(4096.0, ge=0.0)
        """Absolute slack on the overload threshold, in the load measure's unit, so a lightly
        loaded cluster keeps affinity."""
        virtual_nodes: int = Field(64, ge=1, le=4096)
        """Points per instance on the hash ring."""
        load: LoadMeasure = "queued_tokens"
        """Load measure for the overload test: `requests`, `tokens` or `queued_tokens`."""

    def __init__(self, params=None, rng=None):
        super().__init__(params, rng)
        self._ring_size = -1
        self._points: list[int] = []
        self._owners: list[int] = []
        self.num_deflected = 0
        """Requests sent to the second candidate because the first was overloaded."""

    def route(self, request, instances, now) -> int:
        n = len(instances)
        if n == 1:
            return 0
        key = self.affinity_key(request)
        measure = LOAD_MEASURES[self.params.load]
        if key is None:
            a, b = (int(x) for x in self.rng.choice(n, size=2, replace=False))
            return b if measure(instances[b].load()) < measure(instances[a].load()) else a
        first, second = self.candidates(key, n)
        loads = [measure(instance.load()) for instance in instances]
        threshold = self.params.overload_factor * sum(loads) / n + self.params.overload_margin
        if loads[first] <= threshold or loads[second] >= loads[first]:
            return first
        self.num_deflected += 1
        return second

    def affinity_key(self, request) -> int | None:
        if request.prefix_hashes:
            return chain_hashes(request.prefix_hashes[: self.params.prefix_blocks])[-1]
        if request.session_id >= 0:
            return mix64(request.session_id)
        return None

    def candidates(self, key: int, n: int) -> tuple[int, int]:
        """The preferred instance and a distinct second one, both from the ring."""
        if n != self._ring_size:
            self._build_ring(n)
        first = self._owner_at(mix64(key))
        pos = bisect.bisect_left(self._points, mix64(key ^ _SECOND_HASH_SALT)) % len(self._points)
        for step in range(len(self._points)):
            second = self._owners[(pos + step) % len(self._points)]
            if second != first:
                return first, second
        raise AssertionError("a ring of two or more instances has two owners")

    def _owner_at(self, h: int) -> int:
        return self._owners[bisect.bisect_left(self._points, h) % len(self._points)]

    def _build_ring(self, n: int) -> None:
        v = self.params.virtual_nodes
        points = sorted((mix64((i << 20) | j), i) for i in range(n) for j in range(v))
        self._points = [p for p, _ in points]
        self._owners = [i for _, i in points]
        self._ring_size = n
