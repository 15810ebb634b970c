"""The step plan: what one engine iteration computes. Built by a scheduler, run by an instance."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from servesim.core.request import Request


@dataclass(slots=True, init=False)  # (`__init__` written out: the compiled core compiles it)
class StepPlan:
    """One iteration's work.

    `tokens` maps requests outside the decode cohort to the tokens they compute this step (prefill
    chunks, recomputation, single decodes). `decode_cohort` adds one token for every cohort member.
    `repeatable` promises that, absent an event (an arrival, a finish, KV running short), the policy
    would return this same pure-cohort plan again, so the instance may run several such steps at once.
    Swap preemption moves KV over PCIe within the step: the instance adds that time to the step.
    """

    tokens: dict[Request, int] = field(default_factory=dict)
    decode_cohort: bool = False
    preempted: list[Request] = field(default_factory=list)
    repeatable: bool = False
    max_repeats: int = 1 << 30
    """Upper bound on identical steps the policy allows (e.g. until a deadline order flips)."""
    replan_time: float = math.inf
    """A repeated run ends with the first step that ends at or after this time (a priority that
    changes with time, e.g. SRTF aging)."""
    num_swap_out_tokens: int = 0
    """KV tokens of preempted requests copied to host memory before this step."""
    num_swap_in_tokens: int = 0
    """KV tokens of swapped requests copied back to the GPU before this step."""

    def __init__(
        self, tokens: dict[Request, int] | None = None, decode_cohort: bool = False,
        preempted: list[Request] | None = None, repeatable: bool = False, max_repeats: int = 1 << 30,
        replan_time: float = math.inf, num_swap_out_tokens: int = 0, num_swap_in_tokens: int = 0,
    ):
        # A dataclass's generated `__init__` is Python code that mypyc does not compile: a plan
        # is made every step.
        self.tokens = {} if tokens is None else tokens
        self.decode_cohort = decode_cohort
        self.preempted = [] if preempted is None else preempted
        self.repeatable = repeatable
        self.max_repeats = max_repeats
        self.replan_time = replan_time
        self.num_swap_out_tokens = num_swap_out_tokens
        self.num_swap_in_tokens = num_swap_in_tokens

    def is_empty(self, cohort_size: int) -> bool:
        swaps = self.num_swap_in_tokens or self.num_swap_out_tokens
        return not self.tokens and not (self.decode_cohort and cohort_size) and not swaps

    def as_dict(self, cohort) -> dict[int, int]:
        """`{request_id: num_tokens}`, the plan in the contract's terms (for tests and tracing)."""
        out = {r.request_id: n for r, n in self.tokens.items()}
        if self.decode_cohort:
            out.update({r.request_id: 1 for r in cohort})
        return out
