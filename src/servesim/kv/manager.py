"""KV cache manager: the one owner of KV accounting, for requests and for the decode cohort.

Blocks a request holds are counted, not named: with no prefix caching, which physical block a
token lives in never changes the simulation. The manager keeps the count of every request outside
the cohort; a cohort member holds exactly the blocks its computed tokens fill (derived from the
cohort's step counter), plus the cohort's steps reserved ahead, which the manager also owns. So
membership changes go through the manager (`join_cohort`, `leave_cohort`, `advance_cohort`).

With prefix caching, the full prompt blocks a request has computed are also named, in segments
(see `block_pool`): a request's count then includes the cached blocks it shares, and it
references their segments (`held`). Cached blocks no request references stay cached but count as
free (`num_free_blocks` is what can be had: unnamed free blocks plus evictable cached ones);
taking more blocks than are unnamed evicts the least recently released segments.

Invariant (KV block conservation, `check_conservation`): unnamed free + cached + blocks requests
hold privately + blocks reserved for the cohort's next steps + detached blocks == pool size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from servesim.core.cohort import DecodeCohort
from servesim.core.request import Request
from servesim.kv.block_pool import PrefixBlockPool, PromptSegments
from servesim.kv.errors import KVConservationError
from servesim.kv.retention import Retention
from servesim.kv.tiers import TierChain, TierHits


@dataclass(slots=True, init=False)
class DetachedKV:
    """Blocks a request left behind when it moved on (disaggregation: until its KV is sent).
    Read it, never change it. (Not a frozen dataclass, whose `__init__` is Python code, setting
    fields through `object.__setattr__`: the compiled core would call it, interpreted, for every
    request that ends.)"""

    num_private_blocks: int
    cached_keys: tuple

    def __init__(self, num_private_blocks: int, cached_keys: tuple):
        self.num_private_blocks = num_private_blocks
        self.cached_keys = cached_keys


@dataclass(slots=True)
class SharedBlocks:
    """The cached segments a request references, in prompt order, and their blocks."""

    keys: list = field(default_factory=list)
    num_blocks: int = 0


_PEEK: list = [None, None]  # (key, segments) of the request routers asked about last


def _peek_segments(request: Request, hash_block_size: int, block_size: int) -> PromptSegments:
    """A request's segments for a router's look at every instance: computed once per request
    (instances share block sizes), not memoised per manager (the request may never come)."""
    key = (request, request.num_prompt_tokens, hash_block_size, block_size)
    if _PEEK[0] != key:
        segs = PromptSegments(request.prefix_hashes, request.num_prompt_tokens, hash_block_size,
                              block_size)
        _PEEK[0], _PEEK[1] = key, segs
    return _PEEK[1]


class KVCacheManager:
    def __init__(
        self,
        num_blocks: int,
        block_size: int,
        watermark: float = 0.01,
        prefix_caching: bool = False,
        hash_block_size: int = 0,
        policy=None,
        tiers: TierChain | None = None,
        retention: Retention | None = None,
        cohort: DecodeCohort | None = None,
    ):
        if num_blocks < 1:
            raise ValueError("KV cache needs at least one block")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.num_free_blocks = num_blocks
        self.watermark_blocks = int(watermark * num_blocks)
        """Blocks admission leaves free (vLLM's watermark), unless no other request holds KV."""
        self.peak_used_blocks = 0
        self.cohort = cohort if cohort is not None else DecodeCohort(block_size)
        self.prefix: PrefixBlockPool | None = PrefixBlockPool(policy) if prefix_caching else None
        """The cached blocks; None without prefix caching."""
        self.tiers = tiers if self.prefix is not None else None
        """DRAM/SSD tiers and the cluster pool below the GPU cache (`kv.tiers`); None: GPU only."""
        if self.tiers is not None and self.prefix is not None:
            self.prefix.on_evict = self.tiers.offload
        self.retention = retention
        """What a finished agentic call leaves cached for the program's next call (`kv.retention`)."""
        self.now = 0.0
        """The engine's clock at the last `tick`."""
        self.hit_tokens = {"gpu": 0, "dram": 0, "ssd": 0, "pool": 0}
        """Prompt tokens served from each tier (first admissions only, as `num_cached_tokens`)."""
        self.peer_hit_tokens = 0
        """Of the pool's hit tokens, those another instance published (the rest were this one's)."""
        self._swapped: dict[Request, int] = {}  # swapped-out request -> host blocks it holds
        self.tier_log: Any = None
        """Optional `record(instance, time, kv)` sink after every step (metrics.kv_tiers.TierLog)."""
        self.hash_block_size = hash_block_size
        self.held: dict[Request, SharedBlocks] = {}
        """Per request holding cached blocks, the segments it references."""
        self._blocks: dict[Request, int] = {}  # holders outside the cohort -> blocks held
        self._segments: dict[Request, PromptSegments] = {}  # memo while a request is here
        self._reserved_until = 0  # cohort epoch up to which the members' blocks are allocated
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

    def blocks_of(self, request: Request) -> int:
        """KV blocks a request holds (a cohort member: those its computed tokens fill)."""
        if request.in_cohort:
            return self.blocks_for(request.num_computed_tokens)
        return self._blocks.get(request, 0)

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
        need = self.blocks_for(request.num_computed_tokens + num_tokens) - self.blocks_of(request)
        return max(0, need)

    # -- prefix cache ---------------------------------------------------------------------------
    def segments(self, request: Request, memo: bool = True) -> PromptSegments | None:
        """The request's cacheable prompt segments; None when it cannot use the cache."""
        if self.prefix is None or not request.prefix_hashes or self.hash_block_size <= 0:
            return None
        segs = self._segments.get(request)
        if segs is None:
            segs = PromptSegments(
                request.prefix_hashes, request.num_prompt_tokens, self.hash_block_size,
                self.block_size,
            )
            if memo:
                self._segments[request] = segs
        return segs

    def match_prefix(self, request: Request, memo: bool = True) -> int:
        """Prompt tokens of a request holding no KV that the cache already has (whole segments).

        At least one token is always left to compute: the last one yields the next token's logits.
        Pure (`memo=False` also keeps no memo: a router asking about a request sent elsewhere).
        """
        if request in self._blocks or request.num_computed_tokens:
            return 0
        segs = self.segments(request, memo)
        if segs is None:
            return 0
        n = self.tier_hits(segs, (request.num_known_tokens - 1) // self.block_size).num_segments
        return segs.ends[n - 1] * self.block_size if n else 0

    def peek_hits(self, request: Request) -> dict[str, int]:
        """Router view: prompt tokens each tier here would serve the request now (read-only; a
        request already holding KV here gets nothing)."""
        out = {"gpu": 0}
        if self.prefix is None or not request.prefix_hashes or self.hash_block_size <= 0:
            return out
        segs = self._segments.get(request) or _peek_segments(
            request, self.hash_block_size, self.block_size
        )
        hits = self.tier_hits(segs, (request.num_known_tokens - 1) // self.block_size)
        out["gpu"] = (segs.ends[hits.gpu - 1] if hits.gpu else 0) * self.block_size
        for name, key in hits.lower:
            out[name] = out.get(name, 0) + key[1] * self.block_size
        return out

    def reload_time_s(self, hits: dict[str, int]) -> float:
        """Seconds to bring a `peek_hits` result's lower-tier tokens to the GPU (links in parallel)."""
        if self.tiers is None:
            return 0.0
        block_bytes = self.tiers.block_bytes / self.block_size
        per_link: dict[str, float] = {}
        names = [t.name for t in self.tiers.tiers]
        for name, tokens in hits.items():
            if name == "gpu" or not tokens:
                continue
            path = ["pool"] if name == "pool" else names[: names.index(name) + 1]
            for link in path:
                per_link[link] = per_link.get(link, 0.0) + tokens * block_bytes
        links = self.tiers.links
        return max(
            (links[n].latency_s + b / links[n].bandwidth for n, b in per_link.items()), default=0.0
        )

    def tier_hits(self, segs: PromptSegments, max_blocks: int) -> TierHits:
        """The leading segments (ending within `max_blocks`) found in the GPU cache, then, for the
        rest of the prefix, in the lower tiers or the pool. Pure."""
        assert self.prefix is not None  # segments exist only with prefix caching
        hits = TierHits(self.prefix.match(segs, max_blocks))
        if self.tiers is not None:
            for i in range(hits.gpu, len(segs.keys)):
                where = self.tiers.locate(segs.keys[i]) if segs.ends[i] <= max_blocks else None
                if where is None:
                    break
                hits.lower.append((where, segs.keys[i]))
        return hits

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
        assert pool is not None  # segments exist only with prefix caching
        for i in range(start, len(segs.ends)):
            if segs.ends[i] > computed:
                break
            key = segs.keys[i]
            if key in pool:
                self.num_free_blocks += key[1] - pool.acquire(key)
            else:
                pool.insert(key)
                if self.tiers is not None:
                    self.tiers.publish(key, request.program_id)
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

        `num_cached_tokens` (from `match_prefix`, for a request holding no KV) first references
        the cached segments of the prompt's head; `num_tokens` then counts from after them. The
        caller advances the request past the cached tokens (`Request.skip_cached_prefix`).
        `keep_watermark`: leave `watermark_blocks` free (admission while others hold KV).
        """
        assert not request.in_cohort
        hit_blocks, revived, gpu_blocks = num_cached_tokens // self.block_size, 0, 0
        keys: Sequence[tuple[int, int]] = ()
        hits: TierHits | None = None
        if hit_blocks:  # (none without prefix caching: planning's common case skips all this)
            segs = self.segments(request)
            assert segs is not None and self.prefix is not None  # a hit needs the prefix cache
            n = segs.ends.index(hit_blocks) + 1
            hits = self.tier_hits(segs, hit_blocks)
            hits.gpu, hits.lower = min(hits.gpu, n), hits.lower[: n - min(hits.gpu, n)]
            keys = segs.keys[: hits.gpu]
            revived = self.prefix.evictable_blocks(keys)  # cached but free: referencing takes them
            gpu_blocks = sum(key[1] for key in keys)  # reloaded segments need fresh blocks: in `need`
        held = self._blocks.get(request, 0)
        tokens = request.num_computed_tokens + num_cached_tokens + num_tokens
        need = max(0, self.blocks_for(tokens) - held - gpu_blocks)
        reserve = self.watermark_blocks if keep_watermark else 0
        if need + revived > self.num_free_blocks - reserve:
            running = request.num_computed_tokens > 0  # pins yield to running requests only
            if not (running and self._unpin_for(need + revived + reserve)):
                return False
        if hits is not None:  # (as hit_blocks)
            self._reference_hits(request, keys, hits, revived, hit_blocks)
        self._take(need)
        if hits is not None:
            for _, key in hits.lower:  # reloaded: named on the GPU again, referenced by the request
                self.prefix.insert(key)  # type: ignore[union-attr]  # hits exist only with the cache
        self._blocks[request] = held + need + gpu_blocks
        if self.retention is not None and request.program_id >= 0:
            self.retention.call_admitted(self, request)
        return True

    def _reference_hits(self, request, keys, hits: TierHits, revived: int, hit_blocks: int):
        assert self.prefix is not None
        for key in keys:
            self.prefix.acquire(key)
        self.num_free_blocks -= revived
        self.held[request] = SharedBlocks([*keys, *(key for _, key in hits.lower)], hit_blocks)
        if hits.lower:
            assert self.tiers is not None  # lower hits come from the tiers
            self.tiers.reload(hits)  # before `_take`, whose evictions may push these further down
        if not request.num_preemptions:
            bs = self.block_size
            self.hit_tokens["gpu"] += sum(key[1] for key in keys) * bs
            for name, key in hits.lower:
                self.hit_tokens[name] += key[1] * bs
                if name == "pool" and self.tiers.is_peer(key):  # type: ignore[union-attr]
                    self.peer_hit_tokens += key[1] * bs

    def holders_outside_cohort(self):
        """Requests holding KV here outside the decode cohort (paused, mid-prompt, admitted)."""
        return self._blocks.keys()

    def has_holders(self) -> bool:
        """Does any request hold KV here (the watermark only protects running requests)?"""
        return bool(self._blocks) or self.cohort.size > 0

    def free(self, request: Request) -> None:
        """Release all blocks of a request outside the cohort. A finished agentic call's KV is
        then kept, pinned or dropped as `retention` says."""
        done = request.num_generated_tokens >= request.num_output_tokens
        keep = self.retention is not None and request.program_id >= 0 and done
        held = self.held.get(request)
        keys = tuple(held.keys) if held is not None and keep else ()
        if keep:
            self.retention.before_release(self, request, keys)  # type: ignore[union-attr]
        self.free_detached(self.detach(request), request.program_id)
        if keep:
            self.retention.after_release(self, request, keys)  # type: ignore[union-attr]

    def detach(self, request: Request) -> DetachedKV:
        """Take a request's blocks off it without freeing them (free later with `free_detached`)."""
        assert not request.in_cohort
        self._segments.pop(request, None)
        blocks = self._blocks.pop(request, 0)
        held = self.held.pop(request, None)
        if held is None:
            detached = DetachedKV(blocks, ())
        else:
            detached = DetachedKV(blocks - held.num_blocks, tuple(held.keys))
        self.num_detached_blocks += detached.num_private_blocks
        return detached

    def free_detached(self, detached: DetachedKV, program: int = -1) -> None:
        freed = detached.num_private_blocks
        self.num_detached_blocks -= freed
        if detached.cached_keys:
            freed += self.prefix.release(detached.cached_keys, program)  # type: ignore[union-attr]
        self.num_free_blocks += freed

    # -- tiers, swap space, time -----------------------------------------------------------------
    def tick(self, now: float) -> None:
        """The engine's clock moved: expire retention pins and time-based evictions."""
        self.now = now
        if self.retention is not None:
            self.retention.expire(self, now)
        if self.prefix is not None:
            expired = self.prefix.expired(now)
            if expired:
                self.prefix.forget(expired, offload=True)
        if self.tiers is not None:
            self.tiers.expire(now)

    def next_expiry(self) -> float:
        """When the next retention pin runs out (inf: none): an idle instance wakes then."""
        return self.retention.next_expiry() if self.retention is not None else math.inf

    def step_time(self, compute_s: float) -> float:
        """A step's duration with its tier transfers (overlapping compute, or stalling it)."""
        return compute_s if self.tiers is None else self.tiers.step_time(compute_s)

    def swap_out(self, request: Request) -> bool:
        """Room in host memory for a preempted request's KV (the first tier below the GPU, when
        configured; unlimited otherwise). False: no room, the caller recomputes instead."""
        host = self.tiers.tiers[0] if self.tiers is not None and self.tiers.tiers else None
        if host is None:
            return True
        num_blocks = self.blocks_for(request.num_computed_tokens)
        evicted = host.reserve(num_blocks)
        if evicted is None:
            return False
        for key in evicted:
            self.tiers.offload(key, level=1)  # type: ignore[union-attr]  # host is one of them
        self._swapped[request] = num_blocks
        return True

    def swap_in(self, request: Request) -> None:
        """A swapped request is admitted again: its host copy is released."""
        num_blocks = self._swapped.pop(request, 0)
        if num_blocks:
            self.tiers.tiers[0].unreserve(num_blocks)  # type: ignore[union-attr]  # swapped: tiers

    # -- the decode cohort -------------------------------------------------------------------------
    @property
    def cohort_reserved_steps(self) -> int:
        """Cohort steps ahead whose blocks are already held."""
        ahead = self._reserved_until - self.cohort.epoch
        return ahead if ahead > 0 else 0

    def join_cohort(self, request: Request) -> None:
        """A running request decodes from now on as a cohort member (between steps).

        A member's blocks are derived from its progress, and the cohort reserves each next
        token's block with its step: blocks held past the computed tokens go back to the pool. A
        recomputing request has them: admitted with blocks for every known token, it joins one
        token short, its last generated token left to decode."""
        if self._reserved_until > self.cohort.epoch:
            raise KVConservationError("join the cohort between steps, with nothing reserved ahead")
        surplus = self._blocks.pop(request, 0) - self.blocks_for(request.num_computed_tokens)
        if surplus > 0:
            self.num_free_blocks += surplus
        self.cohort.join(request)

    def leave_cohort(self, request: Request) -> None:
        """Take a member out of the cohort (pause, preemption); it keeps the blocks it fills.
        Blocks reserved ahead for the cohort are given back first and held again for the rest."""
        steps = self.cohort_reserved_steps
        if steps:
            self.unreserve_cohort()
        self.cohort.leave(request)
        self._blocks[request] = self.blocks_for(request.num_computed_tokens)
        if steps and not self.reserve_cohort(steps):
            raise KVConservationError("a smaller cohort could not hold the steps it held before")

    def advance_cohort(self, end_times: np.ndarray | list[float]) -> list[Request]:
        """Run the cohort's next len(end_times) steps (reserved before); return who finished."""
        if self._reserved_until - self.cohort.epoch < len(end_times):
            raise KVConservationError("a cohort step ran without its blocks reserved")
        finished = self.cohort.advance(end_times)  # `DecodeCohort.advance`
        bs = self.block_size
        for request in finished:
            self._blocks[request] = -(-request.num_computed_tokens // bs)
        return finished

    def reserve_cohort(self, steps: int) -> bool:
        """Hold blocks for the cohort's next `steps` steps (those already held count)."""
        held = self._reserved_until - self.cohort.epoch
        if steps <= held:  # (the common re-reservation of a step already held)
            return True
        held = held if held > 0 else 0
        need = self.cohort.blocks_needed(held, steps)
        if need > self.num_free_blocks and not self._unpin_for(need):
            return False
        if need:
            self._take(need)
        self._reserved_until = self.cohort.epoch + steps
        return True

    def unreserve_cohort(self) -> None:
        """Give back the blocks held for cohort steps not yet run."""
        self.num_free_blocks += self.cohort.blocks_needed(0, self.cohort_reserved_steps)
        self._reserved_until = self.cohort.epoch

    def max_cohort_steps(self, limit: int) -> int:
        """Most cohort steps (<= limit) whose blocks fit in what is free plus what is reserved."""
        first = self._reserved_until - self.cohort.epoch
        first = first if first > 0 else 0
        if limit <= first:
            return limit
        return first + self.cohort.max_steps_for_blocks(first, self.num_free_blocks, limit - first)

    # -- the invariant -----------------------------------------------------------------------------
    def check_conservation(self) -> None:
        """Raise KVConservationError unless every block is accounted for exactly once."""
        private = 0
        for request, blocks in self._blocks.items():
            if blocks < self.blocks_for(request.num_computed_tokens):
                raise KVConservationError(f"request {request.request_id} computed past its blocks")
            private += blocks - self.num_shared_blocks(request)
        for request in self.cohort:
            private += self.blocks_of(request) - self.num_shared_blocks(request)
        reserved = self.cohort.blocks_needed(0, self.cohort_reserved_steps)
        total = self.num_unnamed_free_blocks + self.num_cached_blocks + private + reserved
        total += self.num_detached_blocks
        if total != self.num_blocks or not 0 <= self.num_free_blocks <= self.num_blocks:
            raise KVConservationError(
                f"{total} blocks accounted for, pool has {self.num_blocks} "
                f"({self.num_free_blocks} free, {private} private, {reserved} reserved)"
            )
        if self.prefix is not None and any(c < 0 for c in self.prefix.ref_counts.values()):
            raise KVConservationError("a cached segment has a negative reference count")
        self._check_lower_tiers()

    def _check_lower_tiers(self) -> None:
        """Tier capacities, transfer traffic, swap space and retention pins."""
        if self.tiers is not None:
            self.tiers.check_conservation()
            host = self.tiers.tiers[0] if self.tiers.tiers else None
            if host is not None and host.reserved_blocks != sum(self._swapped.values()):
                raise KVConservationError("host swap space disagrees with the swapped requests")
        if self.retention is not None:
            self.retention.check(self)

    def _unpin_for(self, num_blocks: int) -> bool:
        """Retention pins yield to requests already running (never to new admissions): release
        the pins that expire soonest until `num_blocks` are free. True if they are."""
        if self.retention is None:
            return False
        while num_blocks > self.num_free_blocks and self.retention.pins:
            self.retention.release_soonest(self)
        return num_blocks <= self.num_free_blocks

    def _take(self, n: int) -> None:
        if self.prefix is not None:
            unnamed = self.num_free_blocks - self.prefix.num_evictable_blocks
            if n > unnamed:
                self.prefix.evict(n - unnamed)
        self.num_free_blocks -= n
        used = self.num_blocks - self.num_free_blocks
        if used > self.peak_used_blocks:
            self.peak_used_blocks = used
