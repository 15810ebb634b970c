"""`least_loaded` and `least_tokens`: join the shortest queue, counted in requests or in work.

`least_loaded` picks the instance with the fewest outstanding requests (waiting plus running);
`least_tokens` the one with the least outstanding work in tokens (prompt tokens still to compute
plus the prompt context of running requests), a JSQ on work that sees one long prompt as the
load it is. Ties go to the lowest index. Both keep a heap of the instances' loads, updated as
instances report changes (`routers.load_index`), so an arrival costs O(log n), not a scan.
"""

from __future__ import annotations

from servesim.routers.base import ROUTERS, BaseRouter, outstanding_requests, outstanding_tokens
from servesim.routers.load_index import indexed_least_loaded


@ROUTERS.register("least_loaded")
class LeastLoadedRouter(BaseRouter):
    def route(self, request, instances, now) -> int:
        return indexed_least_loaded(self, instances, outstanding_requests)


@ROUTERS.register("least_tokens")
class LeastTokensRouter(BaseRouter):
    def route(self, request, instances, now) -> int:
        return indexed_least_loaded(self, instances, outstanding_tokens)
