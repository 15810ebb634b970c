"""KV tiers below the GPU: host DRAM and local SSD per instance, and a cluster-wide pool.

Every tier stores the same thing the GPU prefix cache does: whole segments, keyed by
`(chain hash, blocks)` (see `block_pool`), so a prefix found in any tier is the same KV. A tier
has a capacity in blocks and an eviction policy (`kv.eviction`); the GPU's evictions go down the
chain (GPU -> DRAM -> SSD -> gone), each move a transfer on the link between the two tiers. A hit
in a lower tier is a *copy* back into GPU blocks (the lower copy stays), a transfer on every link
on the way up; the cluster pool (Mooncake store) is reached over the instance's network link and
filled by every instance with what its local tiers evict (or, `publish: compute`, with every
segment it computes).

Pricing: each link (PCIe for DRAM, NVMe for SSD, the NIC for the pool) gathers the bytes a step
moves and takes `latency + bytes / bandwidth`; links work in parallel, so a step's transfer time
is the slowest link's. `overlap` (default: layer-wise loading, as LMCache and Mooncake do) makes
the step take `max(compute, transfer)`, `stall` makes it `compute + transfer`. Publishing
computed segments to the pool is asynchronous (counted, not priced): the writer does not wait.

Conservation (checked after every step in the tests): per tier, blocks written - blocks dropped
== blocks stored <= capacity - swap reserve; per link, bytes moved == blocks moved x block bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from servesim.kv.eviction import EvictionPolicy, LRUPolicy

SegmentKey = tuple  # (chain hash, number of engine blocks)


class BlockStore:
    """One tier's segments: capacity, contents, eviction order and traffic counters."""

    def __init__(self, name: str, capacity_blocks: int, policy: EvictionPolicy | None = None):
        self.name = name
        self.capacity_blocks = capacity_blocks
        self.policy = policy if policy is not None else LRUPolicy()
        self.stored_blocks = 0
        self.reserved_blocks = 0
        """Blocks held outside the cache (swapped-out requests' KV), not evictable."""
        self.written_blocks = 0
        self.dropped_blocks = 0
        self.read_blocks = 0
        self._programs: dict = {}

    def __contains__(self, key) -> bool:
        return key in self.policy

    @property
    def free_blocks(self) -> int:
        return self.capacity_blocks - self.stored_blocks - self.reserved_blocks

    def put(self, key: SegmentKey, program: int = -1) -> list | None:
        """Store a segment, evicting what the policy picks to make room; return the evicted keys
        (None: the segment cannot fit at all and is not stored)."""
        if key in self.policy:
            self.policy.touch(key)
            return []
        if key[1] > self.capacity_blocks - self.reserved_blocks:
            return None
        evicted = self.make_room(key[1])
        self.policy.add(key, program)
        self._programs[key] = program
        self.stored_blocks += key[1]
        self.written_blocks += key[1]
        return evicted

    def make_room(self, num_blocks: int) -> list:
        """Evict until `num_blocks` are free (the caller checked they can be)."""
        evicted = []
        while self.free_blocks < num_blocks:
            evicted.append(self._drop(self.policy.pop_victim()))
        return evicted

    def read(self, key: SegmentKey) -> None:
        """A hit: the segment is copied up and counts as used."""
        self.policy.touch(key)
        self.read_blocks += key[1]

    def expire(self, now: float) -> list:
        """Drop what a time-based policy says has expired; the dropped keys."""
        keys = self.policy.expired(now)
        for key in keys:
            self.policy.remove(key)
            self._drop(key)
        return keys

    def reserve(self, num_blocks: int) -> list | None:
        """Hold `num_blocks` outside the cache (swap), evicting cached segments; None if they can
        never fit next to what is already reserved."""
        if num_blocks > self.capacity_blocks - self.reserved_blocks:
            return None
        evicted = self.make_room(num_blocks)
        self.reserved_blocks += num_blocks
        return evicted

    def unreserve(self, num_blocks: int) -> None:
        self.reserved_blocks -= num_blocks
        assert self.reserved_blocks >= 0

    def check_conservation(self) -> None:
        assert self.written_blocks - self.dropped_blocks == self.stored_blocks, self.name
        assert self.stored_blocks == sum(k[1] for k in self._programs), self.name
        assert len(self._programs) == len(self.policy), self.name
        assert 0 <= self.stored_blocks + self.reserved_blocks <= self.capacity_blocks, self.name

    def _drop(self, key: SegmentKey) -> SegmentKey:
        del self._programs[key]
        self.stored_blocks -= key[1]
        self.dropped_blocks += key[1]
        return key


@dataclass
class Link:
    """A transfer path (PCIe, NVMe, NIC): what the current step moves, and totals."""

    name: str
    bandwidth: float
    """Bytes per second."""
    latency_s: float
    pending_bytes: float = 0.0
    total_bytes: float = 0.0
    total_blocks: int = 0
    busy_s: float = 0.0

    def move(self, num_blocks: int, block_bytes: float) -> None:
        self.pending_bytes += num_blocks * block_bytes
        self.total_bytes += num_blocks * block_bytes
        self.total_blocks += num_blocks

    def take_seconds(self) -> float:
        """This step's time on the link; the step's bytes are then done."""
        if not self.pending_bytes:
            return 0.0
        seconds = self.latency_s + self.pending_bytes / self.bandwidth
        self.pending_bytes = 0.0
        self.busy_s += seconds
        return seconds


