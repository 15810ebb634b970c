"""The scheduling mechanics every policy shares, written once.

A `Scheduler` owns one instance's waiting queue and running set. Each step it ranks both with the
policy's `rank_key`, hands the step to the batching (whole prompts or chunks), and provides what
the batching fills the step with: admission (`admit`: prefix match, KV allocation and watermark in
one place, optionally evicting lower-ranked requests), growing running requests (`grow`), the
decode cohort's step (`decode`: pause, resume, reserve, preempt), and preemption (`preempt`). The
rules of memory, as in vLLM v0 (`engine.kv_allocation`, `engine.kv_watermark`):

- admission keeps `kv_watermark` of the blocks free while any other request holds KV; growing a
  running request or the cohort may use every free block;
- `kv_allocation: prompt` holds the blocks of everything a request must compute before its next
  token (its prompt, or prompt plus output after a recompute preemption) at admission; `chunk`
  holds blocks for each scheduled chunk only;
- the victim of a KV shortage is the worst-ranked running request (`fcfs`: the most recently
  arrived); its blocks are usable at once, in the same step; it re-enters the waiting queue at its
  rank (`fcfs`: by arrival time);
- a step that preempted admits no waiting request after the preemption (victims must not come
  straight back); finished requests' blocks are usable from the next step.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterator

from servesim.core.request import Request, RequestStatus
from servesim.core.step import StepPlan
from servesim.kv.manager import KVCacheManager
from servesim.schedulers.policy import UNBOUNDED, Policy, Ranked


@dataclass(frozen=True)
class EngineLimits:
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    chunk_size: int = 512
    max_context: int = 1 << 30
    preemption: str = "recompute"
    """`recompute` drops a victim's KV; `swap` copies it to host memory and back over PCIe."""
    kv_allocation: str = "prompt"
    """`prompt`: a request's blocks for all it must compute, at admission; `chunk`: per chunk."""


@dataclass(slots=True, init=False)
class SchedulerLoad:
    """What routers and time series see of an instance. Read it, never change it: a scheduler
    hands out the same one until its queues change. (Not a frozen dataclass: its `__init__` sets
    fields through `object.__setattr__`, and a dataclass's generated `__init__` is Python code
    that the compiled core would call, interpreted, for every new load.)"""

    num_waiting: int
    num_running: int
    num_queued_tokens: int
    """Tokens the waiting requests must compute before their first (next) token."""
    num_running_tokens: int

    def __init__(
        self, num_waiting: int, num_running: int, num_queued_tokens: int, num_running_tokens: int = 0,
    ):
        self.num_waiting = num_waiting
        self.num_running = num_running
        self.num_queued_tokens = num_queued_tokens
        self.num_running_tokens = num_running_tokens
        """Prompt tokens of the running requests: the context they hold, counted at admission."""


def is_paused_decode(request: Request) -> bool:
    """A running request outside the cohort whose next token is a decode (not a prompt's)."""
    return request.num_generated_tokens > 0 and request.num_pending_tokens == 1


