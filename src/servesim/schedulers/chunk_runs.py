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

`chunk_follows` says the same of the steps after a handover: a plan that gives one fresh
prompt its last chunk and the next fresh prompt the rest of the budget, when the first prompt's
request joins the cohort after it (its first token is not its last) and the next prompt then
takes a full-budget chunk with more to go (the budget one token smaller for the cohort grown by
one), with nobody else outside the cohort that a step could give tokens to.

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
    if len(plan.tokens) != 1 or not _repeating(scheduler, plan):
        return False
    limits, cohort = scheduler.limits, scheduler.cohort
    ((request, chunk),) = plan.tokens.items()
    if chunk != limits.chunk_size - cohort.size or request.num_pending_tokens <= chunk:
        return False
    if request.in_cohort or is_paused_decode(request):
        return False
    never = getattr(scheduler.policy, "rank_changes", "with_time") == "never"
    return never or _only_one_outside(scheduler, request)


def chunk_follows(scheduler: Scheduler, plan: StepPlan) -> bool:
    """Would the steps after `plan` repeat one prompt's chunk, absent an event? `plan` gives one
    fresh prompt its last chunk (its first token, not its last, then joins the cohort) and the
    next fresh prompt the rest of the budget; the cohort one larger leaves the next prompt a
    full-budget chunk with more to go, and nobody else outside the cohort could take it."""
    if len(plan.tokens) != 2 or not _repeating(scheduler, plan):
        return False
    (done, last), (request, chunk) = plan.tokens.items()
    if done.num_generated_tokens or last != done.num_pending_tokens or done.num_output_tokens < 2:
        return False
    if request.num_generated_tokens or request.in_cohort:
        return False
    budget = scheduler.limits.chunk_size - scheduler.cohort.size
    after = budget - 1  # the next steps' chunk, beside the grown cohort
    if last + chunk != budget or after < 1 or request.num_pending_tokens - chunk <= after:
        return False
    never = getattr(scheduler.policy, "rank_changes", "with_time") == "never"
    return never or _only_one_outside(scheduler, request, done)


def _repeating(scheduler: Scheduler, plan: StepPlan) -> bool:
    """Can a plan repeat at all: the built-in chunked batching and a non-preemptive policy
    without admission control, the running set within the batch, no preemption or swap."""
    if plan.preempted or plan.num_swap_in_tokens or plan.num_swap_out_tokens:
        return False
    policy = scheduler.policy
    if type(scheduler.batching) is not ChunkedBatching or getattr(policy, "preemptive", False):
        return False
    if getattr(type(policy), "on_arrival", BasePolicy.on_arrival) is not BasePolicy.on_arrival:
        return False
    return len(scheduler.running) <= scheduler.limits.max_num_seqs


def _only_one_outside(scheduler: Scheduler, request, joining=None) -> bool:
    """Is `request` the only running request outside the cohort that a step could give tokens
    (besides `joining`, which joins the cohort after this step)?"""
    running = scheduler.running
    for other in scheduler.kv.holders_outside_cohort():
        if other is not request and other is not joining and other in running \
                and not is_paused_decode(other):
            return False
    return True


def leaves_budget_unused(scheduler: Scheduler, request, joining=None) -> bool:
    """Would a step giving `request` less than the budget (its prompt's last chunk) leave the
    rest unused? Yes when nobody waits and no other running request could take tokens
    (`joining`: one that joins the cohort before that step)."""
    return not scheduler.waiting and _only_one_outside(scheduler, request, joining)
