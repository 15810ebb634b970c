"""Preemptive ranked batching: the machinery that `srtf`, `edf` and `priority` share.

A policy only ranks requests (`rank_key`, smaller first). Each step:

1. Admission (a prefill step, like vLLM's): walk the ranking; requests holding KV take a batch slot
   each (`max_num_seqs` slots); a waiting request that still finds a slot is admitted with its whole
   prompt (token budget `max_num_batched_tokens`). If memory is short it evicts lower-ranked KV
   holders (`preempt_to_admit`), and only if evicting them is enough. The walk stops at the first
   request that cannot start.
2. If nobody was admitted, a decode step: the best `max_num_seqs` KV holders get a token. Members
   of the decode cohort that fall below the cut leave it and are *paused*: they keep their KV and
   resume, with a single explicit token, when they rank within the cut again. When the cohort's
   next blocks do not fit, the lowest-ranked holders are preempted (paused ones first).

A pure decode plan repeats while the ranking between cohort members and everyone else holds, so a
policy whose members only move up (SRTF: remaining work shrinks) repeats until an event; others
bound the run with `repeat_limits`.

Cost per plan: sorting the KV holders (at most the batch plus the paused ones); the waiting queue
stays sorted between plans when the policy's keys do not change while a request waits.
"""

from __future__ import annotations

import bisect
import heapq
import math

from servesim.core.request import Request
from servesim.core.step import StepPlan
from servesim.schedulers.base import BaseScheduler, SchedulerParams

Ranked = list[tuple[tuple, Request]]
"""(key, request) pairs in rank order, best first."""


class RankedParams(SchedulerParams):
    preempt_to_admit: bool = True
    """Evict lower-ranked requests' KV to start a higher-ranked waiting one (else it waits for
    memory to free up; lower-ranked ones still lose their batch slot)."""


