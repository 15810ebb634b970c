"""The step plan: what one engine iteration computes. Built by a scheduler, run by an instance."""

from __future__ import annotations

from dataclasses import dataclass, field

from servesim.core.request import Request


@dataclass(slots=True)
class StepPlan:
    """One iteration's work.

    `tokens` maps requests outside the decode cohort to the tokens they compute this step (prefill
    chunks, recomputation, single decodes). `decode_cohort` adds one token for every cohort member.
    `repeatable` promises that, absent an event (an arrival, a finish, KV running short), the policy
    would return this same pure-cohort plan again, so the instance may run several such steps at once.
    """

    tokens: dict[Request, int] = field(default_factory=dict)
    decode_cohort: bool = False
    preempted: list[Request] = field(default_factory=list)
    repeatable: bool = False
    max_repeats: int = 1 << 30
    """Upper bound on identical steps the policy allows (e.g. until an aging priority flips)."""

    def is_empty(self, cohort_size: int) -> bool:
        return not self.tokens and not (self.decode_cohort and cohort_size)

    def num_batched_tokens(self, cohort_size: int) -> int:
        return sum(self.tokens.values()) + (cohort_size if self.decode_cohort else 0)

    def as_dict(self, cohort) -> dict[int, int]:
        """`{request_id: num_tokens}`, the plan in the contract's terms (for tests and tracing)."""
        out = {r.request_id: n for r, n in self.tokens.items()}
        if self.decode_cohort:
            out.update({r.request_id: 1 for r in cohort})
        return out
