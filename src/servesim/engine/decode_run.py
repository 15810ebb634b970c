"""Runs of pure-decode steps: the cohort alone, k identical steps as one event.

When the scheduler marks a pure-cohort plan repeatable, the instance prices k steps at once (k
stops at the next finish, at the KV cache's limit, at the plan's `max_repeats` and at
`engine.max_run_steps`; a plan's `replan_time` cuts it to the step in flight then, the time
limit to the steps that end before it), sleeps until the last ends, and settles them: KV
blocks, the cohort's progress, finishes, one step-log row with the run's steps and joules. An
arrival routed here meanwhile cuts the run: the step in flight completes and the scheduler plans
again (`Instance.wake` moves the run's wake-up to that step's end, `clock.wake_later`: one event, where
waking it at once would take two). The result is step for step what single steps give.

A run that would outlive the next event queued, which may be an arrival routed here (on one
instance it nearly always is; nothing can wake the run sooner), is priced lazily where the queue
is short (one instance or a few; in a fleet's long queue the next event is mostly another
instance's): its head first, the steps up to the one in flight when that event is due
(`_head_prices`), and it sleeps to the head's end; only if nothing woke it then is the whole run
priced, and slept to its end at the time and in the place among same-time events its one timeout
would have had (`clock.timeout_at`): the schedule is that of one timeout, with one SimPy event
more. (Runs priced whole priced about twice the steps they ran: an arrival cuts half of them
short.)

Its energy is priced once, for the steps run, unless the power meter is read while it runs
(a power budget): then it is priced for the planned steps as it starts, and again if it was cut
short or the budget moved the cap.

A run of at most `SHORT_RUN` steps (most of them: a finish or an arrival comes within a few
steps) is priced in plain Python lists where the cost model offers `decode_run_times`: numpy's
fixed cost per call (a dozen calls a run) outweighs its per-step gain there. Both paths make the
same float operations in the same order (step ends summed one by one, the energy's busy time
summed in numpy's pairwise order), so results do not depend on which priced a run.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

import numpy as np

from servesim.core.step import StepPlan
from servesim.engine.clock import (
    SHORT_QUEUE,
    WOKEN,
    WOKEN_LATER,
    now,
    reserve_order,
    skip_ahead,
    skip_to,
    timeout_at,
)

if TYPE_CHECKING:  # a type only: the instance imports this module
    from servesim.engine.instance import Instance

SHORT_RUN = 64
"""Most steps of a run priced in plain Python (0: always numpy; results are the same)."""

HEAD_MIN_REST = 32
"""Fewest steps a run must plan past its head for the head to be priced and slept alone (a huge
value: never; results are the same). On one instance, where that event nearly always cuts the
run, 8 and 32 are even. Where it seldom does (a fleet: it is mostly another instance's step), a
head the run outlives costs a SimPy event and its steps priced twice, so a long queue (more than
`clock.SHORT_QUEUE` events: several instances) prices runs whole: on a 64-instance fleet of 8,000
requests, 4,594.1M -> 4,554.8M instructions (-0.9%), one instance unchanged (+0.08%)."""


def decode_run(instance: Instance, plan: StepPlan):
    """Run the cohort's repeatable pure-decode `plan` for up to k steps (module doc); a SimPy
    generator."""
    env, cohort, kv = instance.env, instance.cohort, instance.kv
    # (two-argument min and max: compiled, native; with three, a generic call)
    most = min(min(cohort.steps_to_next_finish(), plan.max_repeats), instance.max_run_steps)
    k = max(1, kv.max_cohort_steps(most))
    n = cohort.size
    start: float = now(env)
    # The run's joules up front only where the meter is read in flight (a power budget: then
    # `Instance.mixed_runs` is off); otherwise once, for the steps that ran.
    in_flight = not instance.mixed_runs
    limit = _limit(instance)
    joules = 0.0
    got: Any = None  # what the run's sleep ended with: None, or a wake (`Instance.wake`)
    order = -1  # the place of the run's timeout among same-time events, where it sleeps in two hops
    ctx: Any  # (declared: lists or arrays; mypyc types a local by its first value)
    seconds: Any
    ends: Any
    head = None if in_flight else _head_prices(instance, n, k, start, plan.replan_time)
    if head is not None:  # the run outlives the next event due, which may cut it: sleep to it first
        ctx, seconds, ends = head
        order = reserve_order(env)
        instance.meter.begin(start, ends[-1] - start, joules)
        instance._interruptible = True
        instance.run_ends = ends
        got = yield timeout_at(env, ends[-1], order)
    if got is None:
        ctx, seconds, ends = _prices(instance, n, k, start)
        # (`ends` is a list or an array: a Python float, not a NumPy scalar, goes to SimPy's clock,
        # where one would make every later time, and the arithmetic on it, NumPy's)
        end: float = float(ends[-1])
        if plan.replan_time < end:
            k = bisect.bisect_left(ends, plan.replan_time) + 1
            ends = ends[:k]
            end = float(ends[-1])
        if end >= instance.horizon:
            k = steps_before(ends, instance.horizon)
            ends = ends[:k]
            end = float(ends[-1])
        if in_flight:
            joules = _energy(instance, n, ctx, seconds, k)
        instance.meter.begin(start, end - start, joules)
        instance.run_ends = ends
        if order < 0:
            if not skip_ahead(env, end - start):  # (nothing else due before the run ends)
                instance._interruptible = k > 1
                got = yield env.timeout(end - start)  # an arrival may wake it (`Instance.wake`)
        elif not skip_to(env, start + (end - start)):  # (where the one timeout would have ended)
            got = yield timeout_at(env, start + (end - start), order)
    instance.run_ends = None
    done = len(ends)
    if got is WOKEN:  # finish the step in flight, then plan again
        done = min(bisect.bisect_left(ends, now(env)) + 1, done)
        remaining = float(ends[done - 1]) - now(env)
        if remaining > 0 and not skip_ahead(env, remaining):
            yield env.timeout(remaining)
    elif got is WOKEN_LATER:  # woken at the end of the step in flight (`clock.wake_later`)
        done = min(instance.cut_steps, done)
    instance._interruptible = False
    end_now = now(env)
    ends = ends[:done] if isinstance(ends, list) else np.array(ends[:done])  # (a copy either way)
    ends[-1] = end_now
    # Blocks for the steps run (k fit when the run was planned); never inside an assert,
    # which `python -O` would skip.
    if not kv.reserve_cohort(done):
        raise RuntimeError("a decode run outgrew the KV blocks it was planned with")
    instance._finish(kv.advance_cohort(ends), end_now)
    if not in_flight or done < k or _limit(instance) != limit:  # or cut short, or capped anew
        joules = _energy(instance, n, ctx, seconds, done)
    instance._record_step(start, end_now, done, 0, n, joules)


def steps_before(ends, horizon: float) -> int:
    """Steps of a run ending at `ends` (ascending) that end before `horizon`, the simulation's
    time limit, or the first one alone if none does: the simulation stops at the limit, with
    only the steps ended before it settled; a run that went on past it would lose them all."""
    return max(1, bisect.bisect_left(ends, horizon))


def _prices(instance: Instance, n: int, k: int, start: float) -> tuple[Any, Any, Any]:
    """Context sums, seconds and end times of the cohort's next k steps from `start`: lists for
    a short run, arrays otherwise (the same values)."""
    ctx: Any  # a range or list, else an array (declared: mypyc types a local by its first value)
    seconds: Any
    cohort, slowdown = instance.cohort, instance.slowdown
    short = getattr(instance.cost_model, "decode_run_times", None) if k <= SHORT_RUN else None
    if short is not None and not cohort.window:
        ctx0 = cohort.context_sum(0)
        listed: list[float] | None = short(n, ctx0, cohort.max_context(0), k)
        if listed is not None:
            if slowdown != 1.0:
                listed = [s * slowdown for s in listed]
            ctx = range(ctx0, ctx0 + n * k, n) if n else [ctx0] * k  # (ranges: nothing to build)
            return ctx, listed, _ends(start, listed)
    steps = np.arange(k, dtype=np.float64)
    ctx = cohort.attended_context_sums(k)
    longest = cohort.max_context(0) + steps
    if cohort.window:  # attention reads at most the window
        longest = np.minimum(longest, cohort.window)
    seconds = instance.cost_model.decode_step_times(n, ctx, longest)
    if slowdown != 1.0:
        seconds = seconds * slowdown
    return ctx, seconds, start + np.add.accumulate(seconds)  # (`np.cumsum` without its Python wrapper)


def _ends(start: float, seconds: list[float]) -> list[float]:
    """Each step's end: `start` plus the seconds so far, summed one by one (as numpy's
    `add.accumulate` sums them). A typed loop: compiled, `itertools.accumulate` is a generic
    iterator (~180 instructions a step)."""
    ends: list[float] = []
    t = 0.0
    for s in seconds:
        t += s
        ends.append(start + t)
    return ends


def _head_prices(
    instance: Instance, n: int, k: int, start: float, replan_time: float,
) -> tuple[Any, list[float], list[float]] | None:
    """Context sums, seconds and end times of the run's head, its steps up to the one in flight
    when the next queued event is due (two at least), where the run plans `HEAD_MIN_REST` steps
    or more past it: nothing can cut the run sooner, and on one instance that event is nearly
    always the arrival that does. None where the whole run is priced at once: a short rest, a
    run cut (`replan_time`, the time limit) or ending within its head, a sliding window, no
    `decode_run_times`; or where a timeout from `start` would not land on the head's end (the
    second hop must end where the one timeout would have: module doc)."""
    queue = instance.env._queue
    cohort = instance.cohort
    if k < HEAD_MIN_REST + 2 or not queue or len(queue) > SHORT_QUEUE or cohort.window:
        return None
    price = getattr(instance.cost_model, "decode_run_times", None)
    if price is None:
        return None
    due: float = queue[0][0]
    bound = min(due, min(replan_time, instance.horizon))
    slowdown = instance.slowdown
    ctx0, first = cohort.context_sum(0), cohort.max_context(0)
    seconds: list[float] = []
    ends: list[float] = []
    t = 0.0  # the seconds summed so far, one by one (as `_ends` sums them)
    while len(ends) < 2 or ends[-1] < bound:
        c = len(ends)
        count = 1  # a first step gives the pace: then the steps left to `bound` at the last's
        if c:  # (an estimate: steps slow down as contexts grow, and the loop prices on if short)
            pace = seconds[-1]
            count = max(2 - c, 1 + int((bound - ends[-1]) / pace) if pace > 0 else k)
        if k - (c + count) < HEAD_MIN_REST:
            return None
        listed: list[float] | None = price(n, ctx0 + n * c, first + c, count)
        if listed is None:
            return None
        for s in listed:
            if slowdown != 1.0:
                s = s * slowdown
            t += s
            seconds.append(s)
            ends.append(start + t)
    c = max(2, bisect.bisect_left(ends, bound) + 1)
    head_end = ends[c - 1]
    if head_end >= replan_time or head_end >= instance.horizon or start + (head_end - start) < head_end:
        return None
    ctx = range(ctx0, ctx0 + n * c, n) if n else [ctx0] * c
    return ctx, seconds[:c], ends[:c]


def _energy(instance: Instance, n: int, ctx, seconds, steps: int) -> float:
    """Joules of the first `steps` steps of the run."""
    if instance.power is None:
        return 0.0
    return instance.power.decode_run_energy(n, ctx, seconds, steps)


def _limit(instance: Instance) -> tuple | None:
    """The power cap and clock limit the run's energy is priced under (a power budget changes
    them between events)."""
    power = instance.power
    return None if power is None else (power.limit.cap_w, power.limit.clock_frac)
