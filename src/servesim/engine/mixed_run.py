"""Runs of mixed steps: the decode cohort plus one prompt's next chunk, as one event.

When the scheduler's plan repeats (`schedulers.chunk_runs.repeats_chunk`: the cohort decodes and
one prompt takes the rest of the token budget), the next steps follow from the state until an
event. The instance prices k such steps (the chunk's prior context and the cohort's contexts
grow by a step each), sleeps until the last ends, and settles them at once. k stops at the
prompt's last chunk, at the cohort's next finish (that step included), at the KV blocks free
for the cohort's growth and the chunk's, at `engine.max_run_steps` and at the time limit (the
steps ending before it; the step in flight at it runs on its own). The last chunk itself
ends the run when it is predictable too: a fresh prompt (its first token, then the cohort or
its end) whose last chunk takes the whole budget or leaves the rest to nobody (no request
waiting, none other mid-prompt); otherwise, and for a recomputing request, the run stops before
it (before the chunk that leaves a recomputing request one token short, after which it decodes).

Every step is priced, logged and metered as a single step would be: the same `StepShape`, the
same float operations in the same order (step ends are summed one by one, and the sleep lands on
the last end exactly), one step-log row per step with the KV usage and load it would show, the
token gaps single steps would record (as one cohort run: the same records, and their sum is
exact, so their grouping does not matter). An arrival cannot change the run's steps before the last chunk
(the prompt takes the whole budget, so nobody is admitted): the run takes it without replanning,
and the rows of the steps ending after it show it waiting; an arrival before a last chunk that
leaves budget over ends the run before that chunk (the arrival may take the budget). Any other
wake (KV freed by a transfer; `clock.wake_early`) cuts the run short: the step in flight
completes and the scheduler plans again, as it would between single steps.

A handover run (`schedulers.chunk_runs.chunk_follows`) starts one step earlier: the planned
step gives one fresh prompt its last chunk and the next prompt the rest of the budget, and the
steps after it repeat the next prompt's chunk beside the cohort grown by the first prompt's
request (its first token, not its last, joins the cohort at the lead step's end). The lead step is
priced as a single step; the run prices the repeats with the joined request's context and block
needs written out (its context is its prompt, growing a token a step; it takes a block whenever
its context fills one, as the cohort counts it), and stops at its last token like any member's.
At the end the lead step is settled as a single step would settle it (`Instance._settle`: the
joiner enters the cohort there), then the repeats as a mixed run's. Not with a sliding window or
on a prefill instance (the joiner leaves).

Not used where the KV cache names or moves blocks between steps (prefix caching, and the tiers
and retention pins that need it), where something reads the instance mid-run
(`Instance.mixed_runs` off: a power budget, an elastic fleet), or with a migration hook between
steps. Same-time ties (an arrival at exactly a step's computed end) are ordered as SimPy orders
the events scheduled first; single steps could order such a tie otherwise.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Generator
from dataclasses import dataclass
from math import fsum  # (compiled, a global; `math.fsum` reads the module's attribute each call)
from typing import TYPE_CHECKING, Any

import numpy as np

from servesim.core.step import StepPlan
from servesim.cost.base import StepShape
from servesim.cost.roofline import RooflineCostModel
from servesim.engine.clock import WOKEN, WOKEN_LATER, now, skip_ahead
from servesim.engine.decode_run import steps_before
from servesim.schedulers.chunk_runs import leaves_budget_unused

if TYPE_CHECKING:  # types only (the instance imports this module), which compiled code reads natively
    from servesim.core.cohort import DecodeCohort
    from servesim.core.request import Request
    from servesim.engine.instance import Instance
    from servesim.kv.manager import KVCacheManager
    from servesim.schedulers.core import SchedulerLoad


def mixed_run(instance: Instance, plan: StepPlan):
    """Run `plan` and the steps that repeat it as one event (module doc); a SimPy generator."""
    request, chunk = _first_prompt(plan)
    pending = request.num_pending_tokens
    k, taken, last = _run_length(instance, plan, request, chunk) if _settles_per_run(instance) \
        else (1, None, 0)
    if k < 2:
        yield from instance._step(plan)
        return
    steps = _Steps.of(instance, plan, request, chunk, k)
    start = now(instance.env)
    starts, ends, joules = _price(instance, steps, start, last)
    starts, ends, joules, last = _before_horizon(instance, starts, ends, joules, last)
    if len(ends) < 2:
        yield from instance._step(plan)
        return
    used = instance.kv.num_used_blocks
    # an arrival before the prompt's last chunk would take the budget that chunk leaves
    done, loads = yield from _sleep_run(instance, start, ends, joules, 0 < last < chunk)
    tokens = min(chunk * done, pending)  # the last chunk, if run, completes the prompt
    _apply(instance, plan, request, tokens, start, ends[:done])
    prefills = [chunk] * done
    if tokens == pending:
        prefills[-1] = last
    _record(instance, prefills, [steps.decodes] * done, starts, ends, joules, loads, used, taken)


def handover_run(instance: Instance, plan: StepPlan):
    """Run `plan`, one prompt's last chunk beside the next prompt's first (`chunk_follows`), and
    the steps after it that repeat the next prompt's chunk as one event (module doc)."""
    prompts = _prompts(plan)
    done_prompt, (request, first) = prompts[0][0], prompts[1]
    chunk = instance.scheduler.limits.chunk_size - instance.cohort.size - 1
    k, taken, last = _handover_length(instance, plan, request, first, chunk) \
        if _settles_per_run(instance) and _joins_predictably(instance) else (1, None, 0)
    if k < 2:
        yield from instance._step(plan)
        return
    lead, start = instance._shape(plan), now(instance.env)
    lead_s, lead_j = instance.price(lead)
    steps = _Steps.after_handover(instance, done_prompt, request, first, chunk, k - 1)
    starts, ends, joules = _price(instance, steps, start + lead_s, last)  # as SimPy sums
    starts, ends, joules = [start, *starts], [start + lead_s, *ends], [lead_j, *joules]
    starts, ends, joules, last = _before_horizon(instance, starts, ends, joules, last)
    if len(ends) < 2:
        yield from instance._step(plan)
        return
    used = instance.kv.num_used_blocks
    done, loads = yield from _sleep_run(instance, start, ends, joules, 0 < last < chunk)
    instance._settle(plan, start, ends[0])  # the lead step, as a single step settles it
    pending = request.num_pending_tokens
    tokens = min(chunk * (done - 1), pending)
    if done > 1:
        follow = StepPlan({request: chunk}, decode_cohort=True)
        _apply(instance, follow, request, tokens, starts[1], ends[1:done])
    prefills = [lead.num_tokens - lead.num_decodes] + [chunk] * (done - 1)
    if done > 1 and tokens == pending:
        prefills[-1] = last
    decodes = [lead.num_decodes] + [steps.decodes] * (done - 1)
    _record(instance, prefills, decodes, starts, ends, joules, loads, used, taken)


