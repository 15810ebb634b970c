"""The request: what was asked for, and how far the simulation has taken it.

Progress is counted in tokens. A request knows `num_prompt_tokens + num_generated_tokens` tokens;
`num_computed_tokens` of them sit in the KV cache. A step gives it some tokens to compute; when the
computed count catches up with the known count, the model emits one new output token. Prefill,
chunked prefill, decode and recompute after preemption are all this one rule.

While a request sits in a `DecodeCohort` (it gains exactly one token per cohort step), its progress
fields are derived lazily from the cohort's step counter, so a step costs O(1), not O(batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # a type only (the cohort imports this module); not a protocol: compiled, a
    # member's progress reads its cohort's step counter as a struct field, not by attribute lookup
    from servesim.core.cohort import DecodeCohort


class RequestStatus(IntEnum):
    """Lifecycle, ordered: a request only moves forward, except that preemption sends RUNNING back
    to WAITING (recompute) or SWAPPED (swap), from where it is admitted to RUNNING again, and an
    instance failure sends a request back to WAITING on another instance (a retry)."""

    WAITING = 0
    RUNNING = 1
    SWAPPED = 2
    FINISHED = 3
    REJECTED = 4
    FAILED = 5
    """Lost to an instance failure (elastic clusters), with a reason."""


_WAITING: Final = RequestStatus.WAITING
"""(For `Request.__init__`: in pure Python an enum member's lookup costs ~900 instructions.)"""


@dataclass(eq=False, slots=True, init=False)  # (`__init__` written out: the compiled core compiles it)
class Request:
    """One inference request. Compared and hashed by identity; ordered by callers via `request_id`."""

    request_id: int
    arrival_time: float
    num_prompt_tokens: int
    num_output_tokens: int
    class_name: str = "default"
    session_id: int = -1
    prefix_hashes: tuple = ()
    """Hashes of the prompt's leading blocks (trace block size), for prefix caching and routing."""
    priority: int = 0
    ttft_slo: float = math.inf
    tpot_slo: float = math.inf
    program_id: int = -1
    """The agentic program this call belongs to (-1: a plain request)."""
    program_parents: tuple = ()
    """Agentic call: request ids of the calls it waits for (issued when they have finished)."""
    program_wait_s: float = 0.0
    """Agentic call: tool time between its parents' end and its arrival, seconds."""
    program_tool_s: float = math.nan
    """Agentic call: the tool time before the program's next call (NaN: the program ends here)."""
    predicted_output_tokens: float = math.nan
    """Set by a length predictor; policies read this, never `num_output_tokens`."""

    status: RequestStatus = RequestStatus.WAITING
    instance: int = -1
    first_scheduled_time: float = math.nan
    """Start of the first step that computed any of its tokens (end of queueing)."""
    first_token_time: float = math.nan
    finish_time: float = math.nan
    num_preemptions: int = 0
    num_cached_tokens: int = 0
    """Prompt tokens served from the prefix cache when the request was first admitted."""
    rejected_reason: str = ""
    handoff_time: float = math.nan
    """Disaggregation: when the KV left the prefill instance."""
    prefill_instance: int = -1
    """Disaggregation: the instance that computed the prompt (`instance` is then the decode one)."""
    num_retries: int = 0
    """Times an instance failure sent it to another instance (its KV lost)."""
    num_migrations: int = 0
    """Times it moved to another instance with its KV (rebalancing)."""

    _computed: int = 0
    _generated: int = 0
    _last_token_time: float = math.nan
    _max_token_gap: float = 0.0
    _cohort: DecodeCohort | None = field(default=None, repr=False)
    _epoch0: int = 0

    def __init__(
        self, request_id: int, arrival_time: float, num_prompt_tokens: int, num_output_tokens: int,
        class_name: str = "default", session_id: int = -1, prefix_hashes: tuple = (), priority: int = 0,
        ttft_slo: float = math.inf, tpot_slo: float = math.inf, program_id: int = -1,
        program_parents: tuple = (), program_wait_s: float = 0.0, program_tool_s: float = math.nan,
        predicted_output_tokens: float = math.nan,
    ):
        # A dataclass's generated `__init__` is Python code that mypyc does not compile (~3 us a
        # request). What was asked for is given; the progress starts as the field defaults say.
        self.request_id = request_id
        self.arrival_time = arrival_time
        self.num_prompt_tokens = num_prompt_tokens
        self.num_output_tokens = num_output_tokens
        self.class_name = class_name
        self.session_id = session_id
        self.prefix_hashes = prefix_hashes
        self.priority = priority
        self.ttft_slo = ttft_slo
        self.tpot_slo = tpot_slo
        self.program_id = program_id
        self.program_parents = program_parents
        self.program_wait_s = program_wait_s
        self.program_tool_s = program_tool_s
        self.predicted_output_tokens = predicted_output_tokens
        self.status = _WAITING
        self.instance = -1
        self.first_scheduled_time = math.nan
        self.first_token_time = math.nan
        self.finish_time = math.nan
        self.num_preemptions = 0
        self.num_cached_tokens = 0
        self.rejected_reason = ""
        self.handoff_time = math.nan
        self.prefill_instance = -1
        self.num_retries = 0
        self.num_migrations = 0
        self._computed = 0
        self._generated = 0
        self._last_token_time = math.nan
        self._max_token_gap = 0.0
        self._cohort = None
        self._epoch0 = 0

    # -- progress, lazy while in a cohort --------------------------------------------------
    @property
    def num_computed_tokens(self) -> int:
        c = self._cohort
        return self._computed if c is None else self._computed + c.epoch - self._epoch0

    @property
    def num_generated_tokens(self) -> int:
        c = self._cohort
        return self._generated if c is None else self._generated + c.epoch - self._epoch0

    @property
    def last_token_time(self) -> float:
        c = self._cohort
        if c is None or c.epoch == self._epoch0:
            return self._last_token_time
        return c.last_end()

    @property
    def max_token_gap(self) -> float:
        c = self._cohort
        if c is None:
            return self._max_token_gap
        return max(self._max_token_gap, c.max_gap_since(self._epoch0, self._last_token_time))

    @property
    def num_known_tokens(self) -> int:
        return self.num_prompt_tokens + self.num_generated_tokens

    @property
    def num_pending_tokens(self) -> int:
        """Tokens to compute before the next output token can be emitted. (A cohort's steps add
        as many generated tokens as computed ones: the stored counts' difference is the pending.)"""
        return self.num_prompt_tokens + self._generated - self._computed

    @property
    def num_remaining_output_tokens(self) -> int:
        return self.num_output_tokens - self.num_generated_tokens

    @property
    def in_cohort(self) -> bool:
        return self._cohort is not None

    @property
    def max_kv_tokens(self) -> int:
        """KV tokens held at the end: every token except the last output, which is never fed back."""
        return self.num_prompt_tokens + self.num_output_tokens - 1

    # -- mutation (only outside a cohort) --------------------------------------------------
    def advance(self, num_tokens: int, end_time: float) -> bool:
        """Compute `num_tokens` tokens in a step ending at `end_time`; True if the request finished."""
        assert self._cohort is None, "advance a cohort member through its cohort"
        self._computed += num_tokens
        if self._computed < self.num_prompt_tokens + self._generated:
            return False
        self._generated += 1
        if self._generated == 1:
            self.first_token_time = end_time
        else:
            gap = end_time - self._last_token_time
            if gap > self._max_token_gap:
                self._max_token_gap = gap
        self._last_token_time = end_time
        if self._generated >= self.num_output_tokens:
            self.finish_time = end_time
            return True
        return False

    def skip_cached_prefix(self, num_tokens: int) -> None:
        """A prefix cache hit: these leading prompt tokens are already in the KV cache.

        Only the first admission's hit is counted in `num_cached_tokens`: after a recompute
        preemption the request finds its own blocks again, which saves time but is no new hit.
        """
        assert self._cohort is None and self._computed == 0
        self._computed = num_tokens
        if not self.num_preemptions:
            self.num_cached_tokens += num_tokens

    def deliver_first_token(self, time: float) -> None:
        """Disaggregation: the first token reaches the user with the KV, at `time`."""
        assert self._generated == 1 and self._cohort is None
        self.first_token_time = time
        self._last_token_time = time

    def restart_elsewhere(self) -> None:
        """Its instance failed: the KV is gone; the tokens already delivered stay delivered."""
        if self._cohort is not None:
            self._cohort.leave(self)
        self.reset_for_recompute()
        self.status = RequestStatus.WAITING
        self.num_retries += 1

    def reset_for_recompute(self) -> None:
        """Preempted by recomputation: the KV is gone; prompt and generated tokens run again."""
        assert self._cohort is None
        self._computed = 0

    # -- cohort membership (called by DecodeCohort only) ---------------------------------------
    def attach(self, clock: DecodeCohort) -> tuple[int, int]:
        """Start gaining one token per cohort step: progress is read from `clock` from now on.
        Returns (computed, generated) tokens at joining."""
        assert self._cohort is None
        self._cohort = clock
        self._epoch0 = clock.epoch
        return self._computed, self._generated

    def detach(self) -> int:
        """Leave the cohort, writing the lazily tracked progress back; return the steps taken."""
        clock = self._cohort
        assert clock is not None  # only a member detaches
        steps = clock.epoch - self._epoch0
        if steps:
            self._max_token_gap = max(
                self._max_token_gap, clock.max_gap_since(self._epoch0, self._last_token_time)
            )
            self._last_token_time = clock.last_end()
        self._computed += steps
        self._generated += steps
        self._cohort = None
        return steps
