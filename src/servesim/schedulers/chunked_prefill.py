"""`chunked_prefill`: Sarathi-Serve's stall-free batching.

Every step first gives each running decode its next token, then fills what is left of the token
budget (`engine.chunk_size`) with prompt chunks, in arrival order: partial prefills already running
first, then new requests. A long prompt spans several steps, so no step is a long prefill-only
step that stalls the decodes; the price is a first token that arrives a few steps later.
"""

from __future__ import annotations

from pydantic import Field

from servesim.core.request import Request
from servesim.core.step import StepPlan
from servesim.schedulers.base import SCHEDULERS, BaseScheduler, SchedulerParams


class ChunkedPrefillParams(SchedulerParams):
    max_prefills: int | None = Field(None, ge=1)
    """Most requests given a prompt chunk in one step (None: as many as the budget holds)."""


@SCHEDULERS.register("chunked_prefill")
class ChunkedPrefillScheduler(BaseScheduler):
    Params = ChunkedPrefillParams

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.prefilling: dict[Request, None] = {}
        """Running requests whose prompt is partly computed, in admission order."""

    def schedule(self, now: float) -> StepPlan:
        plan = StepPlan()
        while True:
            self.reserve_decodes(plan)
            budget = self.limits.chunk_size - (self.cohort.size if plan.decode_cohort else 0)
            slots = self.params.max_prefills or self.limits.max_num_seqs
            budget, slots = self.continue_prefills(plan, budget, slots)
            self.admit_chunks(plan, budget, slots)
            if not plan.is_empty(self.cohort.size) or not self.running:
                break
            # No decodes, and the cache is full of partial prompts that cannot grow: free the
            # newest so the older ones can finish (nothing is reserved while the cohort is empty).
            self.preempt(self.pick_victim(), plan)
        # Pure decode steps repeat until an arrival or a finish: they never free a slot or KV,
        # and the budget they leave does not change.
        plan.repeatable = plan.decode_cohort and not plan.tokens and not plan.preempted
        return plan

    def continue_prefills(self, plan: StepPlan, budget: int, slots: int) -> tuple[int, int]:
        for request in list(self.prefilling):
            if request.in_cohort or request not in self.running:  # prompt done, or finished
                del self.prefilling[request]
                continue
            if budget <= 0 or slots <= 0:
                break
            chunk = min(request.num_pending_tokens, budget)
            if not self.kv.allocate(request, chunk):
                return 0, 0  # arrival order is strict: nobody younger may overtake
            plan.tokens[request] = chunk
            budget -= chunk
            slots -= 1
        return budget, slots

    def admit_chunks(self, plan: StepPlan, budget: int, slots: int) -> None:
        if plan.preempted:
            return  # a victim must not come straight back in the step that evicted it
        waiting = self.waiting
        while waiting and budget > 0 and slots > 0 and len(self.running) < self.limits.max_num_seqs:
            request = waiting[0]
            cached = self.kv.match_prefix(request)  # prefix caching: start past the cached head
            chunk = min(request.num_pending_tokens - cached, budget)
            if not self.kv.allocate(
                request, chunk, keep_watermark=bool(self.running), num_cached_tokens=cached
            ):
                break
            waiting.popleft()
            self.admit(request, plan=plan, num_cached_tokens=cached)
            plan.tokens[request] = chunk
            if chunk < request.num_pending_tokens:
                self.prefilling[request] = None
            budget -= chunk
            slots -= 1
