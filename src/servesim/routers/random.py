"""`random`: a uniformly random instance per request, from the router's RNG stream."""

from __future__ import annotations

from servesim.routers.base import ROUTERS, BaseRouter


@ROUTERS.register("random")
class RandomRouter(BaseRouter):
    def route(self, request, instances, now) -> int:
        return int(self.rng.integers(len(instances)))
