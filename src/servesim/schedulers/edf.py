"""`edf`: earliest deadline first, from each request's SLOs.

Before its first token a request's deadline is `arrival + ttft_slo`; after `g` tokens, the deadline
of the next one is `first_token_time + g * tpot_slo` (meeting every such deadline meets the TPOT
SLO). Requests ahead of their schedule rank late and lend their batch slot to urgent ones.

Admission control (`admission_control: true`) rejects, on arrival, a request whose predicted TTFT
exceeds `headroom x ttft_slo` (reason `predicted_ttft_slo_miss`), SCORPIO/Mooncake-style early
rejection: serving it would only push others past their deadlines. The prediction is the larger of
(a) the prefill work ranked ahead of it plus its own, priced by the cost model, and (b) the requests
ranked ahead of it over the recent admission rate (what memory and slots actually let through).
"""

from __future__ import annotations

import bisect
import math
from collections import deque

from pydantic import Field

from servesim.core.request import Request
from servesim.cost.base import StepShape
from servesim.schedulers.policy import POLICIES, BasePolicy, PreemptiveParams, SchedulerView

REJECT_REASON = "predicted_ttft_slo_miss"


class EDFParams(PreemptiveParams):
    preempt_to_admit: bool = False
    """Off: a request ahead of its deadlines pauses (cheap) for an urgent one, but evicting its KV
    to make room would spend more time recomputing than the deadline order gains."""
    admission_control: bool = False
    """Reject arrivals predicted to miss their TTFT SLO."""
    headroom: float = Field(1.0, gt=0, le=100)
    """Admit while the predicted TTFT is at most this multiple of the TTFT SLO."""
    rate_window_s: float = Field(10.0, gt=0)
    """Span of recent admissions over which the admission rate is measured, seconds."""


@POLICIES.register("edf")
class EDFPolicy(BasePolicy):
    Params = EDFParams
    preemptive = True
    rank_changes = "with_progress"

    def __init__(self, params=None):
        super().__init__(params)
        self._samples: deque[tuple[float, int]] = deque()  # (time, admissions so far) at arrivals
        self._prefill_s_per_token: float | None = None

    # -- ranking ------------------------------------------------------------------------------
    @staticmethod
    def deadline(request: Request) -> float:
        g = request.num_generated_tokens
        if g == 0:
            return request.arrival_time + request.ttft_slo
        return request.first_token_time + g * request.tpot_slo

    def rank_key(self, request: Request, now: float) -> tuple:
        return (self.deadline(request), request.arrival_time, request.request_id)

    def repeat_limits(self, holders, queue, now: float) -> tuple[int, float]:
        """Each decode step moves every member's deadline `tpot_slo` later while the others stand
        still: the plan holds until a member passes the next non-member ranked behind it."""
        bound = 1 << 30
        paused = None  # key of the nearest paused holder ranked after the current position
        for key, request in reversed(holders):
            if not request.in_cohort:
                paused = key
                continue
            i = bisect.bisect_right(queue, key, key=lambda pair: pair[0])
            nearest = [
                k for k in (paused, queue[i][0] if i < len(queue) else None) if k is not None
            ]
            if nearest:
                bound = min(bound, self._steps_to_pass(request, min(nearest)))
        return bound, math.inf

    @staticmethod
    def _steps_to_pass(member: Request, other: tuple) -> int:
        """Fewest decode steps (>= 1) after which `member` ranks behind `other`."""
        tpot, g, first = member.tpot_slo, member.num_generated_tokens, member.first_token_time
        if not math.isfinite(tpot) or not math.isfinite(other[0]):
            return 1 << 30

        def key(j):  # the exact expression `deadline` evaluates after j more tokens
            return (first + (g + j) * tpot, member.arrival_time, member.request_id)

        j = max(1, math.ceil((other[0] - first) / tpot) - g)
        while key(j) <= other:
            j += 1
        while j > 1 and key(j - 1) > other:
            j -= 1
        return j

    # -- admission control --------------------------------------------------------------------
    def on_arrival(self, request: Request, now: float, view: SchedulerView) -> str | None:
        if not self.params.admission_control:
            return None
        self._samples.append((now, view.num_admitted))
        limit = self.params.headroom * request.ttft_slo
        return REJECT_REASON if self.predict_ttft(request, now, view) > limit else None

    def predict_ttft(self, request: Request, now: float, view: SchedulerView) -> float:
        queue = view.ranked_waiting(now)  # sorted: those ranked ahead are a prefix
        ahead = queue[: bisect.bisect_left(queue, self.rank_key(request, now), key=_key)]
        per_token = self.prefill_s_per_token(view)
        tokens = sum(r.num_pending_tokens for _, r in ahead) + request.num_pending_tokens
        own = request.num_pending_tokens * per_token
        rate = self.admission_rate(now)
        by_rate = len(ahead) / rate if rate > 0 else 0.0
        return max(tokens * per_token, by_rate + own)

    def admission_rate(self, now: float) -> float:
        """Admissions per second over the last `rate_window_s` (0 before two samples)."""
        samples, window = self._samples, self.params.rate_window_s
        while len(samples) > 1 and samples[0][0] < now - window:
            samples.popleft()
        (t0, n0), (t1, n1) = samples[0], samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def prefill_s_per_token(self, view: SchedulerView) -> float:
        """Seconds per prompt token in a full-budget prefill step (0 without a cost model)."""
        if self._prefill_s_per_token is None:
            n = view.limits.max_num_batched_tokens
            cost = view.cost_model
            self._prefill_s_per_token = (
                cost.step_time(StepShape([(n, 0)], 0, 0, 1)) / n if cost is not None else 0.0
            )
        return self._prefill_s_per_token


def _key(pair: tuple) -> tuple:
    return pair[0]
