"""Composition of an elastic cluster (`cluster.autoscaling`, `faults`, `migration`): the part of
build.py that turns those blocks into `engine.elastic.ElasticParts`."""

from __future__ import annotations

from servesim.core.errors import ConfigError
from servesim.core.rng import stream
from servesim.elastic import AUTOSCALERS, REBALANCERS
from servesim.engine.elastic import ElasticParts
from servesim.engine.transfer import KVLink


def elastic_parts(config, model, pool, make_part) -> ElasticParts | None:
    c = config.cluster
    if c.autoscaling is None and c.faults is None and c.migration is None:
        return None
    auto = c.autoscaling
    initial = c.instances
    parts = ElasticParts(make_part, initial)
    if c.disaggregation is not None or (c.pools is not None and len(c.pools) > 1):
        f = c.faults
        if auto is not None or c.migration is not None or f.failures or f.mtbf_s is not None:
            raise ConfigError(
                "cluster", "autoscaling, failures and migration need one colocated pool of "
                "instances (stragglers and link degradation work on any cluster)",
            )
        parts.static = True  # a fixed fleet: only the slowdowns apply
    else:
        parts.static = False
    if auto is not None:
        if not auto.min_instances <= initial <= auto.max_instances:
            raise ConfigError(
                "cluster.instances",
                f"the initial fleet must lie within autoscaling min/max "
                f"[{auto.min_instances}, {auto.max_instances}], got {initial}",
            )
        parts.autoscaling = auto
        parts.autoscaler = AUTOSCALERS.create(auto.policy, "cluster.autoscaling.policy")
        parts.cold_start_s = cold_start_s(auto.cold_start, model, pool.tp, pool.pp)
    if c.faults is not None:
        parts.faults = c.faults
        parts.fault_rng = stream(config.seed, "faults")
        if auto is None:
            # repaired instances cold-start too
            parts.cold_start_s = cold_start_s(_default_cold_start(), model, pool.tp, pool.pp)
        for i, s in enumerate(c.faults.stragglers):
            if s.instance >= (initial if auto is None else max(initial, auto.max_instances)):
                raise ConfigError(f"cluster.faults.stragglers.{i}.instance", "no such instance")
    if c.migration is not None:
        m = c.migration
        parts.migration = m
        parts.rebalancer = REBALANCERS.create(m.policy, "cluster.migration.policy")
        parts.migration_link = KVLink(m.bandwidth_gb_s * 1e9, m.latency_s, m.channels)
        parts.kv_bytes_per_token = model.kv_bytes_per_token(1)
    return parts


def cold_start_s(cold, model, tp: int, pp: int) -> float:
    """Fixed start time plus each GPU's weight shard over its load bandwidth (GPUs load at once)."""
    return cold.fixed_s + model.weight_bytes(tp) / pp / (cold.load_bandwidth_gb_s * 1e9)


def _default_cold_start():
    from servesim.config.elastic import ColdStartConfig

    return ColdStartConfig()