def _prompts(plan: StepPlan) -> list[tuple[Request, int]]:
    """The plan's (request, tokens) pairs, in order. (A typed loop: compiled, unpacking or
    iterating `items()` directly is generic.)"""
    return [(request, tokens) for request, tokens in plan.tokens.items()]


def _first_prompt(plan: StepPlan) -> tuple[Request, int]:
    """The plan's first (request, tokens) pair (as `_prompts`, without a list)."""
    for request, tokens in plan.tokens.items():
        return request, tokens
    raise ValueError("a mixed run's plan has a prompt")


def _before_horizon(
    instance: Instance, starts: list[float], ends: list[float], joules: list[float], last: int,
) -> tuple[list[float], list[float], list[float], int]:
    """The run's steps up to the time limit (`decode_run.steps_before`), and its last chunk if
    it still ends with it (0 if not)."""
    k = steps_before(ends, instance.horizon)
    if k == len(ends):
        return starts, ends, joules, last
    return starts[:k], ends[:k], joules[:k], 0


def _sleep_run(
    instance: Instance, start: float, ends: list[float], joules: list[float], before_last: bool,
) -> Generator[Any, Any, tuple[int, list[tuple[float, SchedulerLoad]]]]:
    """Meter the run and sleep through it (`_sleep`); return the steps run and the loads its
    rows show: (time, load) at its start and after each arrival it took."""
    instance.meter.begin(start, ends[-1] - start, fsum(joules))
    loads = [(start, instance.scheduler.load())]
    instance.arrivals_in_run = loads
    if before_last:  # an arrival before the last chunk starts ends the run there (`Instance.wake`)
        instance.last_chunk_at = ends[-2]
    done = 0  # an instance failure loses the run
    try:
        done = yield from _sleep(instance, ends)
    finally:
        instance.arrivals_in_run = None
        instance.last_chunk_at = math.inf
    return done, loads


