"""Composition of the KV side from `kv:` and `engine:`: one manager per instance, with its DRAM/SSD
tiers and links, sharing one cluster pool and one set of program hints (see docs/kv.md)."""

from __future__ import annotations

from servesim.catalog import HardwareSpec, ModelSpec
from servesim.config.schema import SimConfig
from servesim.core.cohort import DecodeCohort
from servesim.core.errors import ConfigError
from servesim.kv.eviction import ProgramHints, make_policy
from servesim.kv.manager import KVCacheManager
from servesim.kv.retention import Retention
from servesim.kv.tiers import BlockStore, KVPool, Link, TierChain
from servesim.metrics.kv_tiers import TierLog, tier_summary

SSD_DEFAULT_GB_S = 6.0
"""One PCIe 4 NVMe drive, sequential read."""


class KVSetup:
    """Builds the KV manager of each instance; owns what instances share."""

    def __init__(self, config: SimConfig, model: ModelSpec):
        self.config = config
        kv, engine = config.kv, config.engine
        if not engine.prefix_caching:
            for key in ("dram", "ssd", "pool"):
                if getattr(kv, key) is not None:
                    raise ConfigError(f"kv.{key}", "KV tiers hold prefix-cache segments: set "
                                      "engine.prefix_caching: true")
        self.block_bytes = engine.block_size * model.kv_bytes_per_token(1)
        self.hints = ProgramHints()
        self.log = TierLog() if engine.prefix_caching else None
        """Tier occupancy, hits and traffic after every step (with prefix caching)."""
        self.managers: list[KVCacheManager] = []
        self.pool = None
        if kv.pool is not None:
            policy = self._policy(kv.pool.eviction, lambda: self._clock(), "kv.pool.eviction")
            self.pool = KVPool(self._blocks(kv.pool.capacity_gb, "kv.pool.capacity_gb"), policy,
                               kv.pool.publish)

    def manager(
        self, num_blocks: int, hash_block_size: int, hardware: HardwareSpec, tp: int, engine=None,
        cohort: DecodeCohort | None = None,
    ) -> KVCacheManager:
        """The KV manager of one instance (`engine`: its pool's engine config; default the
        config's) owning `cohort`'s accounting."""
        kv, engine = self.config.kv, engine or self.config.engine
        gpu = kv.gpu_eviction
        if kv.retention.mode == "program" and "gpu_eviction" not in kv.model_fields_set:
            gpu = "program"
        holder: list[KVCacheManager] = []
        clock = lambda: holder[0].now if holder else 0.0  # noqa: E731 (bound once built)
        retention = Retention(kv.retention.mode, kv.retention.ttl_s, self.hints)
        manager = KVCacheManager(
            num_blocks, engine.block_size, watermark=engine.kv_watermark,
            prefix_caching=engine.prefix_caching,
            hash_block_size=hash_block_size, policy=self._policy(gpu, clock, "kv.gpu_eviction"),
            tiers=self._chain(hardware, tp, clock), retention=retention, cohort=cohort,
        )
        manager.tier_log = self.log
        holder.append(manager)
        self.managers.append(manager)
        return manager

    def _chain(self, hardware: HardwareSpec, tp: int, clock) -> TierChain | None:
        kv = self.config.kv
        if not kv.uses_tiers:
            return None
        tiers, links = [], {}
        defaults = {"dram": hardware.pcie_gb_s * tp, "ssd": SSD_DEFAULT_GB_S}
        for name in ("dram", "ssd"):
            cfg = getattr(kv, name)
            if cfg is None:
                continue
            blocks = self._blocks(cfg.capacity_gb, f"kv.{name}.capacity_gb")
            policy = self._policy(cfg.eviction, clock, f"kv.{name}.eviction")
            tiers.append(BlockStore(name, blocks, policy))
            bandwidth = cfg.bandwidth_gb_s or defaults[name]
            links[name] = Link(name, bandwidth * 1e9, cfg.latency_s)
        if self.pool is not None:
            links["pool"] = Link("pool", kv.pool.bandwidth_gb_s * 1e9, kv.pool.latency_s)
        return TierChain(tiers, links, self.block_bytes, self.pool, kv.transfers == "overlap")

    def _policy(self, spec, clock, key: str):
        return make_policy(spec, clock, self.hints, key)

    def _blocks(self, capacity_gb: float, key: str) -> int:
        blocks = int(capacity_gb * 1e9 // self.block_bytes)
        if blocks < 1:
            raise ConfigError(key, f"holds no KV block ({self.block_bytes / 1e6:.2f} MB each)")
        return blocks

    def _clock(self) -> float:
        """The pool's clock: the latest any instance has seen."""
        return max((m.now for m in self.managers), default=0.0)

    def stats(self, prompt_tokens: int) -> dict:
        """summary.json `kv.tiers` and friends."""
        return tier_summary(self, prompt_tokens)
