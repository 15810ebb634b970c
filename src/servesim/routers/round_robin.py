"""`round_robin`: instances in turn, ignoring load."""

from __future__ import annotations

from servesim.routers.base import ROUTERS, BaseRouter


@ROUTERS.register("round_robin")
class RoundRobinRouter(BaseRouter):
    def __init__(self, params=None, rng=None):
        super().__init__(params, rng)
        self._next = 0

    def route(self, request, instances, now) -> int:
        choice = self._next % len(instances)
        self._next += 1
        return choice