class RankedScheduler(BaseScheduler):
    Params = RankedParams

    static_keys = True
    """A request's key does not change while it waits (not generating): the queue stays sorted."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.waiting: dict[Request, None] = {}  # the ranking, not the order, decides who starts
        self._queue: Ranked = []  # the waiting requests, sorted, when keys are static
        self._now = 0.0

    # -- what a policy defines -----------------------------------------------------------------
    def rank_key(self, request: Request, now: float) -> tuple:
        """Sort key, smaller runs first; must end with `request_id` so ties never depend on order."""
        raise NotImplementedError

    def repeat_limits(self, holders: Ranked, queue: Ranked, now: float) -> tuple[int, float]:
        """(max_repeats, replan_time) of a pure decode plan: how long the ranking between cohort
        members and the others (paused holders, the queue) is sure to hold. Default: members never
        fall behind the others."""
        return 1 << 30, math.inf

    # -- protocol -------------------------------------------------------------------------------
    def rejection_reason(self, request: Request) -> str | None:
        if request.num_prompt_tokens > self.limits.max_num_batched_tokens:  # whole prompts, as fcfs
            return "prompt_exceeds_max_num_batched_tokens"
        return super().rejection_reason(request)

    def enqueue(self, request: Request, front: bool = False) -> None:
        self.waiting[request] = None
        self._waiting_tokens += request.num_pending_tokens
        if self.static_keys:
            bisect.insort(self._queue, (self.rank_key(request, self._now), request), key=by_key)

    def schedule(self, now: float) -> StepPlan:
        self._now = now
        plan = StepPlan()
        key = self.rank_key
        holders = sorted(((key(r, now), r) for r in self.running), key=by_key)
        queue = self._queue if self.static_keys else self._sorted_waiting(now)
        if not self.admit_ranked(holders, queue, plan):
            self.decode_ranked(holders, plan)
        if plan.decode_cohort and not plan.tokens and not plan.preempted:
            plan.repeatable = True
            queue = self._queue if self.static_keys else self._sorted_waiting(now)
            plan.max_repeats, plan.replan_time = self.repeat_limits(holders, queue, now)
        return plan

    def pick_victim(self) -> Request:
        key = self.rank_key
        return max(self.running, key=lambda r: key(r, self._now))

    # -- the two kinds of step ---------------------------------------------------------------------
    def admit_ranked(self, holders: Ranked, queue: Ranked, plan: StepPlan) -> bool:
        """Admit waiting requests that rank within the batch; True if anyone was admitted."""
        slots = self.limits.max_num_seqs
        budget = self.limits.max_num_batched_tokens
        running = self.running
        evict = getattr(self.params, "preempt_to_admit", True)
        started = []
        for key, request in heapq.merge(holders, queue, key=by_key):
            if slots <= 0:
                break
            slots -= 1
            if request in running:
                continue
            need = request.num_pending_tokens
            # The step's first request may exceed the budget: only a preempted request's prompt
            # plus recomputed output can (prompts alone are checked on arrival).
            if need > budget and plan.tokens:
                break
            keep_watermark = bool(running or started)  # as vLLM: unless the cache is idle
            if not self.make_room(request, need, key, holders, plan, keep_watermark, evict):
                break
            started.append((key, request))
            plan.tokens[request] = need
            budget -= need
            if plan.preempted:
                break  # victims rank lower; they must not come straight back in this step
        for key, request in started:  # off the queue only now: the merge above iterates it
            self._dequeue(key, request)
            self.admit(request, plan=plan)
        return bool(started)

    def decode_ranked(self, holders: Ranked, plan: StepPlan) -> None:
        running, cohort = self.running, self.cohort
        cut = self.limits.max_num_seqs
        for _, request in holders[cut:]:
            if request.in_cohort:
                cohort.leave(request)  # paused: keeps its KV
        for key, request in holders[:cut]:
            if request.in_cohort or request not in running:
                continue
            if self.make_room(request, 1, key, holders, plan, False, True):
                plan.tokens[request] = 1  # resumes; the engine puts it back into the cohort
        lowest = len(holders)
        while cohort.size and not self.kv.reserve_cohort(cohort, 1):
            lowest -= 1
            if holders[lowest][1] in running:
                self.preempt(holders[lowest][1], plan)
        plan.decode_cohort = cohort.size > 0

    # -- memory ------------------------------------------------------------------------------------
    def make_room(
        self,
        request: Request,
        num_tokens: int,
        key: tuple,
        holders: Ranked,
        plan: StepPlan,
        keep_watermark: bool,
        evict: bool,
    ) -> bool:
        """Hold blocks for `num_tokens` more tokens of `request` (ranked by `key`), preempting
        the lowest-ranked holders below it if, and only if, that frees enough. Call only while
        nothing of the cohort is reserved."""
        kv = self.kv
        if kv.allocate(request, num_tokens, keep_watermark=keep_watermark):
            return True
        if not evict:
            return False
        short = kv.blocks_to_grow(request, num_tokens) - kv.num_free_blocks
        if keep_watermark:
            short += kv.watermark_blocks
        victims, freed = [], 0
        for victim_key, victim in reversed(holders):
            if freed >= short or victim_key <= key:
                break
            if victim in self.running:
                victims.append(victim)
                freed += self.held_blocks(victim)
        if freed < short:
            return False
        for victim in victims:
            self.preempt(victim, plan)
        return kv.allocate(request, num_tokens, keep_watermark=keep_watermark)

    def held_blocks(self, request: Request) -> int:
        """KV blocks a running request holds (a cohort member's count is derived, between steps)."""
        if request.in_cohort:
            return self.kv.blocks_for(request.num_computed_tokens)
        return request.num_blocks

    # -- the queue ---------------------------------------------------------------------------------
    def _dequeue(self, key: tuple, request: Request) -> None:
        del self.waiting[request]
        if self.static_keys:
            i = bisect.bisect_left(self._queue, key, key=by_key)
            assert self._queue[i][1] is request
            del self._queue[i]

    def _sorted_waiting(self, now: float) -> Ranked:
        key = self.rank_key
        return sorted(((key(r, now), r) for r in self.waiting), key=by_key)


def by_key(pair: tuple[tuple, Request]) -> tuple:
    return pair[0]