class KVPool(BlockStore):
    """The cluster-wide store (Mooncake): one capacity and policy shared by every instance.

    `publish`: `evict` (default) fills it with what the instances' local tiers give up, so it adds
    to their capacity; `compute` with every segment as soon as it is computed (an inclusive copy,
    Mooncake's write-after-prefill), which also shares prefixes still in some GPU."""

    def __init__(self, capacity_blocks: int, policy: EvictionPolicy | None = None,
                 publish: str = "evict"):
        super().__init__("pool", capacity_blocks, policy)
        self.publish = publish
        self.published_blocks = 0


@dataclass
class TierHits:
    """Where the segments of a prompt prefix were found, in prompt order."""

    gpu: int = 0
    """Leading segments in the GPU cache."""
    lower: list = field(default_factory=list)
    """(tier name, key) for each later segment found below the GPU."""

    @property
    def num_segments(self) -> int:
        return self.gpu + len(self.lower)


class TierChain:
    """One instance's tiers below the GPU (in order, e.g. DRAM then SSD), its links, and the
    shared pool. `offload` takes the GPU's evictions; `locate` / `reload` serve hits."""

    def __init__(
        self, tiers: list[BlockStore], links: dict[str, Link], block_bytes: float,
        pool: KVPool | None = None, overlap: bool = True,
    ):
        self.tiers = tiers
        self.links = links
        """Per tier name, the link that reaches it from the tier above (pool: the NIC)."""
        self.block_bytes = block_bytes
        self.pool = pool
        self.overlap = overlap
        self.offloaded_blocks = {t.name: 0 for t in [*tiers, *([pool] if pool else [])]}
        self.reloaded_blocks = {t.name: 0 for t in [*tiers, *([pool] if pool else [])]}

    def by_name(self, name: str) -> BlockStore:
        return self.pool if name == "pool" else next(t for t in self.tiers if t.name == name)

    def locate(self, key: SegmentKey) -> str | None:
        """The nearest tier holding the segment (local tiers first, then the pool)."""
        for tier in self.tiers:
            if key in tier:
                return tier.name
        if self.pool is not None and key in self.pool:
            return "pool"
        return None

    def offload(self, key: SegmentKey, program: int = -1, level: int = 0) -> None:
        """A segment leaves tier `level - 1` (the GPU for 0): store it at `level`, cascading; the
        last local tier's evictions go to the pool when it takes evictions."""
        if level >= len(self.tiers):
            pool = self.pool
            if pool is not None and pool.publish == "evict" and key not in pool:
                if pool.put(key, program) is not None:
                    pool.published_blocks += key[1]
                    self.links["pool"].move(key[1], self.block_bytes)
                    self.offloaded_blocks["pool"] += key[1]
            return
        tier = self.tiers[level]
        if key in tier:
            tier.policy.touch(key)
            return
        evicted = tier.put(key, program)
        if evicted is None:
            return
        self.links[tier.name].move(key[1], self.block_bytes)
        self.offloaded_blocks[tier.name] += key[1]
        for victim in evicted:
            self.offload(victim, program=-1, level=level + 1)

    def reload(self, hits: TierHits) -> None:
        """Copy the lower-tier segments of a hit up into the GPU: a transfer on each link on the
        way (SSD: NVMe then PCIe; pool: the NIC)."""
        for name, key in hits.lower:
            store = self.by_name(name)
            store.read(key)
            self.reloaded_blocks[name] += key[1]
            if name == "pool":
                self.links["pool"].move(key[1], self.block_bytes)
                continue
            for tier in self.tiers:
                self.links[tier.name].move(key[1], self.block_bytes)
                if tier is store:
                    break

    def publish(self, key: SegmentKey, program: int = -1) -> None:
        """A freshly computed segment goes to the pool too (asynchronously: not priced)."""
        if self.pool is not None and self.pool.publish == "compute" and key not in self.pool:
            if self.pool.put(key, program) is not None:
                self.pool.published_blocks += key[1]

    def expire(self, now: float) -> None:
        """Time-based eviction: an expired segment moves one tier down (the pool's is gone)."""
        for level, tier in enumerate(self.tiers):
            for key in tier.expire(now):
                self.offload(key, level=level + 1)
        if self.pool is not None:
            self.pool.expire(now)

    def take_transfer_s(self) -> float:
        """The step's transfer time: links work in parallel, the slowest one counts."""
        return max((link.take_seconds() for link in self.links.values()), default=0.0)

    def step_time(self, compute_s: float) -> float:
        transfer = self.take_transfer_s()
        return max(compute_s, transfer) if self.overlap else compute_s + transfer

    def check_conservation(self) -> None:
        """Per tier: written - dropped == stored <= capacity; per link: bytes == blocks x size."""
        for tier in [*self.tiers, *([self.pool] if self.pool else [])]:
            tier.check_conservation()
        for link in self.links.values():
            assert abs(link.total_bytes - link.total_blocks * self.block_bytes) <= 1e-6 * max(
                1.0, link.total_bytes
            ), link.name
        # every block on a link was an offload into its tier or a reload from it or below
        for level, tier in enumerate(self.tiers):
            through = sum(self.reloaded_blocks[t.name] for t in self.tiers[level:])
            assert self.links[tier.name].total_blocks == self.offloaded_blocks[tier.name] + through
        if self.pool is not None:
            moved = self.reloaded_blocks["pool"] + self.offloaded_blocks["pool"]
            assert self.links["pool"].total_blocks == moved
