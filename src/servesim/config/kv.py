"""`kv:` KV tiers below the GPU, the cluster-wide KV pool, eviction policies, agentic retention.

All of it works on the prefix cache's segments, so every tier needs `engine.prefix_caching: true`.
See docs/kv.md for the model.
"""

from typing import Literal

from pydantic import Field

from servesim.config.base import Component, Nested, Section


class TierConfig(Section):
    capacity_gb: float = Field(gt=0, le=1e6)
    """KV this tier holds per instance, 10^9 bytes (all of the instance's GPUs together)."""
    bandwidth_gb_s: float | None = Field(None, gt=0, le=1e5)
    """Bandwidth of the link from the tier above, 10^9 bytes/s per instance. Default: DRAM, the
    hardware's PCIe per GPU times the GPUs of the instance; SSD, 6 (one PCIe 4 NVMe drive)."""
    latency_s: float = Field(1.0e-5, ge=0, le=1)
    """Fixed cost of a step's transfers on this link, seconds."""
    eviction: Component = "lru"
    """Eviction policy of this tier: `lru`, `lfu`, `{name: ttl, ttl_s: 60}`, `program` or a
    plugin `module:Class` (docs/kv.md)."""


class PoolConfig(Section):
    capacity_gb: float = Field(gt=0, le=1e9)
    """KV the cluster-wide pool holds (one store shared by every instance), 10^9 bytes."""
    bandwidth_gb_s: float = Field(25.0, gt=0, le=1e5)
    """Each instance's network bandwidth to the pool, 10^9 bytes/s (200 Gb/s RDMA: 25)."""
    latency_s: float = Field(5.0e-5, ge=0, le=1)
    """Fixed cost of a step's fetch from the pool, seconds."""
    eviction: Component = "lru"
    """Eviction policy of the pool (as a tier's `eviction`)."""
    publish: Literal["evict", "compute"] = "evict"
    """What goes into the pool: what the instances' local tiers evict (it adds to them), or every
    segment as soon as it is computed (an inclusive copy, shared even while still in a GPU)."""


class RetentionConfig(Section):
    mode: Literal["lru", "none", "ttl", "program"] = "lru"
    """What a finished agentic call leaves for the program's next call: `lru` (an ordinary prefix
    cache entry), `none` (dropped at once), `ttl` (pinned for `ttl_s`), `program` (program-aware
    eviction on the GPU)."""
    ttl_s: float = Field(10.0, gt=0, le=1e9)
    """`ttl`: seconds a finished call's KV stays pinned waiting for the program's next call."""


class KVConfig(Section):
    gpu_eviction: Component = "lru"
    """Eviction policy of the GPU prefix cache, as a tier's `eviction` (with `retention.mode:
    program`, default `program`)."""
    dram: Nested[TierConfig] | None = None
    """Host memory tier per instance: the GPU's evictions land here; swap preemption uses it."""
    ssd: Nested[TierConfig] | None = None
    """Local SSD tier per instance, below DRAM (or below the GPU without DRAM)."""
    pool: Nested[PoolConfig] | None = None
    """Cluster-wide KV pool (Mooncake store): every instance publishes what it computes, and any
    instance fetches from it over the network."""
    transfers: Literal["overlap", "stall"] = "overlap"
    """Tier transfers of a step overlap its compute (layer-wise loading: the step takes the
    longer of the two) or stall it (compute plus transfer)."""
    retention: Nested[RetentionConfig] = Field(default_factory=RetentionConfig)
    """KV retention across the tool calls of agentic programs."""

    @property
    def uses_tiers(self) -> bool:
        return self.dram is not None or self.ssd is not None or self.pool is not None
