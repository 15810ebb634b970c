"""Composition root: config -> objects. The one place that reads config and the registries."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
from pydantic import ValidationError

from servesim.catalog import HardwareSpec, ModelSpec, get_hardware, get_model
from servesim.config.loader import config_error
from servesim.config.schema import EngineConfig, SimConfig
from servesim.core.cohort import DecodeCohort
from servesim.core.errors import ConfigError
from servesim.core.request import Request, RequestStatus
from servesim.core.rng import stream
from servesim.cost import COST_MODELS
from servesim.cost.layout import Layout
from servesim.cost.parallel import check_layout
from servesim.cost.power import ClockedCostModel, PowerLimit, PowerModel, power_profile
from servesim.cost.profile import resolve_profile
from servesim.cost.work import WorkModel
from servesim.engine import DisaggregationParts, InstanceParts, KVLink
from servesim.engine.power import PowerBudget
from servesim.kv.manager import KVCacheManager
from servesim.metrics.pricing import CarbonIntensity, read_carbon_trace
from servesim.predictors import PREDICTORS
from servesim.routers import ROUTERS
from servesim.schedulers import SCHEDULERS, EngineLimits
from servesim.workload import RequestTable, build_requests
from servesim.workload.filters import REJECT_REASON, FilterResult, LengthLimit, apply_length_filter

ACTIVATION_WORKSPACE_BYTES = 1.0 * 2**30
"""CUDA graphs, allocator slack and library workspaces, beyond per-token activations."""


@dataclass
class Pool:
    """One pool of identical instances, resolved from the cluster config."""

    name: str
    role: str
    instances: int
    hardware: HardwareSpec
    tp: int
    pp: int
    tp_key: str
    """Config key of the pool's TP, for error messages."""
    kv_capacity_tokens: int = 0
    config: SimConfig | None = None
    """The config as this pool sees it: its own engine keys in `engine`."""

    def describe(self, first_index: int) -> dict:
        return {
            "name": self.name, "role": self.role, "instances": self.instances,
            "first_instance": first_index, "hardware": self.hardware.name, "tp": self.tp,
            "pp": self.pp, "kv_capacity_tokens": self.kv_capacity_tokens,
        }


@dataclass
class Built:
    config: SimConfig
    model: ModelSpec
    hardware: HardwareSpec
    table: RequestTable
    requests: list[Request]
    parts: list[InstanceParts]
    router: object
    kv_capacity_tokens: int
    """Per instance of the first pool (see `pools` for each pool's)."""
    pools: list[Pool] | None = None
    disaggregation: DisaggregationParts | None = None
    power_budget: PowerBudget | None = None
    prices: dict[str, float | None] | None = None
    """$/GPU-hour of each pool (None: unknown)."""
    carbon: CarbonIntensity | None = None
    workload_counts: dict | None = None
    """Requests the length filter dropped, clipped or rejected (None: no filter)."""

    def pool_table(self) -> list[dict]:
        out, first = [], 0
        for pool in self.pools or []:
            out.append(pool.describe(first))
            first += pool.instances
        return out


def build(config: SimConfig, table: RequestTable | None = None) -> Built:
    """Objects for a config; `table` replaces the workload's requests (tests, custom traces)."""
    model = get_model(config.model)
    pools = resolve_pools(config)
    for pool, engine in zip(pools, config.pool_engines()):
        pool.config = config if engine is config.engine else config.model_copy(update={"engine": engine})
        check_parallelism(pool.config, model, pool.hardware, pool.tp, pool.pp, pool.tp_key)
        pool.kv_capacity_tokens = kv_capacity_tokens(pool.config, model, pool.hardware, pool.tp, pool.pp)
    limit = length_limit(config, model)
    if table is None:
        drawn = limit if limit is not None and config.workload.filter.action == "drop" else None
        table = build_requests(config.workload, stream(config.seed, "workload"), config.resolve_path,
                               drawn)
    table, filtered = filter_lengths(table, config, limit)
    requests = make_requests(table, config)
    if filtered.rejected is not None:
        for i in np.flatnonzero(filtered.rejected):
            requests[i].status, requests[i].rejected_reason = RequestStatus.REJECTED, REJECT_REASON
    for pool in pools:
        check_policy_blocks(pool.config)
    check_objective_classes(config)
    warn_unmodelled_kv_allocation(config)
    predictor = make_predictor(config)  # one model of lengths, shared by the instances
    parts = []
    for pool in pools:
        for _ in range(pool.instances):
            part = make_instance(
                pool.config, model, pool.hardware, pool.kv_capacity_tokens, len(parts), predictor,
                tp=pool.tp, pp=pool.pp, hash_block_size=table.hash_block_size, pool_name=pool.name,
            )
            part.role, part.pool = pool.role, pool.name
            parts.append(part)
    router = make_router(config)
    disaggregation = make_disaggregation(config, model)
    first = pools[0]
    return Built(
        config, model, first.hardware, table, requests, parts, router, first.kv_capacity_tokens,
        pools, disaggregation, make_power_budget(config, pools), pool_prices(config, pools),
        carbon_intensity(config), filtered.counts(),
    )


