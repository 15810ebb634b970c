"""How a step is filled, independent of the order (the policy): whole prompts or chunks.

A batching fills the plan of one step through the scheduler's mechanics (`schedulers.core`):
`candidates()` (waiting requests that would get a batch slot, best first), `ranked_running()`,
`admit`, `grow`, `decode`, `preempt` and `worst_running()`. Any policy combines with any batching.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from servesim.core.request import Request
from servesim.registry import Registry
from servesim.schedulers.core import is_paused_decode


@runtime_checkable
class Batching(Protocol):
    """- `fill(scheduler)`: build `scheduler.plan` for the next step.
    - `rejection_reason(request, limits)`: why this batching can never run a request, or None."""

    def fill(self, scheduler) -> None: ...

    def rejection_reason(self, request: Request, limits) -> str | None: ...


BATCHINGS: Registry = Registry("batching", "engine.batching", required=("fill", "rejection_reason"))


class BatchingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@BATCHINGS.register("whole")
class WholePromptBatching:
    """vLLM without chunked prefill: a step prefills whole prompts of the candidates, in rank
    order up to `max_num_batched_tokens` and stopping at the first that cannot start; when none
    can, it decodes every running request within the batch."""

    Params = BatchingParams

    def __init__(self, params: BatchingParams | None = None):
        self.params = params if params is not None else self.Params()  # type: ignore[call-arg]

    def rejection_reason(self, request: Request, limits) -> str | None:
        if request.num_prompt_tokens > limits.max_num_batched_tokens:
            return "prompt_exceeds_max_num_batched_tokens"
        return None

    def fill(self, scheduler) -> None:
        plan = scheduler.plan
        budget = scheduler.limits.max_num_batched_tokens
        prefills = False
        for key, request in scheduler.candidates():
            # The step's first request may exceed the budget: only a preempted request's prompt
            # plus recomputed output can (prompts alone are checked on arrival).
            limit = budget if plan.tokens else math.inf
            n = scheduler.admit(key, request, limit, whole=True)
            if not n:
                break
            budget -= n
            prefills = prefills or n > 1 or not request.num_generated_tokens
            if plan.preempted:
                break  # victims rank lower; they must not come straight back in this step
        if not prefills:  # requests that arrive with their KV (disaggregation) just decode
            scheduler.decode()


class ChunkedParams(BatchingParams):
    max_prefills: int | None = Field(None, ge=1)
    """Most requests given a prompt chunk in one step (None: as many as the budget holds)."""


@BATCHINGS.register("chunked")
class ChunkedBatching:
    """Sarathi-Serve's stall-free batching: every step gives the decodes their token first, then
    fills what is left of `engine.chunk_size` tokens with prompt chunks, in rank order: running
    requests mid-prompt first, then new admissions. A long prompt spans several steps."""

    Params = ChunkedParams

    def __init__(self, params: ChunkedParams | None = None):
        self.params = params if params is not None else self.Params()  # type: ignore[call-arg]

    def rejection_reason(self, request: Request, limits) -> str | None:
        return None

    def fill(self, scheduler) -> None:
        plan = scheduler.plan
        while True:
            budget = scheduler.limits.chunk_size - scheduler.decode()
            if not scheduler.waiting and len(scheduler.running) == scheduler.cohort.size:
                return  # the cohort alone (or nobody): no prompt to continue or start
            slots = self.params.max_prefills or scheduler.limits.max_num_seqs
            budget, slots = self.continue_prompts(scheduler, budget, slots)
            if not plan.preempted:  # a victim must not come straight back in the step
                self.start_prompts(scheduler, budget, slots)
            if not plan.is_empty(scheduler.cohort.size) or not scheduler.running:
                return
            # No decodes, and the cache is full of partial prompts that cannot grow: free the
            # worst-ranked so the others can finish (nothing is reserved while nobody decodes).
            scheduler.preempt(scheduler.worst_running())

    @staticmethod
    def continue_prompts(scheduler, budget: int, slots: int) -> tuple[int, int]:
        """Chunks for running requests mid-prompt (or recomputing), in rank order."""
        plan = scheduler.plan
        for key, request in scheduler.ranked_outside_cohort():
            if request in plan.tokens or request not in scheduler.running:
                continue
            if is_paused_decode(request):
                continue  # `decode` resumes it, or it waits
            if budget <= 0 or slots <= 0:
                break
            n = scheduler.grow(key, request, budget)
            if not n:
                return 0, 0  # rank order is strict: nobody ranked lower may overtake
            budget -= n
            slots -= 1
        return budget, slots

    @staticmethod
    def start_prompts(scheduler, budget: int, slots: int) -> None:
        for key, request in scheduler.candidates():
            if budget <= 0 or slots <= 0:
                return
            n = scheduler.admit(key, request, budget)
            if not n:
                return
            budget -= n
            slots -= 1
            if scheduler.plan.preempted:
                return
