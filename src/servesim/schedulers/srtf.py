"""`srtf`: ELIS-style iterative shortest-remaining-time-first.

Every step ranks all requests, waiting and running, by their predicted remaining output tokens
(`predicted_output_tokens - generated`, never below zero) and fills the batch from the shortest.
Requests pushed out of the batch are paused with their KV; memory pressure preempts the longest.
Predictions come from the length predictor (`engine.predictor`); the truth is never read here.

Aging (`aging_s`): a request that has waited that long since its arrival is promoted ahead of every
unpromoted one, promoted ones in arrival order, so no request starves behind a stream of short ones.
"""

from __future__ import annotations

import math
from itertools import chain

from pydantic import Field

from servesim.core.request import Request
from servesim.schedulers.policy import POLICIES, UNBOUNDED, BasePolicy, PreemptiveParams


class SRTFParams(PreemptiveParams):
    preempt_to_admit: bool = False
    """Off: a shorter arrival takes a longer request's batch slot (it pauses, keeping its KV) but
    does not evict its KV; on ShareGPT, recomputing evicted prompts cost more than it saved."""
    aging_s: float | None = Field(None, gt=0)
    """Promote requests older than this (seconds since arrival) ahead of all others; None: never."""


@POLICIES.register("srtf")
class SRTFPolicy(BasePolicy):
    Params = SRTFParams
    preemptive = True

    def __init__(self, params=None):
        super().__init__(params)
        # Remaining work shrinks as a request decodes; promotion also changes keys with time.
        self.rank_changes = "with_progress" if self.params.aging_s is None else "with_time"

    def rank_key(self, request: Request, now: float) -> tuple:
        aging = self.params.aging_s
        if aging is not None and now >= request.arrival_time + aging:
            return (0, request.arrival_time, request.request_id)
        predicted = request.predicted_output_tokens
        if math.isnan(predicted):  # never predicted: rank as unknown, i.e. long
            predicted = math.inf
        remaining = max(predicted - request.num_generated_tokens, 0.0)
        return (1, remaining, request.arrival_time, request.request_id)

    def repeat_limits(self, holders, queue, now: float) -> tuple[int, float]:
        # Members' remaining work only shrinks, so they never fall behind anyone; what can change
        # the ranking is a request outside the cohort reaching its promotion time.
        aging = self.params.aging_s
        if aging is None:
            return UNBOUNDED
        others = chain((r for _, r in holders if not r.in_cohort), (r for _, r in queue))
        promotions = (r.arrival_time + aging for r in others if now < r.arrival_time + aging)
        return 1 << 30, min(promotions, default=math.inf)
