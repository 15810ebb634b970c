"""The policy protocol: a scheduling policy only orders requests.

Everything else — queues, admission into the KV cache (prefix match, allocation, watermark),
preemption, the decode cohort, release, counters — is engine mechanics (`schedulers.core`),
written once, so every policy gets prefix caching, swap, disaggregation and multi-step decode runs
for free. How a step is filled (whole prompts or chunks) is a separate, independent choice
(`schedulers.batching`).
"""

from __future__ import annotations

import math
from typing import Literal, Protocol, Sequence, runtime_checkable

from pydantic import BaseModel, ConfigDict

from servesim.core.request import Request
from servesim.registry import Registry

Ranked = list[tuple[tuple, Request]]
"""(key, request) pairs in rank order, best first."""

UNBOUNDED = (1 << 30, math.inf)
"""`repeat_limits` of a ranking that holds however long the cohort decodes."""


@runtime_checkable
class Policy(Protocol):
    """Who goes next. One method is required; two are optional (`BasePolicy` has defaults).

    - `rank_key(request, now) -> tuple`: smaller runs first. It orders the waiting queue (who is
      admitted next), the running requests (who decodes when batch slots are short, who is
      preempted when KV is short: the largest key) and must end with `request.request_id`, so
      ties never depend on the order of a set or a dict.
    - `repeat_limits(batch, others, now) -> (max_steps, replan_time)`: how long the ranking between
      the decoding cohort (`batch`) and the others (paused holders, the waiting queue) is sure to
      hold while the cohort decodes; the engine then simulates that many identical steps as one
      event. Only asked when the ranking could change (see `rank_changes`).
    - `on_arrival(request, now, view) -> str | None`: admission control; a string rejects the
      request with that reason. `view` is the instance's read-only `SchedulerView`.

    Two class attributes describe the policy to the engine:
    - `preemptive`: better-ranked requests take batch slots from running ones (which pause and
      keep their KV) and, if the policy's `preempt_to_admit` is true, evict their KV to start.
    - `rank_changes`: `never` (a key is fixed at arrival), `with_progress` (it changes only as the
      request computes tokens) or `with_time` (it depends on `now`; the default, the safe one).
    """

    def rank_key(self, request: Request, now: float) -> tuple: ...


POLICIES: Registry = Registry("scheduler", "engine.scheduler", required=("rank_key",))


class PolicyParams(BaseModel):
    """A policy's own parameters (`engine.scheduler: {name: ..., <params>}`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BasePolicy:
    """Defaults for the optional parts of `Policy`; subclasses write `rank_key`."""

    Params = PolicyParams
    preemptive: bool = False
    rank_changes: Literal["never", "with_progress", "with_time"] = "with_time"

    def __init__(self, params: PolicyParams | None = None):
        self.params = params if params is not None else self.Params()

    @property
    def preempt_to_admit(self) -> bool:
        """Evict lower-ranked requests' KV to start a better-ranked one (preemptive policies)."""
        return bool(getattr(self.params, "preempt_to_admit", False))

    def rank_key(self, request: Request, now: float) -> tuple:
        raise NotImplementedError

    def repeat_limits(self, batch: Ranked, others: Ranked, now: float) -> tuple[int, float]:
        """Default: one step at a time whenever the ranking could change (always correct)."""
        return 1, math.inf

    def on_arrival(self, request: Request, now: float, view: SchedulerView) -> str | None:
        return None


class SchedulerView(Protocol):
    """What a policy may read of its instance (for admission control)."""

    limits: object
    """`EngineLimits` of the instance."""
    cost_model: object
    """The instance's cost model (may be None in unit tests)."""
    num_admitted: int
    """Admissions from the waiting queue so far."""

    def ranked_waiting(self, now: float) -> Ranked: ...

    @property
    def running(self) -> Sequence[Request]: ...


class PreemptiveParams(PolicyParams):
    preempt_to_admit: bool = True
    """Evict lower-ranked requests' KV to start a better-ranked waiting one, and only if evicting
    them frees enough (else it waits for memory; lower-ranked ones still lose their batch slot)."""
