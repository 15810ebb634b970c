"""When a chunked-prefill step repeats: the same cohort plus the next chunk of the same prompt.

With chunked batching, most steps between events give every cohort member its token and spend the
rest of the token budget on one prompt. Absent an event (an arrival, a finish, the prompt's last
chunk, KV running short) the scheduler would plan exactly that again, with the chunk one chunk
further along, so the instance may run such steps as one event (`engine.mixed_run`).

`repeats_chunk` says whether a plan is such a step. It holds only when single stepping provably
makes the same decisions, which it checks from the plan and the scheduler's state:

- the built-in chunked batching and a non-preemptive policy (nobody pauses, nothing is evicted
  to admit, the running set is within `max_num_seqs`);
- one request outside the cohort computes a prompt chunk that takes the whole budget left by the
  cohort (so no admission happens, now or in the next steps) and leaves more than one chunk to go
  (so the next step gives it the same number of tokens);
- it heads the next steps' ranking too: the policy's keys never change (it was ranked first now),
  or it is the only request outside the cohort that a step could give tokens to;
- no preemption and no swap in the step;
- the policy has no admission control (`on_arrival`), which would read the running requests'
  progress at an arrival, and a run settles progress only at its end.

The instance adds the limits that depend on time and memory (the cohort's next finish, the KV
blocks the steps need, `engine.max_run_steps`), and asks `leaves_budget_unused` whether the
prompt's last chunk, which leaves budget over, can end the run too.
"""

from __future__ import annotations

from servesim.core.step import StepPlan
from servesim.schedulers.batching import ChunkedBatching
from servesim.schedulers.core import Scheduler, is_paused_decode
from servesim.schedulers.policy import BasePolicy


def repeats_chunk(scheduler: Scheduler, plan: StepPlan) -> bool:
    """Would the next steps repeat `plan` (cohort plus one prompt chunk), absent an event?"""
    if len(plan.tokens) != 1 or plan.preempted or plan.num_swap_in_tokens or plan.num_swap_out_tokens:
        return False
    policy = scheduler.policy
    if type(scheduler.batching) is not ChunkedBatching or getattr(policy, "preemptive", False):
        return False
    if getattr(type(policy), "on_arrival", BasePolicy.on_arrival) is not BasePolicy.on_arrival:
        return False
    limits, cohort = scheduler.limits, scheduler.cohort
    if len(scheduler.running) > limits.max_num_seqs:
        return False
    ((request, chunk),) = plan.tokens.items()
    if chunk != limits.chunk_size - cohort.size or request.num_pending_tokens <= chunk:
        return False
    if request.in_cohort or is_paused_decode(request):
        return False
    never = getattr(policy, "rank_changes", "with_time") == "never"
    return never or _only_one_outside(scheduler, request)


def _only_one_outside(scheduler: Scheduler, request) -> bool:
    """Is `request` the only running request outside the cohort that a step could give tokens?"""
    running = scheduler.running
    for other in scheduler.kv.holders_outside_cohort():
        if other is not request and other in running and not is_paused_decode(other):
            return False
    return True


def leaves_budget_unused(scheduler: Scheduler, request) -> bool:
    """Would a step giving `request` less than the budget (its prompt's last chunk) leave the
    rest unused? Yes when nobody waits and no other running request could take tokens."""
    return not scheduler.waiting and _only_one_outside(scheduler, request)
