"""`least_loaded` and `least_tokens`: join the shortest queue, counted in requests or in work.

`least_loaded` picks the instance with the fewest outstanding requests (waiting plus running);
`least_tokens` the one with the least outstanding work in tokens (prompt tokens still to compute
plus the prompt context of running requests), a JSQ on work that sees one long prompt as the
load it is. Ties go to the lowest index.
"""

from __future__ import annotations

from servesim.routers.base import (
    ROUTERS,
    BaseRouter,
    least_loaded,
    outstanding_requests,
    outstanding_tokens,
)


@ROUTERS.register("least_loaded")
class LeastLoadedRouter(BaseRouter):
    def route(self, request, instances, now) -> int:
        return least_loaded(instances, outstanding_requests)


@ROUTERS.register("least_tokens")
class LeastTokensRouter(BaseRouter):
    def route(self, request, instances, now) -> int:
        return least_loaded(instances, outstanding_tokens)
