"""`cluster:` how many instances, of what, routed how; pools and prefill/decode disaggregation.

Three shapes, one resolved form (a list of pools, built in build.py):
- homogeneous: `instances`, `tp`, `pp` and the top-level `hardware`;
- heterogeneous: `pools: [{name, instances, hardware, tp, role}]`;
- disaggregated: `disaggregation: {prefill_instances, decode_instances, prefill_tp, ...}`, or
  `pools` with roles `prefill` and `decode` plus a `disaggregation` block for the link and the
  decode router.
`instances` may then be left out; if given it must equal the total over the pools.
"""

from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_serializer, model_validator

from servesim.config.base import Component, Nested, Section
from servesim.config.elastic import AutoscalingConfig, FaultsConfig, MigrationConfig
from servesim.core.errors import ConfigError


class KVLinkConfig(Section):
    bandwidth_gb_s: float = Field(50.0, gt=0, le=1e6)
    """Bandwidth of the link that moves KV from prefill to decode instances, 10^9 bytes per second."""
    latency_s: float = Field(2.0e-5, ge=0, le=60)
    """Fixed time of each transfer, seconds."""
    channels: int = Field(1, ge=1, le=4096)
    """Transfers in flight at once; more wait in a FIFO queue (1: one shared link)."""


class DisaggregationConfig(Section):
    prefill_instances: int = Field(1, ge=1, le=4096)
    """Instances that take arrivals and compute prompts."""
    decode_instances: int = Field(1, ge=1, le=4096)
    """Instances that receive prefilled KV and generate the remaining tokens."""
    prefill_tp: int | None = Field(None, ge=1, le=64)
    """Tensor parallelism of a prefill instance (default: cluster.tp)."""
    decode_tp: int | None = Field(None, ge=1, le=64)
    """Tensor parallelism of a decode instance (default: cluster.tp)."""
    prefill_hardware: str | dict[str, Any] | None = None
    """Accelerator of the prefill pool (default: the top-level hardware)."""
    decode_hardware: str | dict[str, Any] | None = None
    """Accelerator of the decode pool (default: the top-level hardware)."""
    decode_router: Component = "least_tokens"
    """Picks the decode instance of a prefilled request: a router name, `module:Class`, or
    `{name: ..., <params>}`."""
    decode_router_params: dict[str, Any] = {}
    """Older spelling of `decode_router: {name: ..., <params>}`; still accepted."""
    kv_link: Nested[KVLinkConfig] = Field(default_factory=KVLinkConfig)
    """The shared link the KV moves over."""
    prefill_engine: dict[str, Any] | None = None
    """Engine keys of the prefill pool (e.g. `{max_num_seqs: 128, max_num_batched_tokens: 8192}`),
    each replacing the top-level `engine` key."""
    decode_engine: dict[str, Any] | None = None
    """Engine keys of the decode pool (e.g. `{max_num_seqs: 1024}`), each replacing the top-level
    `engine` key."""


POOL_SHAPE_KEYS = (
    "prefill_instances", "decode_instances", "prefill_tp", "decode_tp", "prefill_hardware",
    "decode_hardware", "prefill_engine", "decode_engine",
)


class PoolConfig(Section):
    name: str = Field(min_length=1)
    """Pool name, shown in outputs."""
    instances: int = Field(1, ge=1, le=4096)
    """Instances in this pool."""
    role: Literal["mixed", "prefill", "decode"] = "mixed"
    """`mixed`: colocated prefill and decode; `prefill`/`decode`: one side of a disaggregated cluster."""
    hardware: str | dict[str, Any] | None = None
    """Accelerator (default: the top-level hardware)."""
    tp: int | None = Field(None, ge=1, le=64)
    """Tensor parallelism (default: cluster.tp)."""
    pp: int | None = Field(None, ge=1, le=64)
    """Pipeline stages (default: cluster.pp)."""
    engine: dict[str, Any] | None = None
    """Engine keys of this pool (scheduler, max_num_seqs, ...), each replacing the top-level
    `engine` key."""


