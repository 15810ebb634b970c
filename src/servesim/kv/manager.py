"""KV cache manager: block accounting for requests and for the decode cohort.

Blocks a request holds are counted, not named: with no prefix caching, which physical block a
token lives in never changes the simulation. Invariant (KV block conservation): free blocks plus
blocks held by requests equals the pool size, after every step.
"""

from __future__ import annotations

from servesim.core.cohort import DecodeCohort
from servesim.core.request import Request


class KVCacheManager:
    def __init__(self, num_blocks: int, block_size: int, watermark: float = 0.01):
        if num_blocks < 1:
            raise ValueError("KV cache needs at least one block")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.num_free_blocks = num_blocks
        self.watermark_blocks = int(watermark * num_blocks)
        self.peak_used_blocks = 0

    # -- queries ------------------------------------------------------------------------------
    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self.num_free_blocks

    @property
    def usage(self) -> float:
        return self.num_used_blocks / self.num_blocks

    @property
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def fits_ever(self, request: Request) -> bool:
        """Could this request run to completion alone on an empty cache?"""
        return self.blocks_for(request.max_kv_tokens) <= self.num_blocks

    def blocks_to_grow(self, request: Request, num_tokens: int) -> int:
        return max(0, self.blocks_for(request.num_computed_tokens + num_tokens) - request.num_blocks)

    # -- allocation (check, then act: a refusal changes nothing) -------------------------------
    def allocate(self, request: Request, num_tokens: int, keep_watermark: bool = False) -> bool:
        """Hold blocks for `num_tokens` more tokens of a request outside the cohort."""
        need = self.blocks_to_grow(request, num_tokens)
        reserve = self.watermark_blocks if keep_watermark else 0
        if need > self.num_free_blocks - reserve:
            return False
        self._take(need)
        request.num_blocks += need
        return True

    def free(self, request: Request) -> None:
        """Release all blocks of a request outside the cohort."""
        assert not request.in_cohort
        self.num_free_blocks += request.num_blocks
        request.num_blocks = 0

    def reserve_cohort(self, cohort: DecodeCohort, steps: int) -> bool:
        """Hold blocks for the cohort's next `steps` steps (those already held count)."""
        need = cohort.blocks_needed(cohort.reserved_steps, steps)
        if need > self.num_free_blocks:
            return False
        self._take(need)
        cohort.reserved_steps = max(cohort.reserved_steps, steps)
        return True

    def max_cohort_steps(self, cohort: DecodeCohort, limit: int) -> int:
        """Most cohort steps (<= limit) whose blocks fit in what is free plus what is reserved."""
        first = cohort.reserved_steps
        if limit <= first:
            return limit
        return first + cohort.max_steps_for_blocks(first, self.num_free_blocks, limit - first)

    def _take(self, n: int) -> None:
        self.num_free_blocks -= n
        used = self.num_blocks - self.num_free_blocks
        if used > self.peak_used_blocks:
            self.peak_used_blocks = used