@dataclass(slots=True, init=False)  # (`__init__` written out: the compiled core compiles it)
class _Steps:
    """The run's steps: each computes `chunk` prompt tokens after `priors[j]` cached ones and
    decodes `decodes` cohort members whose context sums are `ctx[j]` (longest `longest[j]`)."""

    chunk: int
    priors: list[int]
    decodes: int
    ctx: list[int]
    longest: list[int]

    def __init__(self, chunk: int, priors: list[int], decodes: int, ctx: list[int], longest: list[int]):
        self.chunk = chunk
        self.priors = priors
        self.decodes = decodes
        self.ctx = ctx
        self.longest = longest

    @classmethod
    def of(cls, instance: Instance, plan: StepPlan, request: Request, chunk: int, k: int) -> _Steps:
        """As `Instance._shape` gives each step when it is planned."""
        prior = request.num_computed_tokens
        priors = [prior + chunk * j for j in range(k)]  # (compiled, `list(range(...))` is two generic calls)
        cohort = instance.cohort
        n = cohort.size if plan.decode_cohort else 0
        if not n:  # (`_Steps`, not `cls`: the compiled core calls its constructor directly)
            return _Steps(chunk, priors, 0, [0] * k, [0] * k)
        first = cohort.max_context(0)
        if cohort.window:  # attention reads at most the window
            ctx = cohort.attended_context_sums(k).astype(np.int64).tolist()
            longest = [min(first + j, cohort.window) for j in range(k)]
        else:
            ctx0 = cohort.context_sum(0)
            ctx, longest = [ctx0 + n * j for j in range(k)], [first + j for j in range(k)]
        return _Steps(chunk, priors, n, ctx, longest)

    @classmethod
    def after_handover(cls, instance: Instance, joining: Request, request: Request, first: int, chunk: int,
                       k: int) -> _Steps:
        """The k steps after a handover's lead step, as `Instance._shape` would give them: the
        cohort has grown by `joining` (its context: its prompt) and `request` computes `chunk`
        tokens after its first `first`. Not for a sliding window."""
        cohort, joined = instance.cohort, joining.num_prompt_tokens
        prior = request.num_computed_tokens + first
        priors = [prior + chunk * j for j in range(k)]
        n, ctx0, first_longest = cohort.size, cohort.context_sum(1), cohort.max_context(1)
        ctx = [ctx0 + n * j + joined + j for j in range(k)]
        longest = [max(first_longest + j, joined + j) for j in range(k)]
        return _Steps(chunk, priors, n + 1, ctx, longest)

    def last_chunk(self, tokens: int) -> StepShape:
        """The final step's shape when it is the prompt's last chunk (whose logit counts too)."""
        n = self.decodes
        return StepShape([(tokens, self.priors[-1])], n, self.ctx[-1], n + 1, self.longest[-1])

    def shapes(self) -> list[StepShape]:
        n, c = self.decodes, self.chunk
        rows = zip(self.priors, self.ctx, self.longest)
        return [StepShape([(c, p)], n, ctx, n, longest) for p, ctx, longest in rows]


