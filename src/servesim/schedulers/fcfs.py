"""`fcfs`: vLLM without chunked prefill.

Admit waiting requests in arrival order. A step is either prefill-only (the whole prompts of the
waiting requests that fit, in order, stopping at the first that does not) or, when none fits,
one decode token for every running request. A request that arrives with its KV (the decode side
of a disaggregated cluster) is a decode, not a prefill: it joins the decode step.
With prefix caching, a prompt's cached head is reused and only the rest is computed.
"""

from __future__ import annotations

from servesim.core.request import Request
from servesim.core.step import StepPlan
from servesim.schedulers.base import SCHEDULERS, BaseScheduler


@SCHEDULERS.register("fcfs")
class FCFSScheduler(BaseScheduler):
    def rejection_reason(self, request: Request) -> str | None:
        if request.num_prompt_tokens > self.limits.max_num_batched_tokens:
            return "prompt_exceeds_max_num_batched_tokens"
        return super().rejection_reason(request)

    def schedule(self, now: float) -> StepPlan:
        plan = StepPlan()
        if self.admit_whole_prompts(plan):
            return plan
        self.reserve_decodes(plan)
        # Nothing admitted now stays unadmittable until an arrival or a finish: decode steps only
        # shrink free KV and never free a sequence slot, so the same plan repeats until then.
        plan.repeatable = plan.decode_cohort and not plan.preempted and not plan.tokens
        return plan

    def admit_whole_prompts(self, plan: StepPlan) -> bool:
        """Admit what fits, in order; True if any admitted request has a prompt to compute."""
        budget = self.limits.max_num_batched_tokens
        waiting, kv = self.waiting, self.kv
        prefills = False
        while waiting and len(self.running) < self.limits.max_num_seqs:
            request = waiting[0]
            cached = kv.match_prefix(request)
            need = request.num_pending_tokens - cached
            # The step's first request may exceed the budget: only a preempted request's prompt
            # plus recomputed output can (prompts alone were checked on arrival).
            if (need > budget and plan.tokens) or not kv.allocate(
                request, need, keep_watermark=bool(self.running), num_cached_tokens=cached
            ):
                break
            waiting.popleft()
            self.admit(request, plan=plan, num_cached_tokens=cached)
            plan.tokens[request] = need
            budget -= need
            prefills = prefills or need > 1 or not request.num_generated_tokens
        return prefills
