"""Runs of mixed steps: the decode cohort plus one prompt's next chunk, as one event.

When the scheduler's plan repeats (`schedulers.chunk_runs.repeats_chunk`: the cohort decodes and
one prompt takes the rest of the token budget), the next steps follow from the state until an
event. The instance prices k such steps (the chunk's prior context and the cohort's contexts
grow by a step each), sleeps until the last ends, and settles them at once. k stops before the
prompt's last chunk, at the cohort's next finish (that step included), at the KV blocks free for
the cohort's growth and the chunk's, and at `engine.max_run_steps`.

Every step is priced, logged and metered as a single step would be: the same `StepShape`, the
same float operations in the same order (step ends are summed one by one, and the sleep lands on
the last end exactly), one step-log row per step with the KV usage and load it would show, the
token gaps recorded step by step. An arrival (any wake) interrupts the run: the step in flight
completes and the scheduler plans again, as it would between single steps.

Not used where the KV cache names or moves blocks between steps (prefix caching, and the tiers
and retention pins that need it), where something reads the instance mid-run (`Instance.mixed_runs` off: a power budget,
an elastic fleet), or with a migration hook between steps.
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


def mixed_run(instance, plan: StepPlan):
    """Run `plan` and the steps that repeat it as one event (module doc); a SimPy generator."""
    ((request, chunk),) = plan.tokens.items()
    k, taken = _run_length(instance, plan, request, chunk) if _settles_per_run(instance) else (1, None)
    if k < 2:
        yield from instance._step(plan)
        return
    steps = _Steps.of(instance, plan, request, chunk, k)
    start = instance.env.now
    starts, ends, joules = _price(instance, steps, start)
    load = instance.scheduler.load() if instance.step_log.enabled else None
    used = instance.kv.num_used_blocks
    instance.meter.begin(start, ends[-1] - start, math.fsum(joules))
    done = yield from _sleep(instance, ends)
    _apply(instance, plan, request, chunk * done, start, ends[:done])
    _record(instance, steps, starts[:done], ends[:done], joules, load, used, taken)


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

    def shapes(self) -> list[StepShape]:
        n, c = self.decodes, self.chunk
        rows = zip(self.priors, self.ctx, self.longest)
        return [StepShape([(c, p)], n, ctx, n, longest) for p, ctx, longest in rows]


def _settles_per_run(instance) -> bool:
    """Nothing acts on the instance between a run's steps: no prefix cache (which retention
    pins, tiers and time-based evictions need), no tier log, no migration hook."""
    kv = instance.kv
    return kv.prefix is None and kv.tier_log is None and instance.between_steps is None


def _run_length(instance, plan: StepPlan, request, chunk: int) -> tuple[int, np.ndarray | None]:
    """Steps the run may take, and the KV blocks taken by the end of each (beyond step 0's)."""
    kv, cohort = instance.kv, instance.cohort
    limit = min(instance.max_run_steps, (request.num_pending_tokens - 1) // chunk)
    if plan.decode_cohort:
        limit = min(limit, cohort.steps_to_next_finish())
    if limit < 2:
        return limit, None
    taken = np.zeros(limit, dtype=np.int64)
    if plan.decode_cohort:  # each step reserves the cohort's next step (step 0 already has)
        needs = cohort.block_needs(0, limit)
        needs[: kv.cohort_reserved_steps] = 0
        taken += np.cumsum(needs)
    # the chunk holds blocks for what it has computed (with `kv_allocation: prompt`, all held)
    tokens = request.num_computed_tokens + chunk * np.arange(1, limit + 1)
    taken += np.maximum(0, -(-tokens // kv.block_size) - kv.blocks_of(request))
    return int(np.searchsorted(taken, kv.num_free_blocks, side="right")), taken


def _price(instance, steps: _Steps, start: float):
    """Start, end and joules of each step; ends summed one step at a time, as SimPy would."""
    seconds, joules = _vector_price(instance, steps)
    if seconds is None:
        priced = [instance.price(shape) for shape in steps.shapes()]
        seconds, joules = [s for s, _ in priced], [j for _, j in priced]
    ends = list(itertools.accumulate(seconds, initial=start))
    return ends[:-1], ends[1:], joules


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


def _sleep(instance, ends: list[float]):
    """Sleep until the last end, or until the end of the step in flight at a wake; return the
    steps run."""
    env = instance.env
    done = len(ends)
    instance._interruptible = True
    try:
        yield env.timeout(_delay(env.now, ends[-1]))
    except simpy.Interrupt as exc:
        if exc.cause is not None:  # the instance failed: not a wake
            raise
        done = min(bisect.bisect_left(ends, env.now) + 1, done)
        if env.now < ends[done - 1]:
            yield env.timeout(_delay(env.now, ends[done - 1]))
    instance._interruptible = False
    return done


def _delay(now: float, target: float) -> float:
    """A delay that lands exactly on `target` (`now + (target - now)` may round past it)."""
    delay = target - now
    while now + delay < target:
        delay = math.nextafter(delay, math.inf)
    while now + delay > target:
        delay = math.nextafter(delay, -math.inf)
    return delay


def _apply(instance, plan: StepPlan, request, tokens: int, start: float, ends: list[float]) -> None:
    """The run's steps happened: the KV the steps took, the cohort's tokens, the chunks."""
    kv, done = instance.kv, len(ends)
    # never inside an assert, which `python -O` would skip
    if plan.decode_cohort and not kv.reserve_cohort(done):
        raise RuntimeError("a mixed run outgrew the KV blocks it was planned with")
    if not kv.allocate(request, tokens):
        raise RuntimeError("a mixed run's prompt outgrew the KV blocks it was planned with")
    finished = kv.advance_cohort(np.array(ends), gaps_per_step=True) if plan.decode_cohort else []
    if math.isnan(request.first_scheduled_time):  # the run's first step was its first
        request.first_scheduled_time = start
    request.advance(tokens, ends[-1])  # no token: the run stops before the prompt's last chunk
    instance._finish(finished, ends[-1])


def _record(instance, steps: _Steps, starts, ends, joules, load, used: int, taken) -> None:
    """One step-log row per step, each with the load and KV usage it had at its end (the load
    only changes at the run's last step, which `_record_step` records after the finishes)."""
    log, kv, meter = instance.step_log, instance.kv, instance.meter
    prefill, decodes = steps.chunk, steps.decodes
    running, waiting = (load.num_running, load.num_waiting) if load is not None else (0, 0)
    last = len(ends) - 1
    for j in range(last):
        meter.end(ends[j], joules[j])
        instance.busy_s += ends[j] - starts[j]
        usage = (used + int(taken[j])) / kv.num_blocks
        log.record(instance.index, starts[j], ends[j], 1, prefill, decodes, running, waiting,
                   usage, joules[j])
    instance._record_step(starts[last], ends[last], 1, prefill, decodes, joules[last])
