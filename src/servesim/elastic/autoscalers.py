"""Built-in autoscaling policies: how many instances should be up.

- `target_utilization`: keep a load measure of the serving instances near a target (HPA-style:
  desired = ceil(serving x measure / target)).
- `queue_length`: one instance per `requests_per_instance` outstanding requests.
- `predicted_load`: the arrival rate extrapolated `lookahead_s` ahead (over a cold start, so new
  instances are ready when the load is), over what one instance serves.
- `schedule`: instance counts at given times (a known daily pattern).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from servesim.elastic.base import AUTOSCALERS, BasePolicy, FleetState, PolicyParams


class TargetParams(PolicyParams):
    target: float = Field(0.6, gt=0, le=1)
    """The measure each serving instance should sit at (0..1)."""
    metric: Literal["kv", "busy"] = "kv"
    """`kv`: mean KV-cache usage (memory pressure; continuous batching keeps an instance busy
    whenever it holds a request, so `busy`, the share of time spent stepping, saturates early)."""
    tolerance: float = Field(0.1, ge=0, le=1)
    """No change while the measure is within this of the target."""


@AUTOSCALERS.register("target_utilization")
class TargetUtilization(BasePolicy):
    Params = TargetParams

    def desired(self, state: FleetState) -> int:
        p = self.params
        n = len(state.serving) + state.starting
        if not state.serving:
            return max(n, 1)
        value = state.kv_usage if p.metric == "kv" else state.utilization
        if abs(value - p.target) <= p.tolerance and not state.pending:
            return n
        return max(1, math.ceil(len(state.serving) * value / p.target))


class QueueParams(PolicyParams):
    requests_per_instance: float = Field(16.0, gt=0)
    """Outstanding requests (waiting + running) one instance should hold."""


@AUTOSCALERS.register("queue_length")
class QueueLength(BasePolicy):
    Params = QueueParams

    def desired(self, state: FleetState) -> int:
        outstanding = state.pending + sum(
            i.load().num_waiting + i.load().num_running for i in state.serving
        )
        return math.ceil(outstanding / self.params.requests_per_instance)


class PredictedParams(PolicyParams):
    requests_per_instance: float = Field(gt=0)
    """Arrival rate one instance serves within its SLO, req/s (a capacity search finds it)."""
    window_s: float = Field(60.0, gt=0)
    """Seconds of arrivals the rate is measured over."""
    lookahead_s: float = Field(60.0, ge=0)
    """Seconds ahead the rate is extrapolated (about a cold start plus a decision interval)."""
    headroom: float = Field(1.0, gt=0, le=10)
    """Multiplies the predicted rate (spare capacity for bursts)."""


@AUTOSCALERS.register("predicted_load")
class PredictedLoad(BasePolicy):
    Params = PredictedParams

    @property
    def rate_window_s(self) -> float:
        return self.params.window_s

    def desired(self, state: FleetState) -> int:
        p = self.params
        slope = (state.arrival_rate - state.previous_arrival_rate) / p.window_s
        predicted = state.arrival_rate + max(0.0, slope) * p.lookahead_s
        return math.ceil(predicted * p.headroom / p.requests_per_instance)


class ScheduleParams(PolicyParams):
    points: list[tuple[float, int]]
    """`[start_s, instances]` pairs, first at 0, times increasing; the last count holds."""

    @field_validator("points")
    @classmethod
    def _increasing(cls, points):
        if not points or points[0][0] != 0:
            raise ValueError("needs [[0, instances], ...] starting at 0 s")
        if any(b[0] <= a[0] for a, b in zip(points, points[1:])):
            raise ValueError("point times must increase strictly")
        return points


@AUTOSCALERS.register("schedule")
class Schedule(BasePolicy):
    Params = ScheduleParams

    def desired(self, state: FleetState) -> int:
        count = self.params.points[0][1]
        for start, n in self.params.points:
            if start > state.now:
                break
            count = n
        return count