def length_limit(config: SimConfig, model: ModelSpec) -> LengthLimit | None:
    """The caps of `workload.filter` (`max_total_tokens: model` is the model's context)."""
    f = config.workload.filter
    if f is None:
        return None
    total = model.max_context if f.max_total_tokens == "model" else f.max_total_tokens
    return LengthLimit(total, f.max_prompt_tokens)


def filter_lengths(table: RequestTable, config: SimConfig, limit: LengthLimit | None):
    """The table after `workload.filter` (trace rows dropped, clipped, marked for rejection)."""
    if limit is None:
        return table, FilterResult(table, active=False)
    action = config.workload.filter.action
    result = apply_length_filter(table, limit.max_total, limit.max_prompt, action)
    return result.table, replace(result, dropped=result.dropped + limit.redrawn)


def resolve_pools(config: SimConfig) -> list[Pool]:
    """The cluster as pools: the homogeneous shorthand, `cluster.pools`, or disaggregation."""
    c, hw = config.cluster, config.hardware
    if c.pools is not None:
        return [
            Pool(
                p.name, p.role, p.instances, get_hardware(p.hardware or hw, f"cluster.pools.{i}.hardware"),
                p.tp or c.tp, p.pp or c.pp, f"cluster.pools.{i}.tp",
            )
            for i, p in enumerate(c.pools)
        ]
    d = c.disaggregation
    if d is not None:
        key = "cluster.disaggregation"
        return [
            Pool("prefill", "prefill", d.prefill_instances,
                 get_hardware(d.prefill_hardware or hw, f"{key}.prefill_hardware"),
                 d.prefill_tp or c.tp, c.pp, f"{key}.prefill_tp"),
            Pool("decode", "decode", d.decode_instances,
                 get_hardware(d.decode_hardware or hw, f"{key}.decode_hardware"),
                 d.decode_tp or c.tp, c.pp, f"{key}.decode_tp"),
        ]
    return [Pool("default", "mixed", c.instances, get_hardware(hw), c.tp, c.pp, "cluster.tp")]


def check_parallelism(
    config: SimConfig, model: ModelSpec, hardware: HardwareSpec, tp: int | None = None,
    pp: int | None = None, tp_key: str = "cluster.tp",
) -> None:
    tp, pp = tp or config.cluster.tp, pp or config.cluster.pp
    try:
        check_layout(model, tp, pp, config.cost.expert_parallel)
    except ConfigError as exc:
        if exc.key != "cluster.tp" or tp_key == "cluster.tp":
            raise
        raise ConfigError(tp_key, str(exc)[len(exc.key) + 2 :]) from None  # name the pool's key
    per_gpu = model.weight_bytes(tp) / pp
    usable = hardware.hbm_bytes * config.engine.gpu_memory_utilization
    if per_gpu >= usable:
        # fits at the default utilization: the lowered utilization is the problem, not the parallelism
        default = EngineConfig.model_fields["gpu_memory_utilization"].default
        key = "engine.gpu_memory_utilization" if per_gpu < hardware.hbm_bytes * default else tp_key
        raise ConfigError(
            key,
            f"{model.name} weights need {per_gpu / 2**30:.1f} GiB per GPU at tp={tp}, pp={pp}, "
            f"more than {usable / 2**30:.1f} GiB usable on {hardware.name}",
        )


