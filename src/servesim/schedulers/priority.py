"""`priority`: static priority with preemption of less urgent work.

Online and offline work co-located on one instance: a request's priority comes from its class
(`class_priority: {online: 1, offline: 0}`), else from its own `priority` (the workload's, where
higher is more urgent); higher priority runs first, arrival order within a priority. More urgent
requests take batch slots from less urgent ones (which pause with their KV) and, when memory is
short, evict them (the lowest priority, latest arrival first).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from servesim.core.request import Request
from servesim.schedulers.policy import POLICIES, BasePolicy, PreemptiveParams


class PriorityParams(PreemptiveParams):
    class_priority: dict[str, int] = Field(default_factory=dict)
    """Priority per class name, higher runs first; other classes use the request's `priority`."""

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data):
        if isinstance(data, dict) and "classes" in data:
            raise ValueError(
                "`classes` (lower level first) was replaced by `class_priority` (higher first, "
                "as the workload's `priority`)"
            )
        return data


@POLICIES.register("priority")
class PriorityPolicy(BasePolicy):
    Params = PriorityParams
    preemptive = True
    rank_changes = "never"

    def priority(self, request: Request) -> int:
        return self.params.class_priority.get(request.class_name, request.priority)

    def rank_key(self, request: Request, now: float) -> tuple:
        return (-self.priority(request), request.arrival_time, request.request_id)
