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
import functools
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
    timed = _TimedGaps(instance, ends) if instance.pooled_gaps and steps.decodes else None
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

    def final(self, tokens: int) -> _Steps:
        """The final step alone, computing `tokens` (the prompt's last chunk)."""
        return _Steps(tokens, self.priors[-1:], self.decodes, self.ctx[-1:], self.longest[-1:])

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
    prompt's last chunk if the run ends with it (0 if not). Plain Python: runs are a few steps,
    where numpy's per-call cost would dominate."""
    kv, cohort = instance.kv, instance.cohort
    repeats = _chunk_steps(request, chunk)
    last = _last_chunk(instance, request, chunk, repeats)
    limit = min(repeats + (last > 0), instance.max_run_steps)
    if plan.decode_cohort:
        limit = min(limit, cohort.steps_to_next_finish())
    if limit < 2:
        return limit, None, 0
    free, size = kv.num_free_blocks, kv.block_size
    # the chunk holds blocks for what it has computed (with `kv_allocation: prompt`, all held)
    computed, end, held = request.num_computed_tokens, request.num_known_tokens, kv.blocks_of(request)
    taken, grown = [], 0
    for need in _cohort_needs(kv, cohort, limit) if plan.decode_cohort else [0] * limit:
        grown += need
        computed = min(computed + chunk, end)
        blocks = grown + max(0, -(-computed // size) - held)
        if blocks > free:
            break
        taken.append(blocks)
    k = len(taken)
    return k, taken, last if last and k == repeats + 1 else 0


def _cohort_needs(kv, cohort, steps: int) -> list[int]:
    """New blocks the cohort takes at each of its next `steps` steps: each reserves the next
    step's, except those already reserved."""
    needs = cohort.block_needs(0, steps).tolist()
    reserved = kv.cohort_reserved_steps
    if reserved:
        needs[:reserved] = [0] * min(reserved, steps)
    return needs


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
    `last`, the final step is the prompt's last chunk (whose logit counts too)."""
    repeats = steps.head(len(steps.priors) - 1) if last else steps
    seconds, joules = _vector_price(instance, repeats)
    if seconds is None:
        priced = [instance.price(shape) for shape in repeats.shapes()]
        seconds, joules = [s for s, _ in priced], [j for _, j in priced]
    if last:
        final, final_j = _vector_price(instance, steps.final(last), steps.decodes + 1)
        if final is None:
            final, final_j = map(list, zip(instance.price(steps.last_chunk(last))))
        seconds, joules = seconds + final, joules + final_j
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


def _vector_price(instance, steps: _Steps, logits: int | None = None):
    """`Instance.price` of every step at once, where the models write the steps' form out
    (`chunk_step_times`, `chunk_step_energies`; `logits` as there); (None, None) otherwise."""
    vector = getattr(instance.cost_model, "chunk_step_times", None)
    args = (steps.chunk, steps.priors, steps.decodes, steps.ctx)
    times = vector(*args, steps.longest, logits=logits) if vector is not None else None
    if times is None or instance.kv.tiers is not None:  # tiers: each step's own transfers
        return None, None
    slowdown = instance.slowdown
    seconds = [t * slowdown for t in times]
    if instance.power is None:
        return seconds, [0.0] * len(seconds)
    joules = instance.power.chunk_step_energies(*args, seconds, logits=logits)
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


class _TimedGaps:
    """The cohort's token gaps of each step, recorded at the step's end: with gaps pooled over
    instances, records come in the order single steps make them (the mean is summed in it).
    `steps` is cut to the steps run when a wake ends the run early."""

    def __init__(self, instance, ends: list[float]):
        self.cohort, self.steps, self.prev = instance.cohort, len(ends), instance.cohort.last_end()
        env = instance.env
        for j, end in enumerate(ends):
            timeout = env.timeout(_delay(env.now, end))  # at `end`, or within a float of it
            timeout.callbacks.append(functools.partial(self._record, j, end))

    def _record(self, j: int, end: float, _event) -> None:
        if j < self.steps:
            self.cohort.step_gaps(self.prev, end)
            self.prev = end


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
    log, kv, meter = instance.step_log, instance.kv, instance.meter
    prefill, decodes = steps.chunk, steps.decodes
    times = [t for t, _ in loads]
    last = len(ends) - 1
    for j in range(last):
        meter.end(ends[j], joules[j])
        instance.busy_s += ends[j] - starts[j]
        usage = (used + taken[j]) / kv.num_blocks
        load = loads[bisect.bisect_right(times, ends[j]) - 1][1] if log.enabled else None
        running, waiting = (load.num_running, load.num_waiting) if load is not None else (0, 0)
        log.record(instance.index, starts[j], ends[j], 1, prefill, decodes, running, waiting,
                   usage, joules[j])
    instance._record_step(starts[last], ends[last], 1, final, decodes, joules[last])
