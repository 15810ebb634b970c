"""One serving instance as a SimPy process: schedule, price, sleep, apply; repeat.

When the policy marks a pure-decode plan repeatable, the instance runs up to k identical steps as
one timeout (`engine.decode_run`), where k stops at the next finish, at the KV cache's limit and
at the policy's bound. An arrival routed here meanwhile wakes the run early; the step in flight
completes and the scheduler plans again. The result is step-for-step the same as running one step
at a time. Chunked prefill's repeating mixed steps run the same way (`engine.mixed_run`).

On the prefill side of a disaggregated cluster (`hand_off` set), a request that emits its first
token leaves at once: out of the scheduler's running set, never into the cohort, its KV detached
for the transfer, which frees it when the KV has reached the decode instance.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import simpy

from servesim.core.request import Request, RequestStatus
from servesim.core.step import StepPlan
from servesim.cost.base import CostModel, StepShape
from servesim.engine.clock import now, skip_ahead, wake_at, wake_early, wake_later
from servesim.engine.decode_run import decode_run
from servesim.engine.mixed_run import handover_run, mixed_run
from servesim.engine.power import PowerMeter
from servesim.kv.manager import KVCacheManager
from servesim.metrics.steps import StepLog
from servesim.schedulers.chunk_runs import chunk_follows, repeats_chunk
from servesim.schedulers.core import Scheduler, SchedulerLoad

if TYPE_CHECKING:  # types only
    from servesim.cost.power import PowerModel
    from servesim.metrics.gaps import TokenGaps

DEFAULT_MAX_RUN_STEPS = 4096
FAILURE = "instance failure"
"""Interrupt cause that ends an instance's process (elastic clusters)."""


class InstanceView:
    """What a router sees of an instance, read-only (the `routers.base.InstanceView` protocol)."""

    __slots__ = ("_instance",)

    def __init__(self, instance: Instance):
        self._instance = instance

    @property
    def index(self) -> int:
        return self._instance.index

    def load(self) -> SchedulerLoad:
        return self._instance.load()

    def prefix_match_tokens(self, request: Request) -> int:
        """Prompt tokens of `request` this instance's prefix cache holds now (0 without caching)."""
        return self._instance.kv.match_prefix(request, memo=False)

    def watch_load(self, callback) -> None:
        """Call `callback(view)` after anything that may change `load()` (a router's load index)."""
        self._instance.load_listeners.append(callback)

    def prefix_hits(self, request: Request) -> dict[str, int]:
        """Prompt tokens of `request` each KV tier here would serve (`gpu`, `dram`, `ssd`, `pool`)."""
        return self._instance.kv.peek_hits(request)

    def reload_time_s(self, hits: dict[str, int]) -> float:
        """Seconds to load a `prefix_hits` result's lower-tier tokens."""
        return self._instance.kv.reload_time_s(hits)

    @property
    def prefill_s_per_token(self) -> float:
        """Seconds per prompt token of a large prefill step here (cost model)."""
        return self._instance.prefill_s_per_token