def kv_capacity_tokens(
    config: SimConfig, model: ModelSpec, hardware: HardwareSpec, tp: int | None = None,
    pp: int | None = None,
) -> int:
    """HBM x utilisation - weights - activation reserve, over KV bytes per token (per GPU)."""
    engine = config.engine
    tp, pp = tp or config.cluster.tp, pp or config.cluster.pp
    if engine.kv_capacity_tokens is not None:
        if engine.kv_capacity_tokens < engine.block_size:
            raise ConfigError(
                "engine.kv_capacity_tokens",
                f"must hold at least one KV block ({engine.block_size} tokens), "
                f"got {engine.kv_capacity_tokens}",
            )
        return engine.kv_capacity_tokens
    per_token_act = (4 * model.hidden_size + 2 * model.intermediate_size / tp) * 2
    reserve = ACTIVATION_WORKSPACE_BYTES + engine.max_num_batched_tokens * per_token_act
    free = hardware.hbm_bytes * engine.gpu_memory_utilization - model.weight_bytes(tp) / pp - reserve
    tokens = int(free / (model.kv_bytes_per_token(tp) / pp))
    if tokens < engine.block_size:
        raise ConfigError(
            "engine.gpu_memory_utilization",
            f"no memory left for the KV cache on {hardware.name} with {model.name} at tp={tp}",
        )
    return tokens


def make_instance(
    config, model, hardware, capacity_tokens: int, index: int, predictor=None,
    tp: int | None = None, pp: int | None = None, hash_block_size: int = 0, pool_name: str = "default",
) -> InstanceParts:
    engine = config.engine
    tp, pp = tp or config.cluster.tp, pp or config.cluster.pp
    cost = make_cost_model(config, model, hardware, tp, pp)
    power = make_power_model(config, model, hardware, cost, tp, pp, pool_name)
    if power is not None and config.power.limited:
        cost = ClockedCostModel(power)  # the engine and the scheduler see capped step times
    kv = KVCacheManager(
        capacity_tokens // engine.block_size, engine.block_size, watermark=engine.kv_watermark,
        prefix_caching=engine.prefix_caching, hash_block_size=hash_block_size,
    )
    cohort = DecodeCohort(engine.block_size, model.sliding_window)
    limits = EngineLimits(
        engine.max_num_seqs,
        engine.max_num_batched_tokens,
        engine.chunk_size,
        model.max_context,
        engine.preemption,
    )
    scheduler = make_scheduler(config, kv, cohort, limits, cost, predictor)
    # Each GPU copies its own KV shard over its own PCIe link.
    swap_s_per_token = model.kv_bytes_per_token(tp) / pp / (hardware.pcie_gb_s * 1e9)
    return InstanceParts(scheduler, cost, kv, cohort, swap_s_per_token, power=power)


def make_power_model(config, model, hardware, cost, tp: int, pp: int, pool_name: str = "default"):
    """The instance's power model with its pool's cap and clock limit; None for hardware without a
    TDP (no energy accounting), which may then not be capped."""
    p = config.power
    pool = p.pools.get(pool_name)
    cap_w = pool.cap_w if pool is not None and pool.cap_w is not None else p.cap_w
    clock_mhz = pool.clock_mhz if pool is not None and pool.clock_mhz is not None else p.clock_mhz
    key = f"power.pools.{pool_name}" if pool is not None else "power"
    if not hardware.tdp_w:
        if cap_w or clock_mhz or p.budget is not None:
            raise ConfigError(f"{key}.cap_w", f"{hardware.name} has no tdp_w: it cannot be power-capped")
        return None
    path = config.resolve_path(p.profile) if p.profile is not None else None
    profile = power_profile(hardware.family, path)
    cost_profile = resolve_profile(hardware.family, config.resolve_path(config.cost.profile)
                                   if config.cost.profile is not None else None)
    work = WorkModel(Layout(model, tp, pp, config.cost.expert_parallel), cost_profile)
    limit = PowerLimit(cap_w, clock_fraction(hardware, clock_mhz, f"{key}.clock_mhz"))
    return PowerModel(cost, work, hardware, profile, tp=tp, pp=pp, limit=limit)


def clock_fraction(hardware, clock_mhz: float | None, key: str) -> float | None:
    """An SM clock limit in MHz as a fraction of the device's maximum clock."""
    if clock_mhz is None:
        return None
    if not hardware.max_clock_mhz:
        raise ConfigError(key, f"{hardware.name} has no max_clock_mhz in the catalog: a clock limit needs it")
    if clock_mhz > hardware.max_clock_mhz:
        raise ConfigError(key, f"{clock_mhz:g} MHz is above {hardware.name}'s {hardware.max_clock_mhz:g} MHz")
    return clock_mhz / hardware.max_clock_mhz