def _settles_per_run(instance: Instance) -> bool:
    """Nothing acts on the instance between a run's steps: no prefix cache (which retention
    pins, tiers and time-based evictions need), no tier log, no migration hook."""
    kv = instance.kv
    return kv.prefix is None and kv.tier_log is None and instance.between_steps is None


def _run_length(
    instance: Instance, plan: StepPlan, request: Request, chunk: int,
) -> tuple[int, list[int] | None, int]:
    """Steps the run may take, the KV blocks taken by the end of each (beyond step 0's), and the
    prompt's last chunk if the run ends with it (0 if not). Plain Python: runs are a few steps,
    where numpy's per-call cost would dominate."""
    kv, cohort = instance.kv, instance.cohort
    repeats = _chunk_steps(request.num_pending_tokens, request.num_generated_tokens, chunk)
    last = _last_chunk(instance, request, chunk, repeats, request.num_pending_tokens)
    limit = min(repeats + (last > 0), instance.max_run_steps)
    if plan.decode_cohort:
        limit = min(limit, cohort.steps_to_next_finish())
    if limit < 2:
        return limit, None, 0
    needs = _cohort_needs(kv, cohort, limit) if plan.decode_cohort else [0] * limit
    taken = _blocks_taken(kv, request, request.num_computed_tokens, chunk, needs)
    k = len(taken)
    return k, taken, last if last and k == repeats + 1 else 0


def _joins_predictably(instance: Instance) -> bool:
    """A handover's first token joins the cohort, whose next steps the run then prices and
    whose token gaps it records at its end or registers ahead: not on a prefill instance (the
    request leaves) or with a sliding window."""
    return instance.hand_off is None and not instance.cohort.window


def _handover_length(
    instance: Instance, plan: StepPlan, request: Request, first: int, chunk: int,
) -> tuple[int, list[int] | None, int]:
    """As `_run_length`, for a handover run: its lead step (whose blocks its plan holds), then
    `request`'s chunks beside the cohort and the request that joined it after the lead step."""
    kv, cohort, joining = instance.kv, instance.cohort, _first_prompt(plan)[0]
    pending = request.num_pending_tokens - first
    repeats = _chunk_steps(pending, 0, chunk)
    last = _last_chunk(instance, request, chunk, repeats, pending, joining)
    limit = min(1 + repeats + (last > 0), instance.max_run_steps, joining.num_output_tokens)
    if plan.decode_cohort:
        limit = min(limit, cohort.steps_to_next_finish())
    if limit < 2:
        return limit, None, 0
    size, joined = kv.block_size, joining.num_prompt_tokens
    needs = _cohort_needs(kv, cohort, limit) if plan.decode_cohort else [0] * limit
    # after the lead step (whose blocks are held), the joined request takes a block when its
    # context fills one (as the cohort counts)
    needs = [needs[j] + ((joined + j - 1) % size == 0) for j in range(1, limit)]  # (indexed: zip is generic)
    taken = [0, *_blocks_taken(kv, request, request.num_computed_tokens + first, chunk, needs)]
    k = len(taken)
    return k, taken, last if last and k == repeats + 2 else 0