class Instance:
    def __init__(
        self,
        env: simpy.Environment,
        index: int,
        scheduler: Scheduler,
        cost_model: CostModel,
        kv: KVCacheManager,
        step_log: StepLog,
        on_finish=None,
        on_reject=None,
        swap_s_per_token: float = 0.0,
        role: str = "mixed",
        hand_off=None,
        max_run_steps: int = DEFAULT_MAX_RUN_STEPS,
        power: PowerModel | None = None,
        horizon: float = math.inf,
    ):
        self.env = env
        self.index = index
        self.scheduler = scheduler
        self.cost_model = cost_model
        self._prefill_rate: float | None = None  # prefill_s_per_token, priced on first read
        self.step_log = step_log
        self.on_finish = on_finish
        self.on_reject = on_reject
        self._hold_kv(kv, swap_s_per_token)
        self._take_role(role, hand_off)
        self._set_run_settings(max_run_steps, horizon)
        self._meter_power(power)
        self._unset_hooks()
        self._start_fleet_state()
        self._start_loop_state()
        self.view = InstanceView(self)
        self.process = env.process(self.run_process())

    def _hold_kv(self, kv: KVCacheManager, swap_s_per_token: float) -> None:
        """The KV cache and its decode cohort, and the KV still on its way here."""
        self.kv = kv
        self.cohort = kv.cohort
        self._caching = kv.prefix is not None
        self.swap_s_per_token = swap_s_per_token
        """PCIe seconds to copy one token's KV between GPU and host (swap preemption)."""
        self.num_incoming = 0
        self.num_incoming_tokens = 0
        """Requests (and their prompt tokens) whose KV is on its way here."""

    def _take_role(self, role: str, hand_off) -> None:
        self.role = role
        """`mixed` (colocated), `prefill` or `decode` (disaggregated pools)."""
        self.hand_off = hand_off
        """Prefill role: `hand_off(instance, request, detached_kv)` sends a prefilled request on."""

    def _set_run_settings(self, max_run_steps: int, horizon: float) -> None:
        """How repeating steps run as one event: how far, which kinds, how they record gaps."""
        self.max_run_steps = max_run_steps
        """Most steps of a decode or mixed run simulated as one event (1: step by step, same results)."""
        self.horizon = horizon
        """The simulation's time limit (`max_sim_time_s`): a run ends with its last step that
        ends before it, as single steps would leave the clock there (the step in flight at the
        limit is never settled)."""
        self.mixed_runs = True
        """Run repeating cohort-plus-chunk steps as one event (`engine.mixed_run`). Off where
        something reads the instance between steps (a power budget's meter, an elastic fleet's
        busy time): a run settles its steps only at its end."""

    def _meter_power(self, power: PowerModel | None) -> None:
        self.power = power
        """The instance's `PowerModel` (energy per step, the clock under a cap), or None."""
        self.meter = PowerMeter(power.idle_w if power is not None else 0.0)

    def _unset_hooks(self) -> None:
        """What the cluster, policies and tests may attach; none of it is set at first."""
        self.after_step: Callable[[Instance], object] | None = None
        """Optional callback(instance) after every applied step: invariant checks in tests."""
        self.between_steps: Callable[[Instance], object] | None = None
        """Optional callback(instance) before each scheduling pass (migrations leave then)."""
        self.load_listeners: list = []
        """Callbacks(view) after anything that may change `load()` (routers' load indexes)."""
        self.gaps: TokenGaps | None = None
        """Optional `metrics.gaps.TokenGaps` for tokens computed outside the cohort (the cohort
        records its own steps)."""

    def _start_fleet_state(self) -> None:
        """What an elastic fleet sets and reads (docs/architecture.md, "Elastic clusters")."""
        self.slowdown = 1.0
        """Straggler factor: every step takes this many times its price."""
        self.busy_s = 0.0
        """Seconds spent computing so far (autoscaling policies read it)."""
        self.leaving: dict[Request, object] = {}
        """Decoding requests picked to migrate, to their destination; they leave between steps."""
        self.failed = False

    def _start_loop_state(self) -> None:
        """How the engine loop sleeps and what may wake it."""
        self._idle: simpy.Event | None = None
        self.arrivals_in_run: list[tuple[float, SchedulerLoad]] | None = None
        """While a mixed run sleeps: (time, scheduler load) after each arrival it took."""
        self._interruptible = False
        self.run_ends: Any = None
        """While a decode run sleeps: its steps' ends (a list or an array). A wake then moves the
        run's wake-up to the end of the step in flight (`clock.wake_later`), where a woken run would
        have gone back to sleep until then."""
        self.cut_steps = 0
        """The steps a decode run cut by `wake_later` runs: those up to its step in flight then."""
        self.last_chunk_at = math.inf
        """While a mixed run sleeps with its prompt's last chunk to come (`engine.mixed_run`): when
        that chunk starts. The first arrival before then ends the run there (`clock.wake_at`)."""

    # -- the outside world ------------------------------------------------------------------------
    def load(self) -> SchedulerLoad:
        """The scheduler's load, counting requests whose KV is still on its way here as waiting."""
        load = self.scheduler.load()
        if not self.num_incoming:
            return load
        return SchedulerLoad(
            load.num_waiting + self.num_incoming,
            load.num_running,
            load.num_queued_tokens,
            load.num_running_tokens + self.num_incoming_tokens,
        )

    @property
    def prefill_s_per_token(self) -> float:
        """Seconds per prompt token of a large prefill step here (cost model; the routers' view)."""
        if self._prefill_rate is None:
            n = 8192
            self._prefill_rate = self.cost_model.step_time(StepShape([(n, 0)], 0, 0, 1)) / n
        return self._prefill_rate

    def submit(self, request: Request) -> None:
        """Hand a routed request to the scheduler, waking the instance if it sleeps."""
        request.instance = self.index
        reason = self.scheduler.add_request(request, now(self.env))
        self.load_changed()
        if reason is not None:
            request.status = RequestStatus.REJECTED
            request.rejected_reason = reason
            if self.on_reject is not None:
                self.on_reject(request)
            return
        self.wake(arrival=True)

    def load_changed(self) -> None:
        for listener in self.load_listeners:
            listener(self.view)

    def wake(self, arrival: bool = False) -> None:
        """Something the scheduler sees changed (an arrival, KV freed): plan again now. A mixed
        run (`engine.mixed_run`) takes an arrival without replanning: it cannot change the
        run's steps, only the load their step-log rows show."""
        if self._idle is not None and not self._idle.triggered:
            self._idle.succeed()
        elif self._interruptible:
            if arrival and self.arrivals_in_run is not None:
                at = now(self.env)
                self.arrivals_in_run.append((at, self.scheduler.load()))
                if at <= self.last_chunk_at < math.inf:  # its last chunk must not run: wake it then
                    wake_at(self.process, self.last_chunk_at)
                    self.last_chunk_at = math.inf
                return
            self._interruptible = False
            if not self._wake_after_step():
                wake_early(self.process)

    def _wake_after_step(self) -> bool:
        """In a decode run, have the run woken at the end of its step in flight (`wake_later`), and
        return True; False where that end is now, or outside a decode run."""
        ends = self.run_ends
        if ends is None:
            return False
        at = now(self.env)
        flight = bisect.bisect_left(ends, at)
        if flight >= len(ends):
            return False
        remaining = float(ends[flight]) - at  # (the delay the woken run would have slept, a Python float)
        if not remaining > 0:
            return False
        self.cut_steps = flight + 1
        wake_later(self.process, remaining)
        return True

    def decoding(self) -> list[Request]:
        """Requests decoding here that could migrate (read-only for policies)."""
        return [r for r in self.cohort if r not in self.leaving]

    def fail(self) -> list[Request]:
        """Die now: the step in flight is lost; return the requests it held, their KV gone."""
        if self.process.is_alive:
            self.process.interrupt(FAILURE)
        self._interruptible = False  # killed in a run of steps: a later wake() has nothing to stop
        scheduler = self.scheduler
        held = [*scheduler.waiting, *scheduler.running]
        self.kv.unreserve_cohort()  # the cohort dies with the instance
        for request in held:
            request.restart_elsewhere()
        return held

    # -- the engine loop --------------------------------------------------------------------------
    def run_process(self) -> Generator[simpy.Event, Any, None]:  # (annotated: mypy, and mypyc, type its body)
        """The engine loop: plan, run what was planned, again, until the instance fails (an
        interrupt whose cause is `FAILURE`). One generator, not a loop inside a catcher: every
        resume and every interrupt passes through each generator of the chain."""
        scheduler, cohort = self.scheduler, self.cohort
        try:
            while True:
                plan = self._plan()
                if plan.is_empty(cohort.size):
                    yield from self._sleep_until_woken()
                elif plan.repeatable and plan.decode_cohort and not plan.tokens and not plan.preempted:
                    yield from decode_run(self, plan)
                elif self.mixed_runs and repeats_chunk(scheduler, plan):
                    yield from mixed_run(self, plan)
                elif self.mixed_runs and chunk_follows(scheduler, plan):
                    yield from handover_run(self, plan)
                else:
                    yield from self._step(plan)
        except simpy.Interrupt as exc:
            if exc.cause != FAILURE:
                raise

    def _plan(self) -> StepPlan:
        """The scheduler's next plan, after the hooks that act between steps."""
        if self.between_steps is not None:
            self.between_steps(self)
        at = now(self.env)
        self.kv.tick(at)
        plan = self.scheduler.schedule(at)
        if self.load_listeners:  # a policy may drop or reject requests while planning
            self.load_changed()
        return plan

    def _sleep_until_woken(self):
        """Nothing to run: sleep until a wake (`wake`), or until pinned KV frees itself."""
        self._idle = self.env.event()
        wake = self.kv.next_expiry()  # pinned KV frees itself then: plan again
        if math.isfinite(wake):
            yield self._idle | self.env.timeout(max(0.0, wake - now(self.env)))
        else:
            yield self._idle
        self._idle = None

    def _step(self, plan: StepPlan):
        env = self.env
        shape = self._shape(plan)
        start = now(env)
        seconds, joules = self.price(shape, plan.num_swap_in_tokens + plan.num_swap_out_tokens)
        self.meter.begin(start, seconds, joules)
        if not skip_ahead(env, seconds):
            yield env.timeout(seconds)
        end = now(env)
        self._settle(plan, start, end)
        self._record_step(start, end, 1, shape.num_tokens - shape.num_decodes, shape.num_decodes, joules)

    def _settle(self, plan: StepPlan, start: float, end: float) -> None:
        """The step planned as `plan` ran from `start` to `end`: the cohort's tokens and the
        planned ones, first tokens joining the cohort (or handed off), finishes."""
        kv = self.kv
        finished = kv.advance_cohort([end]) if plan.decode_cohort else []
        prefilled = []
        for request, n in plan.tokens.items():
            if math.isnan(request.first_scheduled_time):  # its first step
                request.first_scheduled_time = start
            last = request.last_token_time
            done = request.advance(n, end)
            if self.gaps is not None and last == last and request.last_token_time == end:
                self.gaps.add(end - last, request.class_name)  # a token after an earlier one
            if self._caching:
                kv.cache_computed(request)
            if done:
                finished.append(request)
            elif request.num_pending_tokens == 1 and request.num_generated_tokens:
                # (a prompt chunk may also stop one token short)
                if self.hand_off is None:
                    kv.join_cohort(request)
                else:
                    prefilled.append(request)
        self._finish(finished, end)
        for request in prefilled:
            self.scheduler.release(request)
            self.hand_off(self, request, kv.detach(request))

    def price(self, shape: StepShape, swapped_tokens: int = 0) -> tuple[float, float]:
        """Seconds and joules of one step (`swapped_tokens`: KV copied over PCIe within it)."""
        # a straggler slows compute; KV tier transfers overlap or stall it (kv.step_time)
        compute = self.kv.step_time(self.cost_model.step_time(shape) * self.slowdown)
        seconds = compute + swapped_tokens * self.swap_s_per_token
        joules = self.power.step_energy(shape, seconds) if self.power is not None else 0.0
        return seconds, joules

    def _shape(self, plan: StepPlan) -> StepShape:
        chunks, num_decodes, ctx_sum, logits, longest = [], 0, 0, 0, 0
        window = self.cohort.window  # decodes read at most the attention window
        for request, n in plan.tokens.items():
            computed = request.num_computed_tokens
            if n == 1 and request.num_pending_tokens == 1 and request.num_generated_tokens:
                num_decodes += 1
                attended = min(computed, window) if window else computed
                ctx_sum += attended
                longest = max(longest, attended)
            else:
                chunks.append((n, computed))
                logits += computed + n == request.num_known_tokens
        if plan.decode_cohort and self.cohort.size:
            num_decodes += self.cohort.size
            cohort = self.cohort
            ctx_sum += int(cohort.attended_context_sums(1)[0]) if window else cohort.context_sum(0)
            longest = max(longest, cohort.max_context(0))
            if window:
                longest = min(longest, window)
        return StepShape(chunks, num_decodes, ctx_sum, logits + num_decodes, longest)

    def _finish(self, finished: list[Request], now: float) -> None:
        if finished:
            self.scheduler.finish(finished, now)
            if self.on_finish is not None:
                for request in finished:
                    self.on_finish(request)

    def _record_run_steps(
        self, starts: list[float], ends: list[float], prefills: list[int], decodes: list[int],
        running: list[int], waiting: list[int], usages: list[float], joules: list[float],
    ) -> None:
        """A run's steps before its last, settled at once (the last is `_record_step`'s, with
        the hooks, which nothing runs between a run's steps): meter, busy time and one step-log
        row each (`prefills`, `decodes`, `running`, `waiting`, `usages`: per step), as
        `_record_step` would write them."""
        self.meter.end_steps(ends[-1], joules)
        busy = self.busy_s
        for start, end in zip(starts, ends):  # added one by one: the same sum
            busy += end - start
        self.busy_s = busy
        self.step_log.record_steps(self.index, starts, ends, prefills, decodes, running, waiting, usages,
                                   joules)

    def _record_step(
        self, start: float, end: float, num_steps: int, prefill_tokens: int, num_decodes: int,
        joules: float,
    ) -> None:
        """The one place a finished step (or run of `num_steps` identical decode steps, using
        `joules`) is recorded; hooks on finished steps go here."""
        self.meter.end(end, joules)
        self.busy_s += end - start
        if self.load_listeners:
            self.load_changed()
        if self.after_step is not None:
            self.after_step(self)
        if self.kv.tier_log is not None:  # tier occupancy, hits and traffic over time
            self.kv.tier_log.record(self.index, end, self.kv)
        load = self.scheduler.load() if self.step_log.enabled else None
        self.step_log.record(
            self.index,
            start,
            end,
            num_steps,
            prefill_tokens,
            num_decodes,
            load.num_running if load else 0,
            load.num_waiting if load else 0,
            self.kv.usage,
            joules,
        )
