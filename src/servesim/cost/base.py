"""The cost-model boundary: what the engine asks of a model of step time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(slots=True)
class StepShape:
    """What one iteration computes, in the aggregates a cost model needs.

    `prefill_chunks` lists (chunk tokens, tokens already cached before the chunk) per prompt chunk;
    decodes are summarised by their count, the sum of their cached context lengths and the longest
    one (kernels without KV splitting wait for the longest sequence); with a sliding-window model,
    the contexts attention reads (each at most the window).
    `num_logit_tokens` is how many tokens need the LM head (decodes plus chunks that end a prompt).
    """

    prefill_chunks: list[tuple[int, int]] = field(default_factory=list)
    num_decodes: int = 0
    decode_ctx_sum: int = 0
    num_logit_tokens: int = -1
    max_decode_ctx: int = -1
    """Longest cached context among the decodes; -1: unknown, taken as the mean."""

    def __post_init__(self):
        if self.num_logit_tokens < 0:
            self.num_logit_tokens = self.num_decodes + len(self.prefill_chunks)
        if self.max_decode_ctx < 0 and self.num_decodes:
            self.max_decode_ctx = -(-self.decode_ctx_sum // self.num_decodes)

    @property
    def kv_tokens(self) -> int:
        """KV tokens the step's attention reads: every sequence's cached context and new tokens."""
        kv = self.decode_ctx_sum + self.num_decodes
        for c, p in self.prefill_chunks:  # (a loop: a generator costs more for the usual 1-2 chunks)
            kv += c + p
        return kv

    @property
    def num_tokens(self) -> int:
        tokens = self.num_decodes
        for c, _ in self.prefill_chunks:
            tokens += c
        return tokens


@dataclass(slots=True)
class StepCost:
    """A priced step: total seconds and where they went (seconds per operator group / bound)."""

    total_s: float
    by_op: dict[str, float] = field(default_factory=dict)
    compute_s: float = 0.0
    memory_s: float = 0.0
    comm_s: float = 0.0
    overhead_s: float = 0.0
    hidden_compute_s: float = 0.0
    """FLOP seconds of the memory-bound operators, hidden under their memory time at full clock: a
    lower SM clock brings them back once it falls below their ridge (the power model's clock solve)."""


@runtime_checkable
class CostModel(Protocol):
    """Prices engine steps. Must be cheap: called every step (microseconds, not milliseconds)."""

    def step_time(self, shape: StepShape) -> float:
        """Seconds for one step (> 0)."""

    def decode_step_times(
        self, num_decodes: int, ctx_sums: np.ndarray, max_ctxs: np.ndarray | None = None
    ) -> np.ndarray:
        """Seconds for consecutive pure-decode steps of `num_decodes` requests whose context sums
        (and longest contexts, if given) are `ctx_sums` (`max_ctxs`), one entry per step; equal to
        `step_time` of each, vectorised."""

    def breakdown(self, shape: StepShape) -> StepCost:
        """The same price with its decomposition, for notebooks and plots."""
