"""Runs of mixed steps: the decode cohort plus one prompt's next chunk, as one event.

When the scheduler's plan repeats (`schedulers.chunk_runs.repeats_chunk`: the cohort decodes and
one prompt takes the rest of the token budget), the next steps follow from the state until an
event. The instance prices k such steps (the chunk's prior context and the cohort's contexts
grow by a step each), sleeps until the last ends, and settles them at once. k stops at the
prompt's last chunk, at the cohort's next finish (that step included), at the KV blocks free
for the cohort's growth and the chunk's, and at `engine.max_run_steps`. The last chunk itself
ends the run when it is predictable too: a fresh prompt (its first token, then the cohort or
its end) whose last chunk takes the whole budget or leaves the rest to nobody (no request
waiting, none other mid-prompt); otherwise, and for a recomputing request, the run stops before
it (before the chunk that leaves a recomputing request one token short, after which it decodes).

Every step is priced, logged and metered as a single step would be: the same `StepShape`, the
same float operations in the same order (step ends are summed one by one, and the sleep lands on
the last end exactly), one step-log row per step with the KV usage and load it would show, the
token gaps recorded step by step. An arrival cannot change the run's steps before the last chunk
(the prompt takes the whole budget, so nobody is admitted): the run takes it without replanning,
and the rows of the steps ending after it show it waiting; an arrival before a last chunk that
leaves budget over ends the run before that chunk (the arrival may take the budget). Any other
wake (KV freed by a transfer) interrupts the run: the step in flight completes and the scheduler
plans again, as it would between single steps.

Not used where the KV cache names or moves blocks between steps (prefix caching, and the tiers
and retention pins that need it), where something reads the instance mid-run
(`Instance.mixed_runs` off: a power budget, an elastic fleet), or with a migration hook between
steps. Same-time ties (an arrival at exactly a step's computed end) are ordered as SimPy orders
the events scheduled first; single steps could order such a tie otherwise.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass

import numpy as np
import simpy

from servesim.core.step import StepPlan
from servesim.cost.base import StepShape
from servesim.schedulers.chunk_runs import leaves_budget_unused


def mixed_run(instance, plan: StepPlan):
    """Run `plan` and the steps that repeat it as one event (module doc); a SimPy generator."""
    ((request, chunk),) = plan.tokens.items()
    pending = request.num_pending_tokens
    k, taken, last = _run_length(instance, plan, request, chunk) if _settles_per_run(instance) \
        else (1, None, 0)
    if k < 2:
        yield from instance._step(plan)
        return
    steps = _Steps.of(instance, plan, request, chunk, k)
    start = instance.env.now
    starts, ends, joules = _price(instance, steps, start, last)
    used = instance.kv.num_used_blocks
    instance.meter.begin(start, ends[-1] - start, math.fsum(joules))
    loads = [(start, instance.scheduler.load())]
    instance.arrivals_in_run = loads
    timed = instance.cohort.gaps_ahead(instance.env, ends) if instance.pooled_gaps and steps.decodes else None
    done = 0  # an instance failure loses the run
    try:
        # an arrival before the prompt's last chunk would take the budget that chunk leaves
        done = yield from _sleep(instance, ends, 0 < last < chunk)
    finally:
        instance.arrivals_in_run = None
        if timed is not None:
            timed.steps = done
    tokens = min(chunk * done, pending)  # the last chunk, if run, completes the prompt
    _apply(instance, plan, request, tokens, start, ends[:done], timed is not None)
    final = last if tokens == pending else chunk
    _record(instance, steps, starts[:done], ends[:done], joules, loads, used, taken, final)


@dataclass(slots=True)
class _Steps:
    """The run's steps: each computes `chunk` prompt tokens after `priors[j]` cached ones and
    decodes `decodes` cohort members whose context sums are `ctx[j]` (longest `longest[j]`)."""

    chunk: int
    priors: list[int]
    decodes: int
    ctx: list[int]
    longest: list[int]

    @classmethod
    def of(cls, instance, plan: StepPlan, request, chunk: int, k: int) -> _Steps:
        """As `Instance._shape` gives each step when it is planned."""
        prior = request.num_computed_tokens
        priors = list(range(prior, prior + chunk * k, chunk))
        cohort = instance.cohort
        n = cohort.size if plan.decode_cohort else 0
        if not n:
            return cls(chunk, priors, 0, [0] * k, [0] * k)
        first = cohort.max_context(0)
        if cohort.window:  # attention reads at most the window
            ctx = cohort.attended_context_sums(k).astype(np.int64).tolist()
            longest = [min(first + j, cohort.window) for j in range(k)]
        else:
            ctx0 = cohort.context_sum(0)
            ctx, longest = list(range(ctx0, ctx0 + n * k, n)), list(range(first, first + k))
        return cls(chunk, priors, n, ctx, longest)

    def head(self, k: int) -> _Steps:
        return _Steps(self.chunk, self.priors[:k], self.decodes, self.ctx[:k], self.longest[:k])

    def last_chunk(self, tokens: int) -> StepShape:
        """The final step's shape when it is the prompt's last chunk (whose logit counts too)."""
        n = self.decodes
        return StepShape([(tokens, self.priors[-1])], n, self.ctx[-1], n + 1, self.longest[-1])

    def shapes(self) -> list[StepShape]:
        n, c = self.decodes, self.chunk
        rows = zip(self.priors, self.ctx, self.longest)
        return [StepShape([(c, p)], n, ctx, n, longest) for p, ctx, longest in rows]


def _settles_per_run(instance) -> bool:
    """Nothing acts on the instance between a run's steps: no prefix cache (which retention
    pins, tiers and time-based evictions need), no tier log, no migration hook."""
    kv = instance.kv
    return kv.prefix is None and kv.tier_log is None and instance.between_steps is None


def _run_length(instance, plan: StepPlan, request, chunk: int):
    """Steps the run may take, the KV blocks taken by the end of each (beyond step 0's), and the
    prompt's last chunk if the run ends with it (0 if not)."""
    kv, cohort = instance.kv, instance.cohort
    pending = request.num_pending_tokens
    repeats = _chunk_steps(request, chunk)
    last = _last_chunk(instance, request, chunk, repeats)
    limit = min(repeats + (last > 0), instance.max_run_steps)
    if plan.decode_cohort:
        limit = min(limit, cohort.steps_to_next_finish())
    if limit < 2:
        return limit, None, 0
    taken = np.zeros(limit, dtype=np.int64)
    if plan.decode_cohort:  # each step reserves the cohort's next step (step 0 already has)
        needs = cohort.block_needs(0, limit)
        needs[: kv.cohort_reserved_steps] = 0
        taken += np.cumsum(needs)
    # the chunk holds blocks for what it has computed (with `kv_allocation: prompt`, all held)
    tokens = request.num_computed_tokens + np.minimum(chunk * np.arange(1, limit + 1), pending)
    taken += np.maximum(0, -(-tokens // kv.block_size) - kv.blocks_of(request))
    k = int(np.searchsorted(taken, kv.num_free_blocks, side="right"))
    return k, taken, last if last and k == repeats + 1 else 0


def _last_chunk(instance, request, chunk: int, repeats: int) -> int:
    """The prompt's last chunk, if the run may end with it: a fresh prompt (its first token then
    joins the cohort, or ends it) on an instance that keeps its requests, whose last chunk either
    takes the whole budget or leaves the rest to nobody."""
    if request.num_generated_tokens or instance.hand_off is not None:
        return 0
    last = request.num_pending_tokens - chunk * repeats
    return last if last == chunk or leaves_budget_unused(instance.scheduler, request) else 0


def _price(instance, steps: _Steps, start: float, last: int):
    """Start, end and joules of each step; ends summed one step at a time, as SimPy would. With
    `last`, the final step is the prompt's last chunk, priced as a single step."""
    repeats = steps.head(len(steps.priors) - 1) if last else steps
    seconds, joules = _vector_price(instance, repeats)
    if seconds is None:
        priced = [instance.price(shape) for shape in repeats.shapes()]
        seconds, joules = [s for s, _ in priced], [j for _, j in priced]
    if last:
        s, j = instance.price(steps.last_chunk(last))
        seconds, joules = [*seconds, s], [*joules, j]
    ends = list(itertools.accumulate(seconds, initial=start))
    return ends[:-1], ends[1:], joules


def _chunk_steps(request, chunk: int) -> int:
    """Steps the request's chunks repeat: none may emit a token (its prompt's last chunk), nor
    leave a recomputing request one token short (it then decodes, in the cohort)."""
    pending = request.num_pending_tokens
    steps = (pending - 1) // chunk
    if request.num_generated_tokens and (pending - 1) % chunk == 0:
        steps -= 1
    return steps


def _vector_price(instance, steps: _Steps):
    """`Instance.price` of every step at once, where the models write the steps' form out
    (`chunk_step_times`, `chunk_step_energies`); (None, None) otherwise."""
    vector = getattr(instance.cost_model, "chunk_step_times", None)
    args = (steps.chunk, steps.priors, steps.decodes, steps.ctx)
    times = vector(*args, steps.longest) if vector is not None else None
    if times is None or instance.kv.tiers is not None:  # tiers: each step's own transfers
        return None, None
    slowdown = instance.slowdown
    seconds = [t * slowdown for t in times]
    if instance.power is None:
        return seconds, [0.0] * len(seconds)
    joules = instance.power.chunk_step_energies(*args, seconds)
    return (seconds, joules) if joules is not None else (None, None)


def _sleep(instance, ends: list[float], before_last: bool):
    """Sleep until the last end, or until the end of the step in flight at a wake other than
    an arrival; return the steps run. `before_last`: an arrival before the last step starts
    ends the run before it."""
    env = instance.env
    done = len(ends)
    instance._interruptible = True
    try:
        if before_last:
            yield from _until(env, ends[-2])
            if len(instance.arrivals_in_run) > 1:
                done -= 1
        if done == len(ends):
            yield from _until(env, ends[-1])
    except simpy.Interrupt as exc:
        if exc.cause is not None:  # the instance failed: not a wake
            raise
        instance._interruptible = False
        done = min(bisect.bisect_left(ends, env.now) + 1, done)
        yield from _until(env, ends[done - 1])
    instance._interruptible = False
    return done


def _until(env, target: float):
    """Sleep until exactly `target`. `now + (target - now)` may round to a neighbour of it when
    the sleep is longer than `now` itself; a second hop, of the exact rest, then lands on it."""
    if env.now < target:
        yield env.timeout(_delay(env.now, target))
        if env.now < target:
            yield env.timeout(target - env.now)


def _delay(now: float, target: float) -> float:
    """The delay from `now` that lands on `target`, or on the float just below it where none
    does (`now + (target - now)` may round past it)."""
    delay = target - now
    while now + delay < target:
        delay = math.nextafter(delay, math.inf)
    while now + delay > target:
        delay = math.nextafter(delay, -math.inf)
    return delay


def _apply(instance, plan: StepPlan, request, tokens: int, start: float, ends: list[float],
           gaps_recorded: bool) -> None:
    """The run's steps happened: the KV the steps took, the cohort's tokens, the chunks (the
    last one may complete the prompt: its first token, then the cohort or the end)."""
    kv, done, end = instance.kv, len(ends), ends[-1]
    # never inside an assert, which `python -O` would skip
    if plan.decode_cohort and not kv.reserve_cohort(done):
        raise RuntimeError("a mixed run outgrew the KV blocks it was planned with")
    if not kv.allocate(request, tokens):
        raise RuntimeError("a mixed run's prompt outgrew the KV blocks it was planned with")
    gaps = "recorded" if gaps_recorded else "steps"
    finished = kv.advance_cohort(np.array(ends), gaps) if plan.decode_cohort else []
    if math.isnan(request.first_scheduled_time):  # the run's first step was its first
        request.first_scheduled_time = start
    if request.advance(tokens, end):  # a fresh prompt whose first token was its last
        finished.append(request)
    elif request.num_pending_tokens == 1 and request.num_generated_tokens:  # its first token
        kv.join_cohort(request)  # it decodes from now on
    instance._finish(finished, end)


def _record(instance, steps: _Steps, starts, ends, joules, loads, used: int, taken, final: int):
    """One step-log row per step, each with the load and KV usage it had at its end: `loads`
    holds (time, load) at the run's start and after each arrival it took (an arrival at a
    step's very end counts in that step's row, as it does when steps run one by one); the last
    row is `_record_step`'s, after the finishes (`final`: its chunk's tokens)."""
    last = len(ends) - 1
    if last:
        nb = instance.kv.num_blocks
        usages = [(used + t) / nb for t in taken[:last].tolist()]
        running, waiting = _loads_at(loads, ends[:last]) if instance.step_log.enabled else ((), ())
        instance._record_run_steps(starts[:last], ends[:last], steps.chunk, steps.decodes, running,
                                   waiting, usages, joules[:last])
    instance._record_step(starts[last], ends[last], 1, final, steps.decodes, joules[last])


def _loads_at(loads, ends: list[float]) -> tuple[list[int], list[int]]:
    """Running and waiting requests at each end, from (time, load) at the run's start and
    after each arrival it took."""
    if len(loads) == 1:  # no arrival during the run
        load = loads[0][1]
        return [load.num_running] * len(ends), [load.num_waiting] * len(ends)
    times = [t for t, _ in loads]
    at = [loads[bisect.bisect_right(times, end) - 1][1] for end in ends]
    return [load.num_running for load in at], [load.num_waiting for load in at]
