"""A scheduler plugin in one file: shortest prompt first.

Use it from the repository root (the folder on which `module:Class` paths are resolved):

    servesim run configs/quickstart.yaml --set engine.scheduler=examples.custom_scheduler:ShortestPromptFirst
    servesim run configs/quickstart.yaml \\
        --set engine.scheduler=examples.custom_scheduler:ShortestPromptFirst \\
        --set engine.scheduler_params='{max_prompts_per_step: 4}'

The policy: like vLLM without chunked prefill, a step either prefills whole prompts or decodes every
running request, but the waiting requests start shortest prompt first instead of in arrival order.
See docs/schedulers.md for the protocol this class satisfies.
"""

from __future__ import annotations

from pydantic import Field

from servesim.core.step import StepPlan
from servesim.schedulers import BaseScheduler, SchedulerParams


class ShortestPromptFirstParams(SchedulerParams):
    max_prompts_per_step: int = Field(64, ge=1)
    """Most prompts prefilled in one step."""


class ShortestPromptFirst(BaseScheduler):
    """Prefill the shortest waiting prompts that fit; otherwise one decode step for everyone."""

    Params = ShortestPromptFirstParams

    def schedule(self, now: float) -> StepPlan:
        plan = StepPlan()
        self.start_shortest_prompts(plan)
        if plan.tokens:
            return plan
        # One token for every request in the decode cohort; when its next KV blocks do not fit,
        # BaseScheduler preempts `pick_victim()` (the latest admitted) until they do.
        self.reserve_decodes(plan)
        # A pure decode step repeats until a request arrives or finishes: decoding only consumes
        # KV and frees no slot, so no waiting request could start in between.
        plan.repeatable = plan.decode_cohort and not plan.preempted
        return plan

    def start_shortest_prompts(self, plan: StepPlan) -> None:
        budget = self.limits.max_num_batched_tokens
        by_length = sorted(self.waiting, key=lambda r: (r.num_pending_tokens, r.request_id))
        for request in by_length[: self.params.max_prompts_per_step]:
            if len(self.running) >= self.limits.max_num_seqs:
                break
            need = request.num_pending_tokens
            if need > budget and plan.tokens:  # the first prompt of a step may exceed the budget
                break
            if not self.kv.allocate(request, need, keep_watermark=bool(self.running)):
                break  # the shortest does not fit, so nothing longer does
            self.waiting.remove(request)
            self.admit(request, plan=plan)  # running set, status, swap-in accounting
            plan.tokens[request] = need
            budget -= need