def _blocks_taken(
    kv: KVCacheManager, request: Request, computed: int, chunk: int, needs: list[int],
) -> list[int]:
    """KV blocks taken by the end of each step, for as many steps as the free blocks hold: the
    cohort's new blocks (`needs`, one count a step) and those of `request`'s chunks, from
    `computed` tokens on. The chunk holds blocks for what it has computed (with
    `kv_allocation: prompt`, all held already)."""
    free, size = kv.num_free_blocks, kv.block_size
    end, held = request.num_known_tokens, kv.blocks_of(request)
    taken, grown = [], 0
    for need in needs:
        grown += need
        computed = min(computed + chunk, end)
        blocks = grown + max(0, -(-computed // size) - held)
        if blocks > free:
            break
        taken.append(blocks)
    return taken


def _cohort_needs(kv: KVCacheManager, cohort: DecodeCohort, steps: int) -> list[int]:
    """New blocks the cohort takes at each of its next `steps` steps (each reserves the next
    step's, except those already reserved)."""
    reserved = min(kv.cohort_reserved_steps, steps)
    return [0] * reserved + cohort.block_needs(reserved, steps - reserved)


def _last_chunk(
    instance: Instance, request: Request, chunk: int, repeats: int, pending: int,
    joining: Request | None = None,
) -> int:
    """The prompt's last chunk, if the run may end with it: a fresh prompt (its first token then
    joins the cohort, or ends it) on an instance that keeps its requests, whose last chunk either
    takes the whole budget or leaves the rest to nobody (`pending`: its tokens to compute at the
    run's first repeat; `joining`: a request that joins the cohort before it)."""
    if request.num_generated_tokens or instance.hand_off is not None:
        return 0
    last = pending - chunk * repeats
    unused = leaves_budget_unused(instance.scheduler, request, joining)
    return last if last == chunk or unused else 0


def _price(
    instance: Instance, steps: _Steps, start: float, last: int,
) -> tuple[list[float], list[float], list[float]]:
    """Start, end and joules of each step; ends summed one step at a time, as SimPy would. With
    `last`, the final step is the prompt's last chunk (whose logit counts too)."""
    vector = _vector_price(instance, steps, last)
    if vector is not None:
        seconds, joules = vector
    else:
        shapes = steps.shapes()
        if last:
            shapes[-1] = steps.last_chunk(last)
        priced = [instance.price(shape) for shape in shapes]
        seconds, joules = [s for s, _ in priced], [j for _, j in priced]
    starts: list[float] = []
    ends: list[float] = []
    end = start
    for t in seconds:
        starts.append(end)
        end += t
        ends.append(end)
    return starts, ends, joules


def _chunk_steps(pending: int, generated: int, chunk: int) -> int:
    """Steps a request's chunks repeat (`pending` tokens to compute, `generated` so far): none
    may emit a token (its prompt's last chunk), nor leave a recomputing request one token short
    (it then decodes, in the cohort)."""
    steps = (pending - 1) // chunk
    if generated and (pending - 1) % chunk == 0:
        steps -= 1
    return steps


def _vector_price(instance: Instance, steps: _Steps, last: int) -> tuple[list[float], list[float]] | None:
    """`Instance.price` of every step at once, where the models write the steps' form out
    (`chunk_step_times`, `chunk_step_energies`; `last` as there): (seconds, joules), else None."""
    if instance.kv.tiers is not None:  # each step's own transfers
        return None
    model = instance.cost_model
    chunk, priors, decodes, ctx = steps.chunk, steps.priors, steps.decodes, steps.ctx
    seconds: list[float] | None
    if isinstance(model, RooflineCostModel):  # (compiled, a native call; `getattr`'s is generic)
        seconds = model.chunk_step_times(chunk, priors, decodes, ctx, steps.longest, last)
    else:
        vector = getattr(model, "chunk_step_times", None)
        seconds = None if vector is None else vector(chunk, priors, decodes, ctx, steps.longest, last)
    if seconds is None:
        return None
    slowdown = instance.slowdown
    if slowdown != 1.0:  # (t * 1.0 is t)
        seconds = [t * slowdown for t in seconds]
    if instance.power is None:
        return seconds, [0.0] * len(seconds)
    joules = instance.power.chunk_step_energies(chunk, priors, decodes, ctx, seconds, last)
    return (seconds, joules) if joules is not None else None


def _sleep(instance: Instance, ends: list[float]):
    """Sleep until the last end, or until the end of the step in flight at a wake other than
    an arrival, or until the last step's start where an arrival came before it
    (`Instance.last_chunk_at`); return the steps run."""
    env = instance.env
    done = len(ends)
    instance._interruptible = True
    woken = yield from _until(env, ends[-1])
    instance._interruptible = False
    if woken is WOKEN_LATER:  # an arrival came before the last chunk: the run ends before it
        return done - 1
    if woken is WOKEN:  # finish the step in flight, then plan again
        done = min(bisect.bisect_left(ends, now(env)) + 1, done)
        yield from _until(env, ends[done - 1])
    return done


def _until(env, target: float) -> Generator[Any, Any, Any]:
    """Sleep until exactly `target`; None, or the wake (`WOKEN`, `WOKEN_LATER`) that ended the
    sleep before it (`clock.wake_early`, `clock.wake_at`). `now + (target - now)` may round to a
    neighbour of it when the sleep is longer than `now` itself; a second hop, of the exact rest,
    then lands on it."""
    at = now(env)
    if at < target:
        delay = _delay(at, target)
        if not skip_ahead(env, delay):  # (nothing else due before then)
            woken = yield env.timeout(delay)
            if woken is not None:
                return woken
        at = now(env)
        if at < target:
            return (yield env.timeout(target - at))
    return None


def _delay(now: float, target: float) -> float:
    """The delay from `now` that lands on `target`, or on the float just below it where none
    does (`now + (target - now)` may round past it)."""
    delay = target - now
    while now + delay < target:
        delay = math.nextafter(delay, math.inf)
    while now + delay > target:
        delay = math.nextafter(delay, -math.inf)
    return delay


def _apply(instance: Instance, plan: StepPlan, request: Request, tokens: int, start: float,
           ends: list[float]) -> None:
    """The run's steps happened: the KV the steps took, the cohort's tokens, the chunks (the
    last one may complete the prompt: its first token, then the cohort or the end)."""
    kv, done, end = instance.kv, len(ends), ends[-1]
    # never inside an assert, which `python -O` would skip
    if plan.decode_cohort and not kv.reserve_cohort(done):
        raise RuntimeError("a mixed run outgrew the KV blocks it was planned with")
    if not kv.allocate(request, tokens):
        raise RuntimeError("a mixed run's prompt outgrew the KV blocks it was planned with")
    finished = kv.advance_cohort(ends) if plan.decode_cohort else []
    if math.isnan(request.first_scheduled_time):  # the run's first step was its first
        request.first_scheduled_time = start
    if request.advance(tokens, end):  # a fresh prompt whose first token was its last
        finished.append(request)
    elif request.num_pending_tokens == 1 and request.num_generated_tokens:  # its first token
        kv.join_cohort(request)  # it decodes from now on
    instance._finish(finished, end)


def _record(
    instance: Instance, prefills: list[int], decodes: list[int], starts: list[float], ends: list[float],
    joules: list[float], loads: list[tuple[float, SchedulerLoad]], used: int, taken: list[int] | None,
) -> None:
    """One step-log row per step run (`prefills`, `decodes`: its prefill tokens and decodes; the
    other lists may run on past the steps run), each with the load and KV usage it had at its
    end: `loads` holds (time, load) at the run's start and after each arrival it took (an
    arrival at a step's very end counts in that step's row, as it does when steps run one by
    one); the last row is `_record_step`'s, after the finishes."""
    last = len(prefills) - 1
    if last:
        assert taken is not None  # a run of steps counts its blocks
        nb = instance.kv.num_blocks
        usages = [(used + taken[j]) / nb for j in range(last)]
        run_ends = ends[:last]
        running, waiting = _loads_at(loads, run_ends) if instance.step_log.enabled else ([], [])
        instance._record_run_steps(starts[:last], run_ends, prefills[:last], decodes[:last], running, waiting,
                                   usages, joules[:last])
    instance._record_step(starts[last], ends[last], 1, prefills[last], decodes[last], joules[last])


def _loads_at(loads: list[tuple[float, SchedulerLoad]], ends: list[float]) -> tuple[list[int], list[int]]:
    """Running and waiting requests at each end, from (time, load) at the run's start and
    after each arrival it took."""
    if len(loads) == 1:  # no arrival during the run
        load = loads[0][1]
        return [load.num_running] * len(ends), [load.num_waiting] * len(ends)
    times, bisect_right = [t for t, _ in loads], bisect.bisect_right  # (looked up once)
    at = [loads[bisect_right(times, end) - 1][1] for end in ends]
    return [load.num_running for load in at], [load.num_waiting for load in at]