def pool_prices(config: SimConfig, pools: list[Pool]) -> dict[str, float | None]:
    """$/GPU-hour per pool: `pricing.usd_per_gpu_hour` (one number, or per hardware), else the catalog."""
    given = config.pricing.usd_per_gpu_hour
    if isinstance(given, dict):
        names = {pool.hardware.name for pool in pools}
        for name in given:
            if name not in names:
                raise ConfigError(f"pricing.usd_per_gpu_hour.{name}",
                                  f"no pool runs on {name!r}; hardware: {', '.join(sorted(names))}")
    out = {}
    for pool in pools:
        if isinstance(given, (int, float)):
            out[pool.name] = float(given)
        elif isinstance(given, dict) and pool.hardware.name in given:
            out[pool.name] = float(given[pool.hardware.name])
        else:
            out[pool.name] = pool.hardware.usd_per_hour
    return out


def carbon_intensity(config: SimConfig) -> CarbonIntensity:
    p = config.pricing
    if p.carbon_trace is not None:
        return read_carbon_trace(config.resolve_path(p.carbon_trace))
    return CarbonIntensity.constant(p.carbon_g_per_kwh)


def make_power_budget(config: SimConfig, pools: list[Pool]) -> PowerBudget | None:
    """The cluster power budget, if configured; pools it names must exist."""
    b, names = config.power.budget, [pool.name for pool in pools]
    for name in config.power.pools:
        if name not in names:
            raise ConfigError(f"power.pools.{name}", f"no such pool; pools: {', '.join(names)}")
    if b is None:
        return None
    managed = b.pools if b.pools is not None else names
    for name in managed:
        if name not in names:
            raise ConfigError("power.budget.pools", f"no pool {name!r}; pools: {', '.join(names)}")
    clocks = {}
    for pool in pools:
        if pool.name in managed:
            clocks[pool.name] = clock_fraction(pool.hardware, b.clock_mhz, "power.budget.clock_mhz")
    return PowerBudget(b.budget_w, b.interval_s, b.engage_frac, b.release_frac, b.cap_w, clocks)


def make_scheduler(config, kv, cohort, limits, cost, predictor):
    """The policy named by `engine.scheduler`, with its parameters: a built-in policy's come from
    its own block (`engine.srtf`), a plugin's from `engine.scheduler_params`."""
    engine = config.engine
    name = engine.scheduler
    cls = SCHEDULERS.get(name)
    data, key = engine.scheduler_params, "engine.scheduler_params"
    if name in policy_blocks():
        if data:
            raise ConfigError(key, f"{name} takes its parameters from engine.{name}")
        data, key = getattr(engine, name) or {}, f"engine.{name}"
    params = validate_params(cls, data, key)
    try:
        return cls(kv, cohort, limits, params, predictor=predictor, cost_model=cost)
    except TypeError as exc:  # a plugin whose constructor does not take the protocol's arguments
        raise ConfigError("engine.scheduler", f"cannot construct {name}: {exc}") from None


OWN_KV_ALLOCATION = {"fcfs": "prompt", "chunked_prefill": "chunk"}


def warn_unmodelled_kv_allocation(config: SimConfig) -> None:
    """`engine.kv_allocation` other than the policy's own rule is not modelled yet: say so."""
    wanted, name = config.engine.kv_allocation, config.engine.scheduler
    own = OWN_KV_ALLOCATION.get(name)
    if wanted is not None and wanted != own:
        logging.getLogger("servesim").warning(
            "engine.kv_allocation: %s is not modelled for %s yet; it allocates %s",
            wanted, name, f"per {own}" if own else "by its own rule",
        )


def policy_blocks() -> list[str]:
    """Built-in policies with their own `engine.<name>` config block."""
    return [n for n in SCHEDULERS.names() if n in EngineConfig.model_fields]


def check_policy_blocks(config: SimConfig) -> None:
    """Validate every policy block given, selected or not: a typo must not wait for a sweep."""
    for name in policy_blocks():
        block = getattr(config.engine, name)
        if block is not None:
            validate_params(SCHEDULERS.get(name), block, f"engine.{name}")


