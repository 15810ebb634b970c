"""`priority`: static per-class priority with preemption of lower classes.

Online and offline work co-located on one instance: a request's level comes from its class
(`classes: {online: 0, offline: 1}`), else from its own `priority`; a lower level runs first,
arrival order within a level. Higher classes take batch slots from lower ones (which pause with
their KV) and, when memory is short, evict them (the lowest level, latest arrival first).
"""

from __future__ import annotations

from pydantic import Field

from servesim.core.request import Request
from servesim.schedulers.base import SCHEDULERS
from servesim.schedulers.ranked import RankedParams, RankedScheduler


class PriorityParams(RankedParams):
    classes: dict[str, int] = Field(default_factory=dict)
    """Level per class name; lower runs first. Other classes use the request's `priority` (0)."""


@SCHEDULERS.register("priority")
class PriorityScheduler(RankedScheduler):
    Params = PriorityParams

    def level(self, request: Request) -> int:
        return self.params.classes.get(request.class_name, request.priority)

    def rank_key(self, request: Request, now: float) -> tuple:
        return (self.level(request), request.arrival_time, request.request_id)
