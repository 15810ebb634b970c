"""`power_of_two`: sample two distinct instances at random, send to the less loaded one.

The power of two choices: nearly the balance of join-the-shortest-queue while reading two loads
instead of all. Ties go to the first sampled instance.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from servesim.routers.base import LOAD_MEASURES, ROUTERS, BaseRouter, LoadMeasure


@ROUTERS.register("power_of_two")
class PowerOfTwoRouter(BaseRouter):
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        load: LoadMeasure = "requests"
        """Compare outstanding `requests`, `tokens` (work) or `queued_tokens` (prefill backlog)."""

    def route(self, request, instances, now) -> int:
        n = len(instances)
        if n == 1:
            return 0
        a, b = (int(x) for x in self.rng.choice(n, size=2, replace=False))
        measure = LOAD_MEASURES[self.params.load]
        return b if measure(instances[b].load()) < measure(instances[a].load()) else a