class RankedList:
    """(key, request) pairs kept sorted by key; keys end with the request id, so they are unique."""

    __slots__ = ("items",)

    def __init__(self, items: Ranked | None = None):
        self.items: Ranked = items if items is not None else []

    def add(self, key: tuple, request: Request) -> None:
        bisect.insort(self.items, (key, request))  # keys are unique: requests never compared

    def remove(self, key: tuple, request: Request) -> None:
        i = bisect.bisect_left(self.items, (key,))  # (key,) sorts just before (key, request)
        if i == len(self.items) or self.items[i][1] is not request:
            raise LookupError(f"request {request.request_id} is not ranked under {key}")
        del self.items[i]

    def __iter__(self) -> Iterator[tuple[tuple, Request]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class Scheduler:
    """Queues, admission, preemption and the decode cohort around a policy and a batching."""

    def __init__(
        self,
        kv: KVCacheManager,
        limits: EngineLimits,
        policy: Policy,
        batching,
        predictor=None,
        cost_model=None,
    ):
        self.kv, self.cohort, self.limits = kv, kv.cohort, limits
        self.policy, self.batching = policy, batching
        self.predictor, self.cost_model = predictor, cost_model
        changes = getattr(policy, "rank_changes", "with_time")
        self._changes = changes
        self._preemptive = bool(getattr(policy, "preemptive", False))
        self.waiting: dict[Request, tuple | None] = {}  # request -> its key in `_queue`
        self.running: dict[Request, None] = {}
        self._queue = RankedList() if changes != "with_time" else None  # kept sorted
        self._ranked: RankedList | None = None  # the running requests ranked, built on demand
        self._outside: Ranked | None = None  # those outside the cohort within the batch, ranked
        self.plan: StepPlan | None = None
        self.num_preemptions = 0
        self.num_admitted = 0
        self._waiting_tokens = 0
        self._running_tokens = 0
        self._load: SchedulerLoad | None = None  # `load()`, until the queues change
        self._now = 0.0

    # -- what the engine calls ----------------------------------------------------------------------
    def add_request(self, request: Request, now: float) -> str | None:
        """Take a routed request; return None, or the reason it is rejected."""
        self._now = now
        reason = self.rejection_reason(request)
        if reason is None and hasattr(self.policy, "on_arrival"):
            reason = self.policy.on_arrival(request, now, self)
        if reason is None:
            if self.predictor is not None:
                self.predictor.predict(request)
            self._enqueue(request)
        return reason

    def schedule(self, now: float) -> StepPlan:
        """The next step's plan; every request in it holds the blocks for its tokens."""
        self._now = now
        self.plan = plan = StepPlan()
        self.batching.fill(self)
        if plan.decode_cohort and not plan.tokens and not plan.preempted:
            plan.repeatable = True
            plan.max_repeats, plan.replan_time = self._repeat_limits(now)
        self._ranked = self._outside = self.plan = None
        return plan

    def finish(self, requests: list[Request], now: float) -> None:
        """Requests that emitted their last token leave, freeing their KV."""
        for request in requests:
            self._drop_running(request)
            self.kv.free(request)
            request.status = RequestStatus.FINISHED
            if self.predictor is not None:
                self.predictor.observe(request)

    def release(self, request: Request) -> None:
        """A running request moves to another instance (disaggregation); the caller takes its KV
        (`kv.detach`) before or after."""
        self._drop_running(request)

    def load(self) -> SchedulerLoad:
        load = self._load  # (read every step and routing decision, changed far less often)
        if load is None:
            load = self._load = SchedulerLoad(
                len(self.waiting), len(self.running), self._waiting_tokens, self._running_tokens
            )
        return load

    def rejection_reason(self, request: Request) -> str | None:
        """Why a request can never be served here, or None."""
        if request.num_prompt_tokens + request.num_output_tokens > self.limits.max_context:
            return "exceeds_max_context"
        reason = self.batching.rejection_reason(request, self.limits)
        if reason is not None:
            return reason
        if self.kv.blocks_for(request.num_prompt_tokens) > self.kv.num_blocks:
            return "prompt_exceeds_kv_capacity"
        if not self.kv.fits_ever(request):
            return "request_exceeds_kv_capacity"
        return None

    # -- the view a policy and a batching read --------------------------------------------------------
    def ranked_waiting(self, now: float) -> Ranked:
        """The waiting requests, best first."""
        if self._queue is not None:
            return self._queue.items
        key = self.policy.rank_key
        return sorted((key(r, now), r) for r in self.waiting)  # keys are unique

    def ranked_running(self) -> Ranked:
        """The running requests (cohort members, paused ones, partial prompts), best first,
        as ranked for the plan being built (sorted once per plan, when first asked)."""
        if self._ranked is None:
            key, now = self.policy.rank_key, self._now
            self._ranked = RankedList(sorted((key(r, now), r) for r in self.running))
        return self._ranked.items

    def ranked_outside_cohort(self) -> Ranked:
        """Running requests outside the decode cohort (paused, mid-prompt, just admitted) that
        rank within the best `max_num_seqs`, best first. Cheap when few are outside."""
        running = self.running
        if len(running) == len(self.cohort):
            return []
        if self._outside is None:
            if self._preemptive:
                cut = self.ranked_running()[: self.limits.max_num_seqs]
                self._outside = [(k, r) for k, r in cut if not r.in_cohort]
            else:
                key, now = self.policy.rank_key, self._now
                outside = self.kv.holders_outside_cohort()
                self._outside = sorted((key(r, now), r) for r in outside if r in running)
        return [(k, r) for k, r in self._outside if r in running and not r.in_cohort]

    def candidates(self) -> Ranked:
        """Waiting requests that would get a batch slot, best first: with a preemptive policy,
        those within the best `max_num_seqs` of everyone; otherwise those that fit in the slots
        the running requests leave."""
        slots = self.limits.max_num_seqs
        if not self.waiting or (not self._preemptive and len(self.running) >= slots):
            return []
        queue = self.ranked_waiting(self._now)
        if not self._preemptive:
            return queue[: slots - len(self.running)]
        out, i, j = [], 0, 0
        holders = self.ranked_running()
        while slots > 0 and j < len(queue):
            if i < len(holders) and holders[i][0] < queue[j][0]:
                i += 1
            else:
                out.append(queue[j])
                j += 1
            slots -= 1
        return out

    # -- filling a step ---------------------------------------------------------------------------------
    def admit(self, key: tuple, request: Request, max_tokens: float, whole: bool = False) -> int:
        """Start a waiting request with up to `max_tokens` tokens (all it must compute past its
        cached prefix if `whole`, else nothing); return the tokens scheduled, 0 if refused.

        The one admission path: prefix match, KV allocation (per `kv_allocation`) keeping the
        watermark, and, for a preemptive policy with `preempt_to_admit`, eviction of lower-ranked
        requests if, and only if, that frees enough.
        """
        kv = self.kv
        sized = self._size(request, max_tokens, whole)
        if sized is None:
            return 0
        cached, chunk, blocks_for = sized
        keep = kv.has_holders()  # the watermark protects requests that hold KV
        if not kv.allocate(request, blocks_for, keep, cached):
            if not getattr(self.policy, "preempt_to_admit", False):
                return 0
            if not self._evict_below(key, request, cached + blocks_for, keep):
                return 0
            sized = self._size(request, max_tokens, whole)  # evictions may drop cached blocks
            if sized is None:
                return 0
            cached, chunk, blocks_for = sized
            if not kv.allocate(request, blocks_for, kv.has_holders(), cached):
                return 0
        self._dequeue(request)
        self._running_tokens += request.num_prompt_tokens  # (`_add_running` clears `_load`)
        plan = self.plan
        assert plan is not None  # only while a step is planned
        if request.status == RequestStatus.SWAPPED:
            plan.num_swap_in_tokens += request.num_computed_tokens
            kv.swap_in(request)
        if cached:
            request.skip_cached_prefix(cached)
        request.status = RequestStatus.RUNNING
        self._add_running(request)
        self.num_admitted += 1
        plan.tokens[request] = chunk
        return chunk

    def grow(self, key: tuple, request: Request, max_tokens: float) -> int:
        """Give a running request outside the cohort its next tokens (a prompt chunk, or one
        token to resume a paused decode); a preemptive policy may evict lower-ranked requests.
        Returns the tokens scheduled, 0 if its blocks do not fit."""
        pending = request.num_pending_tokens
        chunk = pending if pending <= max_tokens else int(max_tokens)
        if chunk <= 0:
            return 0
        kv = self.kv
        if not kv.allocate(request, chunk):
            if not self._preemptive:
                return 0
            if not self._evict_below(key, request, chunk, False) or not kv.allocate(request, chunk):
                return 0
        self.plan.tokens[request] = chunk  # type: ignore[union-attr]  # only while a step is planned
        return chunk

    def decode(self) -> int:
        """Give the cohort and the paused decodes within the batch their next token: pause
        members ranked below the best `max_num_seqs`, resume paused ones ranked within, then
        reserve the cohort's step, preempting the worst-ranked requests until it fits.
        Returns the decode tokens of the step."""
        plan, kv, cohort = self.plan, self.kv, self.cohort
        assert plan is not None  # only while a step is planned
        cut = self.limits.max_num_seqs
        self._outside = None
        if len(self.running) > cut:
            for _, request in self.ranked_running()[cut:]:
                if request.in_cohort:
                    kv.leave_cohort(request)  # paused: keeps its KV
        resumed = []
        if self._preemptive:  # only a preemptive policy pauses decodes
            for key, request in self.ranked_outside_cohort():
                if request in plan.tokens or not is_paused_decode(request):
                    continue
                if request in self.running and self.grow(key, request, 1):
                    resumed.append(request)
        while len(cohort) and not kv.reserve_cohort(1):
            self.preempt(self.worst_running())
        size = len(cohort)
        plan.decode_cohort = size > 0
        return size + sum(1 for r in resumed if r in plan.tokens) if resumed else size

    def worst_running(self) -> Request:
        """The preemption victim: the running request with the largest key."""
        return self.ranked_running()[-1][1]

    def preempt(self, victim: Request) -> None:
        """Evict a running request to the waiting queue. `recompute` drops its KV (prompt and
        output run again); `swap` copies the KV to host memory during this step (recompute when
        the host tier has no room for it)."""
        plan = self.plan
        assert plan is not None  # only while a step is planned
        if victim.in_cohort:
            self.kv.leave_cohort(victim)
        self._drop_running(victim)
        # swap needs room in host memory (finite when a host tier is configured), else recompute
        swap = self.limits.preemption == "swap" and self.kv.swap_out(victim)
        self.kv.free(victim)
        if swap:
            plan.num_swap_out_tokens += victim.num_computed_tokens
            victim.status = RequestStatus.SWAPPED
        else:
            victim.reset_for_recompute()
            victim.status = RequestStatus.WAITING
        victim.num_preemptions += 1
        self.num_preemptions += 1
        self._enqueue(victim)
        plan.preempted.append(victim)
        plan.tokens.pop(victim, None)

    # -- internals ----------------------------------------------------------------------------------------
    def _size(self, request: Request, max_tokens: float, whole: bool) -> tuple[int, int, int] | None:
        """(cached tokens, tokens this step, tokens to hold blocks for past the cached head)."""
        cached = self.kv.match_prefix(request)
        pending = request.num_pending_tokens - cached
        if whole and pending > max_tokens:
            return None
        chunk = pending if pending <= max_tokens else int(max_tokens)
        if chunk <= 0:
            return None
        held = pending if self.limits.kv_allocation == "prompt" else chunk
        return cached, chunk, held

    def _evict_below(self, key: tuple, request: Request, num_tokens: int, keep: bool) -> bool:
        """Preempt the worst-ranked running requests below `key` if that frees the blocks
        `request` needs for `num_tokens` more tokens; False (and nothing done) if it would not."""
        kv = self.kv
        short = kv.blocks_to_grow(request, num_tokens) - kv.num_free_blocks
        if keep:
            short += kv.watermark_blocks
        victims, freed = [], 0
        for victim_key, victim in self.ranked_running()[::-1]:  # mypyc fails on reversed() here
            if freed >= short or victim_key <= key:
                break
            if victim is not request:
                victims.append(victim)
                freed += kv.blocks_of(victim)
        if freed < short:
            return False
        for victim in victims:
            self.preempt(victim)
        return True

    def _repeat_limits(self, now: float) -> tuple[int, float]:
        """How many identical pure-decode steps the plan stays valid for."""
        policy, changes = self.policy, self._changes
        paused = len(self.running) > self.cohort.size
        if not paused and not self.waiting:
            return UNBOUNDED
        if changes == "never" or (changes == "with_progress" and not self._preemptive):
            return UNBOUNDED  # the same request heads the queue, and nobody takes a slot
        if not hasattr(policy, "repeat_limits"):
            return 1, float("inf")
        return policy.repeat_limits(self.ranked_running(), self.ranked_waiting(now), now)

    def _enqueue(self, request: Request) -> None:
        key = None
        if self._queue is not None:
            key = self.policy.rank_key(request, self._now)
            self._queue.add(key, request)
        self.waiting[request] = key
        self._waiting_tokens += request.num_pending_tokens
        self._load = None

    def _dequeue(self, request: Request) -> None:
        key = self.waiting.pop(request)
        if self._queue is not None:
            self._queue.remove(key, request)  # type: ignore[arg-type]  # ranked: key is a tuple
        self._waiting_tokens -= request.num_pending_tokens
        self._load = None

    def _add_running(self, request: Request) -> None:
        self.running[request] = None
        self._load = None
        if self._ranked is not None:
            self._ranked.add(self.policy.rank_key(request, self._now), request)

    def _drop_running(self, request: Request) -> None:
        if request.in_cohort:
            self.kv.leave_cohort(request)
        del self.running[request]
        self._running_tokens -= request.num_prompt_tokens
        self._load = None
        if self._ranked is not None:  # within a plan: keys as ranked at its time
            self._ranked.remove(self.policy.rank_key(request, self._now), request)
