"""Decode cohort: the running requests that each gain exactly one token per cohort step.

Continuous batching spends most steps decoding the same set of requests. Instead of touching every
request every step, the cohort keeps one step counter (`epoch`) and what its members read of the
steps' end times; a member's progress is `tokens at join + (epoch - epoch at join)`. Finishes come
off a heap keyed by the epoch at which each member emits its last token, and KV block growth is
counted from a histogram of members' positions within a block. A step, or k identical steps, costs
O(1) numpy calls (and one pass over the k end times).

Members join only between `advance` calls, so a member's steps are whole calls: each call keeps its
first step's end and its gaps as suffix maxima (the gap before its first step, the widest after),
so a member's longest gap is a bisect away.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from typing import TYPE_CHECKING

import numpy as np

from servesim.core.request import Request

if TYPE_CHECKING:  # a type only: metrics sit above core
    from servesim.metrics.gaps import TokenGaps


class DecodeCohort:
    def __init__(self, block_size: int, window: int = 0):
        self.block_size = block_size
        self.window = window
        """The model's attention window (0: none): attention reads at most this many tokens."""
        self._bases: list[int] = []  # sorted (computed at join - epoch at join), with a window
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None
        self.epoch = 0
        self._last_end = math.nan  # the last step's end (`last_end`), as a Python float
        self._call_epochs: list[int] = []
        self._call_first_ends: list[float] = []
        """Each `advance` call's first epoch (where members join) and its first step's end."""
        self._gap_epochs: list[int] = []
        self._gap_maxima: list[float] = []
        """Gaps between step ends, each a suffix maximum: the largest gap at or after
        `_gap_epochs[i]` (the epoch of the step it ends, or of a call's second step, standing for
        the call's gaps inside it) is `_gap_maxima[i]`, which decrease. Entries older than every
        member's join are dropped as they pile up, so memory is bounded by the longest
        membership, not by the run's length."""
        self._kept_calls = 0  # calls kept at the last drop
        self._joined_at: dict[Request, int] = {}
        self._members: dict[Request, int] = {}
        self._heap: list[tuple[int, int, int, Request]] = []
        self._longest: list[tuple[int, int, Request]] = []
        """Max-heap (negated) of members' (computed at join - epoch at join), invalid entries left
        in place until they surface: the longest context is its top + epoch."""
        self._serial = 0
        self._phase = [0] * block_size
        """Members per position of their next token within a block (a list: read a few at a time)."""
        self._ctx_base_sum = 0  # sum over members of (computed at join - epoch at join)
        self.gaps: TokenGaps | None = None
        """Optional `metrics.gaps.TokenGaps`: each step's inter-token gaps, weighted by members."""
        self._class_counts: dict[str, int] = {}
        self._joiners: dict[Request, float] = {}

    # -- queries -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, request: Request) -> bool:
        return request in self._members

    def __iter__(self):
        return iter(list(self._members))

    @property
    def size(self) -> int:
        return len(self._members)

    def context_sum(self, steps_ahead: int = 0) -> int:
        """Sum of members' KV tokens (computed) at `epoch + steps_ahead`."""
        return self._ctx_base_sum + len(self._members) * (self.epoch + steps_ahead)

    def attended_context_sums(self, steps: int) -> np.ndarray:
        """Sum over members of the tokens their attention reads, for the next `steps` steps
        (their whole context, or at most the window)."""
        n, epoch = len(self._members), self.epoch
        ahead = np.arange(steps, dtype=np.float64)
        if not self.window:
            return self._ctx_base_sum + n * (epoch + ahead)
        if self._sorted is None:
            bases = np.array(self._bases, dtype=np.float64)
            self._sorted = bases, np.concatenate(([0.0], np.cumsum(bases)))
        bases, prefix = self._sorted
        # members whose context reached the window read the window; the others their context
        below = np.searchsorted(bases, self.window - epoch - ahead, side="left")
        return prefix[below] + below * (epoch + ahead) + (n - below) * self.window

    def max_context(self, steps_ahead: int = 0) -> int:
        """Longest member's KV tokens (computed) at `epoch + steps_ahead`; 0 if empty."""
        heap = self._longest
        while heap and self._members.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)
        return -heap[0][0] + self.epoch + steps_ahead if heap else 0

    def max_gap_since(self, epoch0: int, last_time_at_join: float) -> float:
        """Longest gap between tokens of a member that joined at `epoch0` (an `advance` call's
        start) with its last token at `last_time_at_join`."""
        if self.epoch == epoch0:
            return 0.0
        first = self._call_first_ends[bisect.bisect_left(self._call_epochs, epoch0)]
        gap = first - last_time_at_join if not math.isnan(last_time_at_join) else 0.0
        later = bisect.bisect_right(self._gap_epochs, epoch0)  # the first gap after its first step
        if later < len(self._gap_maxima):
            gap = max(gap, self._gap_maxima[later])
        return gap

    def steps_to_next_finish(self) -> int:
        """Cohort steps until the first member emits its last token (>= 1); 0 if empty."""
        heap = self._heap
        while heap and not self._valid(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] - self.epoch if heap else 0

    def blocks_needed(self, first_step: int, last_step: int) -> int:
        """New KV blocks members need for the steps with offsets [first_step, last_step)."""
        span = last_step - first_step
        if span <= 0 or not self._members:
            return 0
        bs = self.block_size
        if span == 1 and bs > 1:  # one step, the common case: those at a block's last slot
            return self._phase[-(self.epoch + first_step) % bs]
        cycles, rest = span // bs, span % bs  # (not divmod: compiled, a generic call)
        need = cycles * len(self._members)
        if rest:
            need += sum(self._cycle(self.epoch + first_step + cycles * bs)[:rest])
        return need

    def _cycle(self, offset: int) -> list[int]:
        """New blocks of each of the `block_size` steps from offset `offset` on: members at a
        block's last slot in it, `_phase[(-o) % block_size]`, indices that run down from
        (-offset) % block_size and wrap around once (the steps after repeat these)."""
        top, phase = (-offset) % self.block_size, self._phase
        return phase[top::-1] + phase[:top:-1]

    def block_needs(self, first_step: int, steps: int) -> list[int]:
        """New KV blocks each of the steps with offsets [first_step, first_step + steps) needs
        (those at a block's last slot: each step's `blocks_needed(o, o + 1)`)."""
        if not self._members:
            return [0] * steps
        cycle = self._cycle(self.epoch + first_step)
        return cycle * (steps // self.block_size) + cycle[: steps % self.block_size]

    def max_steps_for_blocks(self, first_step: int, free_blocks: int, limit: int) -> int:
        """Largest k <= limit such that steps [first_step, first_step + k) need <= free_blocks."""
        n = len(self._members)
        if n == 0:
            return limit
        bs = self.block_size
        cycles = min(free_blocks // n, limit // bs + 1)
        k = cycles * bs
        if k >= limit:
            return limit
        taken = list(itertools.accumulate(self._cycle(self.epoch + first_step + k)))
        k += bisect.bisect_right(taken, free_blocks - cycles * n)
        return min(k, limit)

    # -- membership ----------------------------------------------------------------------------
    def join(self, request: Request) -> None:
        """Add a running request that has emitted a token and has exactly one pending token.

        Between steps only, with no step of the cohort's KV reserved ahead (the KV manager's
        `join_cohort` checks that)."""
        computed, generated = request.attach(self)
        assert generated and computed == request.num_prompt_tokens + generated - 1
        base = computed - self.epoch
        self._serial += 1
        self._members[request] = self._serial
        self._joined_at[request] = self.epoch
        self._ctx_base_sum += base
        self._phase[base % self.block_size] += 1
        if self.window:
            bisect.insort(self._bases, base)
            self._sorted = None
        longest = self._longest
        if len(longest) > 2 * len(self._members) + 64:  # departed members' entries sink: drop them
            longest[:] = [e for e in longest if self._members.get(e[2]) == e[1]]
            heapq.heapify(longest)
        heapq.heappush(longest, (-base, self._serial, request))
        finish_epoch = self.epoch + request.num_output_tokens - generated
        heapq.heappush(self._heap, (finish_epoch, request.request_id, self._serial, request))
        if self.gaps is not None:
            cls = request.class_name
            self._class_counts[cls] = self._class_counts.get(cls, 0) + 1
            self._joiners[request] = request.last_token_time

    def leave(self, request: Request) -> None:
        """Remove a member, writing its lazily tracked progress back onto the request."""
        del self._members[request]
        del self._joined_at[request]
        base = request.num_computed_tokens - self.epoch
        self._ctx_base_sum -= base
        self._phase[base % self.block_size] -= 1
        if self.window:
            del self._bases[bisect.bisect_left(self._bases, base)]
            self._sorted = None
        steps = request.detach()
        if self.gaps is not None:
            self._class_counts[request.class_name] -= 1
            if not steps:
                self._joiners.pop(request, None)

    # -- time ----------------------------------------------------------------------------------
    def advance(self, end_times: np.ndarray | list[float]) -> list[Request]:
        """Run len(end_times) cohort steps; return members that finished, in finish order. Their
        token gaps go to `gaps` as one run (`TokenGaps.cohort_steps`)."""
        if self.gaps is not None:
            self.gaps.cohort_steps(self._last_end, end_times, self._class_counts, self._joiners)
            self._joiners.clear()
        self._note_gaps(end_times if isinstance(end_times, list) else end_times.tolist())
        self.epoch += len(end_times)
        finished = []
        heap = self._heap
        while heap and heap[0][0] <= self.epoch:
            entry = heapq.heappop(heap)
            if not self._valid(entry):
                continue
            request = entry[3]
            self.leave(request)
            request.finish_time = request.last_token_time
            finished.append(request)
        return finished

    def last_end(self) -> float:
        """End time of the cohort's last step (NaN before its first)."""
        return self._last_end

    def _note_gaps(self, ends: list[float]) -> None:
        """Keep what members will read of the steps ending at `ends`, which start at `epoch`: the
        first end, the gap from the last call's last end, and the largest gap among `ends`."""
        start = self.epoch
        if len(self._call_epochs) > 2 * self._kept_calls + 64:
            self._drop_unread_gaps()
        first = float(ends[0])
        self._call_epochs.append(start)
        self._call_first_ends.append(first)
        if not math.isnan(self._last_end):
            self._push_gap(start, first - self._last_end)
        if len(ends) > 1:
            self._push_gap(start + 1, _widest_gap(ends))
        self._last_end = float(ends[-1])

    def _push_gap(self, epoch: int, gap: float) -> None:
        """A gap at `epoch` (after every gap kept): those kept before it that are no larger are no
        longer any member's largest."""
        epochs, maxima = self._gap_epochs, self._gap_maxima
        while maxima and maxima[-1] <= gap:
            maxima.pop()
            epochs.pop()
        epochs.append(epoch)
        maxima.append(gap)

    def _drop_unread_gaps(self) -> None:
        """Drop what no member can read: calls before the oldest member's join, and gaps at or
        before it (a member reads the gaps after its first step; later joiners, later ones)."""
        oldest = min(self._joined_at.values(), default=self.epoch)
        calls = bisect.bisect_left(self._call_epochs, oldest)
        del self._call_epochs[:calls]
        del self._call_first_ends[:calls]
        gaps = bisect.bisect_right(self._gap_epochs, oldest)
        del self._gap_epochs[:gaps]
        del self._gap_maxima[:gaps]
        self._kept_calls = len(self._call_epochs)

    def _valid(self, entry) -> bool:
        return self._members.get(entry[3]) == entry[2]


def _widest_gap(ends: list[float]) -> float:
    """Largest difference between consecutive `ends` (at least two). (A typed loop: compiled, it
    reads the ends, NumPy scalars as runs give them, as plain doubles; NumPy calls cost more.)"""
    prev = ends[1]
    widest = prev - ends[0]
    for i in range(2, len(ends)):
        end = ends[i]  # (each end read once)
        gap = end - prev
        if gap > widest:
            widest = gap
        prev = end
    return float(widest)
