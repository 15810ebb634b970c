"""KV cache manager: block accounting for requests and for the decode cohort.

Blocks a request holds are counted, not named: with no prefix caching, which physical block a
token lives in never changes the simulation. Invariant (KV block conservation): free blocks plus
blocks held by requests equals the pool size, after every step.

With prefix caching, the full prompt blocks a request has computed are also named, in segments
(see `block_pool`): a request's `num_blocks` then counts the cached blocks it shares too, and it
references their segments (`held`). Cached blocks no request references stay cached but count as
free (`num_free_blocks` is what can be had: unnamed free blocks plus evictable cached ones);
taking more blocks than are unnamed evicts the least recently released segments. Conservation
then reads: unnamed free + cached + blocks requests hold privately (`num_blocks` minus their
shared blocks) + detached blocks == pool size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from servesim.core.cohort import DecodeCohort
from servesim.core.request import Request
from servesim.kv.block_pool import PrefixBlockPool, PromptSegments


@dataclass(frozen=True)
class DetachedKV:
    """Blocks a request left behind when it moved on (disaggregation: until its KV is sent)."""

    num_private_blocks: int
    cached_keys: tuple


@dataclass(slots=True)
class SharedBlocks:
    """The cached segments a request references, in prompt order, and their blocks."""

    keys: list = field(default_factory=list)
    num_blocks: int = 0


class KVCacheManager:
    def __init__(
        self,
        num_blocks: int,
        block_size: int,
        watermark: float = 0.01,
        prefix_caching: bool = False,
        hash_block_size: int = 0,
    ):
        if num_blocks < 1:
            raise ValueError("KV cache needs at least one block")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.num_free_blocks = num_blocks
        self.watermark_blocks = int(watermark * num_blocks)
        self.peak_used_blocks = 0
        self.prefix: PrefixBlockPool | None = PrefixBlockPool() if prefix_caching else None
        """The cached blocks; None without prefix caching."""
        self.hash_block_size = hash_block_size
        self.held: dict[Request, SharedBlocks] = {}
        """Per request holding cached blocks, the segments it references."""
        self._segments: dict[Request, PromptSegments] = {}  # memo while a request is here
        self.num_detached_blocks = 0
        """Private blocks detached from requests and not yet freed (KV in transfer)."""

    # -- queries ------------------------------------------------------------------------------
    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - self.num_free_blocks

    @property
    def num_cached_blocks(self) -> int:
        """Named blocks, referenced or not (0 without prefix caching)."""
        return self.prefix.num_blocks if self.prefix is not None else 0

    @property
    def num_unnamed_free_blocks(self) -> int:
        """Free blocks holding nothing worth keeping (free minus evictable cached)."""
        evictable = self.prefix.num_evictable_blocks if self.prefix is not None else 0
        return self.num_free_blocks - evictable

    def num_shared_blocks(self, request: Request) -> int:
        """Blocks of the request that are cached segments (shared, not its own)."""
        held = self.held.get(request)
        return held.num_blocks if held is not None else 0

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

    # -- prefix cache ---------------------------------------------------------------------------
    def segments(self, request: Request) -> PromptSegments | None:
        """The request's cacheable prompt segments; None when it cannot use the cache."""
        if self.prefix is None or not request.prefix_hashes or self.hash_block_size <= 0:
            return None
        segs = self._segments.get(request)
        if segs is None:
            segs = self._segments[request] = PromptSegments(
                request.prefix_hashes, request.num_prompt_tokens, self.hash_block_size,
                self.block_size,
            )
        return segs

    def match_prefix(self, request: Request) -> int:
        """Prompt tokens of a request holding no KV that the cache already has (whole segments).

        At least one token is always left to compute: the last one yields the next token's logits.
        Pure: pass the result to `allocate(..., num_cached_tokens=)` in the same scheduling pass.
        """
        if request.num_blocks or request.num_computed_tokens:
            return 0
        segs = self.segments(request)
        if segs is None:
            return 0
        n = self.prefix.match(segs, (request.num_known_tokens - 1) // self.block_size)
        return segs.ends[n - 1] * self.block_size if n else 0

    def cache_computed(self, request: Request) -> None:
        """Name the request's prompt segments that are now fully computed, so others reuse them.

        A segment someone cached meanwhile (both computed the same prefix at once) is
        deduplicated: the request switches to the cached copy and frees its own blocks.
        """
        segs = self.segments(request)
        if segs is None:
            return
        held = self.held.get(request)
        start = len(held.keys) if held is not None else 0
        computed = request.num_computed_tokens // self.block_size
        if start >= len(segs.ends) or segs.ends[start] > computed:
            return
        if held is None:
            held = self.held[request] = SharedBlocks()
        pool = self.prefix
        for i in range(start, len(segs.ends)):
            if segs.ends[i] > computed:
                break
            key = segs.keys[i]
            if key in pool:
                self.num_free_blocks += key[1] - pool.acquire(key)
            else:
                pool.insert(key)
            held.keys.append(key)
            held.num_blocks += key[1]

    # -- allocation (check, then act: a refusal changes nothing) -------------------------------
    def allocate(
        self,
        request: Request,
        num_tokens: int,
        keep_watermark: bool = False,
        num_cached_tokens: int = 0,
    ) -> bool:
        """Hold blocks for `num_tokens` more tokens of a request outside the cohort.

        `num_cached_tokens` (from `match_prefix`) first references the cached segments of the
        prompt's head; `num_tokens` then counts from after them. The caller advances the request
        past the cached tokens (`Request.skip_cached_prefix`) once it is admitted.
        """
        hit_blocks, keys, revived = num_cached_tokens // self.block_size, (), 0
        if hit_blocks:
            segs = self.segments(request)
            keys = segs.keys[: segs.ends.index(hit_blocks) + 1]
            revived = self.prefix.evictable_blocks(keys)  # cached but free: referencing takes them
        need = (
            self.blocks_for(request.num_computed_tokens + num_cached_tokens + num_tokens)
            - request.num_blocks
            - hit_blocks
        )
        need = max(0, need)
        reserve = self.watermark_blocks if keep_watermark else 0
        if need + revived > self.num_free_blocks - reserve:
            return False
        if hit_blocks:
            for key in keys:
                self.prefix.acquire(key)
            self.num_free_blocks -= revived
            self.held[request] = SharedBlocks(list(keys), hit_blocks)
            request.num_blocks += hit_blocks
        self._take(need)
        request.num_blocks += need
        return True

    def free(self, request: Request) -> None:
        """Release all blocks of a request outside the cohort."""
        self.free_detached(self.detach(request))

    def detach(self, request: Request) -> DetachedKV:
        """Take a request's blocks off it without freeing them (free later with `free_detached`)."""
        assert not request.in_cohort
        self._segments.pop(request, None)
        held = self.held.pop(request, None)
        if held is None:
            detached = DetachedKV(request.num_blocks, ())
        else:
            detached = DetachedKV(request.num_blocks - held.num_blocks, tuple(held.keys))
        self.num_detached_blocks += detached.num_private_blocks
        request.num_blocks = 0
        return detached

    def free_detached(self, detached: DetachedKV) -> None:
        freed = detached.num_private_blocks
        self.num_detached_blocks -= freed
        if detached.cached_keys:
            freed += self.prefix.release(detached.cached_keys)
        self.num_free_blocks += freed

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
        if self.prefix is not None:
            unnamed = self.num_free_blocks - self.prefix.num_evictable_blocks
            if n > unnamed:
                self.prefix.evict(n - unnamed)
        self.num_free_blocks -= n
        used = self.num_blocks - self.num_free_blocks
        if used > self.peak_used_blocks:
            self.peak_used_blocks = used
