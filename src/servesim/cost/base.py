"""The cost-model boundary: what the engine asks of a model of step time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from servesim.cost.shape import StepShape

__all__ = ["CostModel", "StepCost", "StepShape"]


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