def check_objective_classes(config: SimConfig) -> None:
    """`slo.objectives.*.per_class` may only name classes of the workload."""
    names = {c.name for c in config.workload.classes} or {"default"}
    for name, objective in config.slo.objectives.items():
        for cls in objective.per_class:
            if cls not in names:
                raise ConfigError(f"slo.objectives.{name}.per_class.{cls}",
                                  f"unknown class; the workload's: {', '.join(sorted(names))}")


def make_predictor(config: SimConfig):
    """`engine.predictor`: a name, or `{name: ..., <params>}`; draws from the `predictor` stream."""
    spec = config.engine.predictor
    data = {} if isinstance(spec, str) else dict(spec)
    name = spec if isinstance(spec, str) else data.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError("engine.predictor.name", "expected the predictor's name")
    cls = PREDICTORS.get(name)
    params = validate_params(cls, data, "engine.predictor")
    try:
        return cls(params, stream(config.seed, "predictor"))
    except TypeError as exc:
        raise ConfigError("engine.predictor", f"cannot construct {name}: {exc}") from None


def make_cost_model(
    config: SimConfig, model: ModelSpec, hardware: HardwareSpec, tp: int | None = None,
    pp: int | None = None,
):
    """The configured cost model with the hardware family's profile (or `cost.profile`)."""
    c = config.cost
    cls = COST_MODELS.get(c.model)
    path = config.resolve_path(c.profile) if c.profile is not None else None
    return cls(
        model,
        hardware,
        tp=tp or config.cluster.tp,
        pp=pp or config.cluster.pp,
        expert_parallel=c.expert_parallel,
        profile=resolve_profile(hardware.family, path),
        host_overhead_s=c.host_overhead_s,
        prefill_host_overhead_s=c.prefill_host_overhead_s,
    )


def make_router(config: SimConfig):
    cls = ROUTERS.get(config.cluster.router)
    params = validate_params(cls, config.cluster.router_params, "cluster.router_params")
    return cls(params, stream(config.seed, "router"))


def make_disaggregation(config: SimConfig, model: ModelSpec) -> DisaggregationParts | None:
    d = config.cluster.disaggregation
    if d is None:
        return None
    key = "cluster.disaggregation"
    cls = ROUTERS.get(d.decode_router, key=f"{key}.decode_router")
    params = validate_params(cls, d.decode_router_params, f"{key}.decode_router_params")
    router = cls(params, stream(config.seed, "decode_router"))
    link = KVLink(d.kv_link.bandwidth_gb_s * 1e9, d.kv_link.latency_s, d.kv_link.channels)
    # The whole KV of a token (every layer and head), whatever the TP of either side.
    return DisaggregationParts(router, link, model.kv_bytes_per_token(1))


def validate_params(cls, data: dict, key: str):
    params_cls = getattr(cls, "Params", None)
    if params_cls is None:
        if data:
            raise ConfigError(key, f"{cls.__name__} takes no parameters")
        return None
    try:
        return params_cls.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, key) from None


def make_requests(table: RequestTable, config: SimConfig) -> list[Request]:
    slo = config.slo
    hashes = table.prefix_hashes
    classes = table.class_name
    sessions = table.session_id
    priorities = table.priority
    ttft = _per_request(table.ttft_slo, slo.ttft_s, len(table))
    tpot = _per_request(table.tpot_slo, slo.tpot_s, len(table))
    out = []
    columns = (table.arrival_s, table.prompt_tokens, table.output_tokens, ttft, tpot)
    for i, (t, p, o, ttft_i, tpot_i) in enumerate(zip(*(c.tolist() for c in columns))):
        r = Request(i, t, p, o, ttft_slo=ttft_i, tpot_slo=tpot_i)
        if hashes is not None:
            r.prefix_hashes = hashes[i]
        if classes is not None:
            r.class_name = str(classes[i])
        if sessions is not None:
            r.session_id = int(sessions[i])
        if priorities is not None:
            r.priority = int(priorities[i])
        out.append(r)
    return out


def _per_request(values, default: float, n: int) -> np.ndarray:
    """Per-request SLOs (multi-class workloads); NaN, or no column, means the global objective."""
    return np.full(n, default) if values is None else np.where(np.isnan(values), default, values)
