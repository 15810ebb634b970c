"""A router plugin in one file: cache-aware routing, as Mooncake's Conductor does it.

Send a request where it would wait least: the instance's queued prefill tokens plus the part of
its prompt that the instance's prefix cache does not already hold. Ties go to the lowest index.

    servesim run configs/cluster_mooncake_prefix.yaml \\
        --set cluster.router=examples.cache_aware_router:CacheAwareRouter

Routers see instances only through read-only views (docs/cluster.md): `load()` and
`prefix_match_tokens(request)`.
"""

from __future__ import annotations

from pydantic import Field

from servesim.routers import BaseRouter, RouterParams


class CacheAwareParams(RouterParams):
    cached_token_weight: float = Field(1.0, ge=0)
    """Queued tokens a cached prompt token is worth (1: a cached token saves one token of work)."""


class CacheAwareRouter(BaseRouter):
    Params = CacheAwareParams

    def route(self, request, instances, now: float) -> int:
        def expected_work(view) -> float:
            cached = view.prefix_match_tokens(request) * self.params.cached_token_weight
            return view.load().num_queued_tokens + request.num_prompt_tokens - cached

        return min(range(len(instances)), key=lambda i: (expected_work(instances[i]), i))
