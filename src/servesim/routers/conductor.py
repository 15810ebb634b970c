"""`conductor` and `dualmap`: cache-aware routing from a TTFT estimate per instance.

The estimate (after Mooncake's Conductor) for sending a request to an instance is

    queued prefill tokens x s/token  +  uncached prompt tokens x s/token  +  reload time

where the prefix it would hit is read per tier from the instance (`prefix_hits`: GPU, DRAM, SSD,
cluster pool), the reload time is what moving the lower-tier part to the GPU takes over the
instance's links (`reload_time_s`), and s/token is the instance's prefill cost per token from its
cost model (`prefill_s_per_token`). A cluster-wide pool makes every instance "hit" the published
prefixes, so the estimate turns into load balancing with cheap reloads: that is global
cache-aware scheduling; without a pool the same router is local cache-aware.

`conductor` sends each request to the lowest estimate. `dualmap` keeps DualMap's two hashed
candidates and prefers the one with the longer cached prefix (cache affinity) as long as its
estimate stays within `slo_fraction` of the request's TTFT objective; once that SLO is at risk it
takes the lower estimate of the two, and if both are at risk, the lowest in the cluster.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from servesim.routers.base import ROUTERS, BaseRouter
from servesim.routers.prefix_affinity import PrefixAffinityRouter


def estimate_ttft(instance, request) -> tuple[float, int]:
    """(estimated TTFT in seconds, cached prompt tokens) of sending `request` to `instance`."""
    hits = instance.prefix_hits(request)
    cached = sum(hits.values())
    rate = instance.prefill_s_per_token
    queued = instance.load().num_queued_tokens
    ttft = (queued + request.num_prompt_tokens - cached) * rate + instance.reload_time_s(hits)
    return ttft, cached


def lowest_ttft(request, instances) -> int:
    """Index of the instance with the lowest estimated TTFT; ties go to the lowest index."""
    best, best_ttft = 0, math.inf
    for i, instance in enumerate(instances):
        ttft, _ = estimate_ttft(instance, request)
        if ttft < best_ttft:
            best, best_ttft = i, ttft
    return best


@ROUTERS.register("conductor")
class ConductorRouter(BaseRouter):
    def route(self, request, instances, now) -> int:
        return lowest_ttft(request, instances)


@ROUTERS.register("dualmap")
class DualMapRouter(BaseRouter):
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        prefix_blocks: int = Field(2, ge=1, le=1_000_000)
        """Leading hash blocks of the prompt that pick the two candidates."""
        slo_fraction: float = Field(0.5, gt=0, le=10)
        """Affinity holds while the preferred candidate's estimated TTFT is within this fraction
        of the TTFT objective."""
        ttft_slo_s: float = Field(2.0, gt=0)
        """TTFT objective for requests without their own (`ttft_slo` from a class)."""
        virtual_nodes: int = Field(64, ge=1, le=4096)
        """Points per instance on the hash ring."""

    def __init__(self, params=None, rng=None):
        super().__init__(params, rng)
        p = self.params
        self._ring = PrefixAffinityRouter(
            PrefixAffinityRouter.Params(prefix_blocks=p.prefix_blocks, virtual_nodes=p.virtual_nodes),
            rng,
        )
        self.num_deflected = 0

    def route(self, request, instances, now) -> int:
        n = len(instances)
        if n == 1:
            return 0
        key = self._ring.affinity_key(request)
        if key is None:
            return lowest_ttft(request, instances)
        a, b = self._ring.candidates(key, n)
        (ta, ca), (tb, cb) = estimate_ttft(instances[a], request), estimate_ttft(instances[b], request)
        preferred, other = ((a, ta), (b, tb)) if ca >= cb else ((b, tb), (a, ta))
        slo = request.ttft_slo if math.isfinite(request.ttft_slo) else self.params.ttft_slo_s
        limit = self.params.slo_fraction * slo
        if preferred[1] <= limit:
            return preferred[0]
        self.num_deflected += 1
        if other[1] <= limit:
            return other[0]
        return lowest_ttft(request, instances)
