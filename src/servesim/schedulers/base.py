"""The scheduler protocol and the mechanics every policy shares.

A scheduler is a plain synchronous object (no SimPy, no config): it owns the waiting queue and the
running set of one instance, and each step turns them into a `StepPlan`, holding KV blocks for it
through the KV manager as it goes. Policies differ only in how they fill the plan.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from servesim.core.cohort import DecodeCohort
from servesim.core.request import Request, RequestStatus
from servesim.core.step import StepPlan
from servesim.kv.manager import KVCacheManager
from servesim.registry import Registry


@dataclass(frozen=True)
class EngineLimits:
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunk_size: int = 512
    max_context: int = 1 << 30
    preemption: str = "recompute"
    """`recompute` drops a victim's KV; `swap` copies it to host memory and back over PCIe."""


@dataclass(frozen=True)
class SchedulerLoad:
    """What routers and time series see of an instance."""

    num_waiting: int
    num_running: int
    num_queued_tokens: int
    """Tokens the waiting requests must compute before their first (next) token."""
    num_running_tokens: int = 0
    """Prompt tokens of the running requests: the context they hold, counted at admission."""


@runtime_checkable
class Scheduler(Protocol):
    """One instance's batching policy.

    - `add_request(request, now)`: take a routed request; return None, or a rejection reason (the
      request is then never scheduled). Must not touch the KV cache.
    - `schedule(now)`: the next step's plan. Every request in `plan.tokens` has KV blocks for its
      tokens; if `plan.decode_cohort`, the cohort's next step is reserved. An empty plan means idle
      until the next arrival.
    - `finish(requests, now)`: the engine reports requests that emitted their last token; the
      scheduler drops them from its running set and frees their KV blocks.
    - `load()`: queue and batch sizes for routers and metrics.

    Prefill instances of a disaggregated cluster also need `release(request)` (BaseScheduler has
    it): the request leaves with its KV after its first token.
    """

    def add_request(self, request: Request, now: float) -> str | None: ...

    def schedule(self, now: float) -> StepPlan: ...

    def finish(self, requests: list[Request], now: float) -> None: ...

    def load(self) -> SchedulerLoad: ...


SCHEDULERS: Registry = Registry(
    "scheduler", "engine.scheduler", required=("add_request", "schedule", "finish", "load")
)


class SchedulerParams(BaseModel):
    """A policy's own parameters (`engine.scheduler_params`); subclasses add fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseScheduler:
    """Queues, admission checks, preemption and finishing; subclasses write `schedule`."""

    Params = SchedulerParams

    def __init__(
        self,
        kv: KVCacheManager,
        cohort: DecodeCohort,
        limits: EngineLimits,
        params: SchedulerParams | None = None,
        predictor=None,
        cost_model=None,
    ):
        self.kv = kv
        self.cohort = cohort
        self.limits = limits
        self.params = params if params is not None else self.Params()
        self.predictor = predictor
        self.cost_model = cost_model
        self.waiting: deque[Request] = deque()
        self.running: dict[Request, None] = {}  # admission order: the tail is preempted first
        self.num_preemptions = 0
        self._waiting_tokens = 0
        self._running_tokens = 0

    # -- protocol -------------------------------------------------------------------------------
    def add_request(self, request: Request, now: float) -> str | None:
        reason = self.rejection_reason(request)
        if reason is None:
            if self.predictor is not None:
                self.predictor.predict(request)
            self.enqueue(request)
        return reason

    def finish(self, requests: list[Request], now: float) -> None:
        for request in requests:
            if request.in_cohort:
                self.cohort.leave(request)
            del self.running[request]
            self._running_tokens -= request.num_prompt_tokens
            self.kv.free(request)
            request.status = RequestStatus.FINISHED
            if self.predictor is not None:
                self.predictor.observe(request)

    def load(self) -> SchedulerLoad:
        return SchedulerLoad(
            len(self.waiting), len(self.running), self._waiting_tokens, self._running_tokens
        )

    def release(self, request: Request) -> None:
        """Drop a running request that moves to another instance; its KV is the caller's to free
        (disaggregation: the prefill instance sends it first)."""
        assert not request.in_cohort
        del self.running[request]
        self._running_tokens -= request.num_prompt_tokens

    def schedule(self, now: float) -> StepPlan:
        raise NotImplementedError

    # -- shared mechanics -----------------------------------------------------------------------
    def rejection_reason(self, request: Request) -> str | None:
        """Why a request can never be served here, or None."""
        if request.num_prompt_tokens + request.num_output_tokens > self.limits.max_context:
            return "exceeds_max_context"
        if self.kv.blocks_for(request.num_prompt_tokens) > self.kv.num_blocks:
            return "prompt_exceeds_kv_capacity"
        if not self.kv.fits_ever(request):
            return "request_exceeds_kv_capacity"
        return None

    def enqueue(self, request: Request, front: bool = False) -> None:
        """Put a request into the waiting queue: arrivals at the back, preempted ones in front."""
        if front:
            self.waiting.appendleft(request)
        else:
            self.waiting.append(request)
        self._waiting_tokens += request.num_pending_tokens

    def admit(
        self, request: Request, *, plan: StepPlan | None = None, num_cached_tokens: int = 0
    ) -> None:
        """Move a request (already taken off `waiting`, its blocks held) into the running set.
        A swapped request's KV comes back over PCIe in `plan`'s step.

        `num_cached_tokens`: its prompt head was found in the prefix cache (`kv.match_prefix`)
        and its blocks referenced by `kv.allocate`; the request starts past those tokens.
        """
        self._waiting_tokens -= request.num_pending_tokens
        self._running_tokens += request.num_prompt_tokens
        if request.status == RequestStatus.SWAPPED:
            plan.num_swap_in_tokens += request.num_computed_tokens
            self.kv.swap_in(request)
        if num_cached_tokens:
            request.skip_cached_prefix(num_cached_tokens)
        request.status = RequestStatus.RUNNING
        self.running[request] = None

    def preempt(self, victim: Request, plan: StepPlan) -> None:
        """Evict a running request to the head of the queue. `recompute` drops its KV (prompt and
        output run again); `swap` copies the KV to host memory during `plan`'s step (recompute
        when the host tier has no room for it)."""
        if victim.in_cohort:
            self.cohort.leave(victim)
        del self.running[victim]
        self._running_tokens -= victim.num_prompt_tokens
        # swap needs room in host memory (finite when a host tier is configured), else recompute
        swap = self.limits.preemption == "swap" and self.kv.swap_out(victim)
        self.kv.free(victim)
        if swap:
            plan.num_swap_out_tokens += victim.num_computed_tokens
            victim.status = RequestStatus.SWAPPED
        else:
            victim.reset_for_recompute()
            victim.status = RequestStatus.WAITING
        victim.num_preemptions += 1
        self.num_preemptions += 1
        self.enqueue(victim, front=True)
        plan.preempted.append(victim)
        plan.tokens.pop(victim, None)

    def pick_victim(self) -> Request:
        """The running request to preempt when KV runs short: vLLM takes the latest admitted."""
        return next(reversed(self.running))

    def reserve_decodes(self, plan: StepPlan) -> None:
        """Give every cohort member its next token, preempting `pick_victim()` until the
        cohort's blocks fit (vLLM's policy when appending a slot fails)."""
        while self.cohort.size and not self.kv.reserve_cohort(self.cohort, 1):
            self.preempt(self.pick_victim(), plan)
        plan.decode_cohort = self.cohort.size > 0
