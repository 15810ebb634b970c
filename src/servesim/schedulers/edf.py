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
from servesim.schedulers.base import SCHEDULERS
from servesim.schedulers.ranked import RankedParams, RankedScheduler, by_key

REJECT_REASON = "predicted_ttft_slo_miss"


class EDFParams(RankedParams):
    preempt_to_admit: bool = False
    """Off: a request ahead of its deadlines pauses (cheap) for an urgent one, but evicting its KV
    to make room would spend more time recomputing than the deadline order gains."""
    admission_control: bool = False
    """Reject arrivals predicted to miss their TTFT SLO."""
    headroom: float = Field(1.0, gt=0, le=100)
    """Admit while the predicted TTFT is at most this multiple of the TTFT SLO."""
    rate_window_s: float = Field(10.0, gt=0)
    """Span of recent admissions over which the admission rate is measured, seconds."""


@SCHEDULERS.register("edf")
class EDFScheduler(RankedScheduler):
    Params = EDFParams

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._admissions: deque[float] = deque()
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
    def add_request(self, request: Request, now: float) -> str | None:
        if self.params.admission_control:
            reason = self.rejection_reason(request)
            if (
                reason is None
                and self.predict_ttft(request, now) > self.params.headroom * request.ttft_slo
            ):
                reason = REJECT_REASON
            if reason is not None:
                return reason
        return super().add_request(request, now)

    def admit(self, request: Request, *, plan=None) -> None:
        super().admit(request, plan=plan)
        if self.params.admission_control:
            self._admissions.append(self._now)

    def predict_ttft(self, request: Request, now: float) -> float:
        mine = self.rank_key(request, now)  # the queue is sorted: those ahead are a prefix
        ahead = [r for _, r in self._queue[: bisect.bisect_left(self._queue, mine, key=by_key)]]
        tokens = sum(r.num_pending_tokens for r in ahead) + request.num_pending_tokens
        own = request.num_pending_tokens * self.prefill_s_per_token()
        by_work = tokens * self.prefill_s_per_token()
        by_rate = len(ahead) / rate if (rate := self.admission_rate(now)) > 0 else 0.0
        return max(by_work, by_rate + own)

    def admission_rate(self, now: float) -> float:
        """Admissions per second over the last `rate_window_s` (0 before any)."""
        times, window = self._admissions, self.params.rate_window_s
        while times and times[0] < now - window:
            times.popleft()
        if len(times) < 2:
            return 0.0
        return len(times) / max(now - times[0], 1e-9)

    def prefill_s_per_token(self) -> float:
        """Seconds per prompt token in a full-budget prefill step (0 without a cost model)."""
        if self._prefill_s_per_token is None:
            n = self.limits.max_num_batched_tokens
            cost = self.cost_model
            self._prefill_s_per_token = (
                cost.step_time(StepShape([(n, 0)], 0, 0, 1)) / n if cost is not None else 0.0
            )
        return self._prefill_s_per_token