class ClusterConfig(Section):
    instances: int = Field(1, ge=1, le=4096)
    """Number of serving instances (model replicas); with pools or disaggregation, their total."""
    router: Component = "round_robin"
    """Routing policy: a built-in name, `module:Class`, or `{name: ..., <params>}`."""
    router_params: dict[str, Any] = {}
    """Older spelling of `router: {name: ..., <params>}`; still accepted."""
    tp: int = Field(1, ge=1, le=64)
    """Tensor-parallel degree of each instance (GPUs per instance)."""
    pp: int = Field(1, ge=1, le=64)
    """Pipeline-parallel stages per instance."""
    pools: list[Nested[PoolConfig]] | None = None
    """Heterogeneous cluster: pools of different hardware, TP or role (replaces `instances`)."""
    disaggregation: Nested[DisaggregationConfig] | None = None
    """Prefill/decode disaggregation; absent: every instance serves requests end to end."""
    autoscaling: Nested[AutoscalingConfig] | None = None
    """Instances join and leave during the run (colocated clusters; docs/elastic.md)."""
    faults: Nested[FaultsConfig] | None = None
    """Instance failures, stragglers and KV-link degradation (docs/elastic.md)."""
    migration: Nested[MigrationConfig] | None = None
    """Move running requests with their KV between instances to rebalance (docs/elastic.md)."""

    _derived_instances: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _count_instances(self):
        total = self._total_instances()
        if total is None:
            return self
        if "instances" in self.model_fields_set and self.instances != total:
            raise ConfigError(
                "cluster.instances",
                f"must equal the instances of the pools ({total}) or be left out, got {self.instances}",
            )
        object.__setattr__(self, "instances", total)
        self._derived_instances = "instances" not in self.model_fields_set
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        data = handler(self)
        if self._derived_instances:
            data.pop("instances", None)  # derived: reloading (with other pool sizes) derives it again
        if self.pools is not None and isinstance(data.get("disaggregation"), dict):
            for key in POOL_SHAPE_KEYS:  # the pools say these; dumped defaults would read as set
                data["disaggregation"].pop(key, None)
        return data

    def engine_overrides(self) -> list[tuple[str, dict]]:
        """(config key, engine keys) of each pool that has its own, in pool order."""
        if self.pools is not None:
            return [(f"cluster.pools.{i}.engine", p.engine or {}) for i, p in enumerate(self.pools)]
        d = self.disaggregation
        if d is not None:
            key = "cluster.disaggregation"
            return [(f"{key}.prefill_engine", d.prefill_engine or {}),
                    (f"{key}.decode_engine", d.decode_engine or {})]
        return [("engine", {})]

    def _total_instances(self) -> int | None:
        pools, dis = self.pools, self.disaggregation
        if pools is None:
            return None if dis is None else dis.prefill_instances + dis.decode_instances
        names = [p.name for p in pools]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ConfigError(f"cluster.pools.{i}.name", f"duplicate pool name {name!r}")
        if not pools:
            raise ConfigError("cluster.pools", "needs at least one pool")
        roles = {p.role for p in pools}
        split = roles & {"prefill", "decode"}
        if split and "mixed" in roles:
            raise ConfigError("cluster.pools", "either all pools are mixed or each is prefill or decode")
        if split and split != {"prefill", "decode"}:
            raise ConfigError("cluster.pools", "a disaggregated cluster needs prefill and decode pools")
        if split and dis is None:
            raise ConfigError(
                "cluster.disaggregation", "prefill/decode pools need this block (kv_link, decode_router)"
            )
        if dis is not None:
            if not split:
                raise ConfigError("cluster.pools", "with disaggregation, pools need role prefill or decode")
            for key in POOL_SHAPE_KEYS:
                if key in dis.model_fields_set:
                    raise ConfigError(f"cluster.disaggregation.{key}", "with cluster.pools, set it per pool")
        return sum(p.instances for p in pools)
