"""`fcfs`: first come, first served — vLLM's order.

Waiting requests start in arrival order; running ones keep their batch slot; a KV shortage preempts
the most recently arrived running request, which re-enters the queue at its arrival position.
With `engine.batching: whole` (the default) this is vLLM without chunked prefill; with `chunked`
it is Sarathi-Serve (`engine.scheduler: chunked_prefill` is that pair).
"""

from __future__ import annotations

from servesim.core.request import Request
from servesim.schedulers.policy import POLICIES, BasePolicy


@POLICIES.register("fcfs")
class FCFSPolicy(BasePolicy):
    rank_changes = "never"

    def rank_key(self, request: Request, now: float) -> tuple:
        return (request.arrival_time, request.request_id)


POLICIES.alias("chunked_prefill", "fcfs")  # with chunked batching: build.make_batching
