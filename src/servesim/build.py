"""Composition root: config -> objects. The one place that reads config and the registries."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from servesim.build_kv import KVSetup
from servesim.catalog import HardwareSpec, ModelSpec, get_hardware, get_model
from servesim.config.base import split_component
from servesim.config.schema import EngineConfig, SimConfig
from servesim.core.cohort import DecodeCohort
from servesim.core.errors import ConfigError
from servesim.core.request import Request, RequestStatus
from servesim.core.rng import stream
from servesim.cost import COST_MODELS
from servesim.cost.engines import apply_engine
from servesim.cost.layout import Layout
from servesim.cost.parallel import check_layout
from servesim.cost.power import ClockedCostModel, PowerLimit, PowerModel, power_profile
from servesim.cost.profile import resolve_profile
from servesim.cost.work import WorkModel
from servesim.engine import DisaggregationParts, InstanceParts, KVLink
from servesim.engine.power import PowerBudget
from servesim.metrics.pricing import CarbonIntensity, read_carbon_trace
from servesim.predictors import PREDICTORS
from servesim.registry import validate_params
from servesim.routers import ROUTERS
from servesim.schedulers import BATCHINGS, POLICIES, EngineLimits, Scheduler
from servesim.workload import RequestTable, build_requests
from servesim.workload.factory import RequestFactory
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
    factory: RequestFactory
    """Makes row i of `table` as request i (`requests`, or on arrival: `engine.stream`)."""
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
    elastic: object | None = None
    """`engine.elastic.ElasticParts` when the fleet changes during the run (autoscaling, faults,
    migration); `parts` then only describes the initial instances."""
    kv_setup: KVSetup | None = None
    refused: np.ndarray | None = None
    """Rows the length filter rejected before the run (None: none)."""

    @cached_property
    def requests(self) -> list[Request]:
        """One `Request` per table row, made on first access; `run` then simulates these objects.
        A run that never asks for them makes each on arrival and drops it when it ends."""
        return make_requests(self.factory, self.refused)

    @property
    def requests_made(self) -> bool:
        """Whether `requests` exist as objects (asked for, or the workload's programs need them)."""
        return "requests" in self.__dict__

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
    factory = RequestFactory(table, config.slo.ttft_s, config.slo.tpot_s)
    for pool in pools:
        check_policy_blocks(pool.config)
    check_objective_classes(config)
    predictor = make_predictor(config)  # one model of lengths, shared by the instances
    kv_setup = KVSetup(config, model)  # the tiers of each instance, the shared pool
    parts = []
    for pool in pools:
        for _ in range(pool.instances):
            part = make_instance(
                pool.config, model, pool.hardware, pool.kv_capacity_tokens, len(parts), predictor,
                tp=pool.tp, pp=pool.pp, hash_block_size=table.hash_block_size, pool_name=pool.name,
                kv_setup=kv_setup,
            )
            part.role, part.pool = pool.role, pool.name
            parts.append(part)
    router = make_router(config)
    disaggregation = make_disaggregation(config, model)
    first = pools[0]

    def make_part(index: int) -> InstanceParts:
        return make_instance(
            config, model, first.hardware, first.kv_capacity_tokens, index, predictor,
            tp=first.tp, pp=first.pp, hash_block_size=table.hash_block_size,
        )

    elastic = make_elastic(config, model, first, make_part)
    built = Built(
        config, model, first.hardware, table, factory, parts, router, first.kv_capacity_tokens,
        pools, disaggregation, make_power_budget(config, pools), pool_prices(config, pools),
        carbon_intensity(config), filtered.counts(), elastic, kv_setup, filtered.rejected,
    )
    if table.program_id is not None or elastic is not None:
        _ = built.requests  # programs link calls, elastic fleets hand requests over: objects up front
    return built


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
    kv_setup: KVSetup | None = None,
) -> InstanceParts:
    engine = config.engine
    tp, pp = tp or config.cluster.tp, pp or config.cluster.pp
    cost = make_cost_model(config, model, hardware, tp, pp)
    power = make_power_model(config, model, hardware, cost, tp, pp, pool_name)
    if power is not None and config.power.limited:
        cost = ClockedCostModel(power)  # the engine and the scheduler see capped step times
    kv_setup = kv_setup or KVSetup(config, model)
    kv = kv_setup.manager(
        capacity_tokens // engine.block_size, hash_block_size, hardware, tp, engine,
        cohort=DecodeCohort(engine.block_size, model.sliding_window),
    )
    limits = EngineLimits(
        engine.max_num_seqs,
        engine.max_num_batched_tokens,
        engine.chunk_size,
        model.max_context,
        engine.preemption,
        engine.kv_allocation,
    )
    policy, batching = make_policy(config), make_batching(config)
    scheduler = Scheduler(kv, limits, policy, batching, predictor=predictor, cost_model=cost)
    # Each GPU copies its own KV shard over its own PCIe link.
    swap_s_per_token = model.kv_bytes_per_token(tp) / pp / (hardware.pcie_gb_s * 1e9)
    return InstanceParts(
        scheduler, cost, kv, swap_s_per_token, max_run_steps=engine.max_run_steps, power=power
    )


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
    cost_profile = engine_profile(config, hardware)
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


LEGACY_POLICY_BLOCKS = ("srtf", "edf", "priority")
"""Policies whose parameters an older spelling gave in `engine.<name>`."""


def make_policy(config: SimConfig):
    """`engine.scheduler`, with the older spellings folded in: the `chunked_prefill` alias (fcfs
    with chunked batching), `engine.scheduler_params` and the `engine.<policy>` blocks."""
    engine = config.engine
    name, _ = split_component(engine.scheduler)
    spec = name if name == "chunked_prefill" else engine.scheduler  # its params: batching's
    spec = _fold_legacy(POLICIES, spec, "engine.scheduler", engine.scheduler_params,
                        "engine.scheduler_params")
    if name in LEGACY_POLICY_BLOCKS:
        spec = _fold_legacy(POLICIES, spec, "engine.scheduler", getattr(engine, name),
                            f"engine.{name}")
    return POLICIES.create(spec, "engine.scheduler")


def _chunked_path(config: SimConfig, engine) -> str | None:
    """`batched` for an engine layer calibrated on whole-prompt steps, run here with chunked
    batching: engines that chunk prompts attend over the paged cache in one call for all of a
    step's chunks (vLLM-style varlen/paged kernels), whereas whole-prompt steps run attention per
    prompt, so the per-chunk calls a whole-prompt run teaches do not carry over. A profile or config
    that states `prefill_attention: batched` (or `cost.prefill_attention`) decides instead."""
    if not engine.has_host or engine.prefill_attention != "per_chunk":
        return None
    return "batched" if chunked_batching(config) else None


def chunked_batching(config: SimConfig) -> bool:
    """The engine splits prompts into chunks (`engine.batching: chunked` or `chunked_prefill`)."""
    name = split_component(config.engine.scheduler)[0]
    return name == "chunked_prefill" or split_component(config.engine.batching)[0] == "chunked"


def make_batching(config: SimConfig):
    """`engine.batching`; `chunked` for the `chunked_prefill` alias (with its parameters, or the
    older `engine.chunked_prefill` block)."""
    engine = config.engine
    name, params = split_component(engine.scheduler)
    spec = engine.batching
    if name == "chunked_prefill":  # the default `whole` gives way; another batching is a conflict
        if split_component(spec)[0] not in ("whole", "chunked"):
            raise ConfigError(
                "engine.batching", "scheduler chunked_prefill means fcfs with chunked batching"
            )
        if split_component(spec)[0] == "chunked":
            params = {**split_component(spec)[1], **params}
        spec = {"name": "chunked", **params} if params else "chunked"
    legacy = engine.chunked_prefill
    if legacy and split_component(spec)[0] == "chunked":
        spec = _fold_legacy(BATCHINGS, spec, "engine.batching", legacy, "engine.chunked_prefill")
    elif legacy:
        validate_params(BATCHINGS.get("chunked"), legacy, "engine.chunked_prefill")
    return BATCHINGS.create(spec, "engine.batching")


def _fold_legacy(registry, spec, key: str, legacy: dict | None, legacy_key: str):
    """A component value with an older parameter block folded in (validated under its key)."""
    if not legacy:
        return spec
    name, params = split_component(spec)
    if params:
        raise ConfigError(legacy_key, f"parameters of {name} are also given in {key}")
    validate_params(registry.get(name, key), legacy, legacy_key)
    return {"name": name, **legacy}


def check_policy_blocks(config: SimConfig) -> None:
    """Validate the scheduling choices, and every older-spelling policy block given, selected or
    not: a typo must not wait for a sweep to select that policy."""
    for name in LEGACY_POLICY_BLOCKS:
        block = getattr(config.engine, name)
        if block is not None:
            validate_params(POLICIES.get(name), block, f"engine.{name}")
    make_policy(config)
    make_batching(config)


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
    return PREDICTORS.create(
        config.engine.predictor, "engine.predictor", rng=stream(config.seed, "predictor")
    )


def engine_profile(config: SimConfig, hardware: HardwareSpec):
    """The hardware family's profile (or `cost.profile`) as the configured engine (`engine.kind`) runs it."""
    path = config.resolve_path(config.cost.profile) if config.cost.profile is not None else None
    kind = config.engine.kind
    if kind is not None and kind.endswith((".yaml", ".yml")):
        kind = str(config.resolve_path(kind))
    return apply_engine(resolve_profile(hardware.family, path), kind, host_cpu=hardware.host_cpu,
                        scheduler_steps=config.engine.num_scheduler_steps)


def make_cost_model(
    config: SimConfig, model: ModelSpec, hardware: HardwareSpec, tp: int | None = None,
    pp: int | None = None,
):
    """The configured cost model with the hardware family's profile (or `cost.profile`) and engine."""
    c = config.cost
    profile = engine_profile(config, hardware)
    attention = c.prefill_attention or _chunked_path(config, profile.engine)
    if attention is not None:  # the engine's code path in this configuration
        profile = replace(profile, engine=replace(profile.engine, prefill_attention=attention))
    return COST_MODELS.create(
        c.model,
        "cost.model",
        model=model,
        hardware=hardware,
        tp=tp or config.cluster.tp,
        pp=pp or config.cluster.pp,
        expert_parallel=c.expert_parallel,
        profile=profile,
        host_overhead_s=c.host_overhead_s,
        prefill_host_overhead_s=c.prefill_host_overhead_s,
    )


def make_router(config: SimConfig):
    c = config.cluster
    spec = _fold_legacy(ROUTERS, c.router, "cluster.router", c.router_params, "cluster.router_params")
    return ROUTERS.create(spec, "cluster.router", rng=stream(config.seed, "router"))


def make_disaggregation(config: SimConfig, model: ModelSpec) -> DisaggregationParts | None:
    d = config.cluster.disaggregation
    if d is None:
        return None
    key = "cluster.disaggregation.decode_router"
    spec = _fold_legacy(ROUTERS, d.decode_router, key, d.decode_router_params, f"{key}_params")
    router = ROUTERS.create(spec, key, rng=stream(config.seed, "decode_router"))
    link = KVLink(d.kv_link.bandwidth_gb_s * 1e9, d.kv_link.latency_s, d.kv_link.channels)
    # The whole KV of a token (every layer and head), whatever the TP of either side.
    return DisaggregationParts(router, link, model.kv_bytes_per_token(1))


def make_elastic(config: SimConfig, model: ModelSpec, pool: Pool, make_part):
    """`engine.elastic.ElasticParts` for `cluster.autoscaling` / `faults` / `migration`, or None."""
    c = config.cluster
    if c.autoscaling is None and c.faults is None and c.migration is None:
        return None  # a fixed fleet does not import the autoscalers and rebalancers
    from servesim.build_elastic import elastic_parts  # its own module: build.py stays small

    return elastic_parts(config, model, pool, make_part)


def make_requests(factory: RequestFactory, refused: np.ndarray | None = None) -> list[Request]:
    """Every row of the factory's table as a request (`refused` rows: rejected by the filter)."""
    out = [factory.make(i) for i in range(len(factory))]
    if refused is not None:
        for i in np.flatnonzero(refused).tolist():
            out[i].status, out[i].rejected_reason = RequestStatus.REJECTED, REJECT_REASON
    if factory.table.program_id is not None:
        link_program_calls(out, factory.table)
    return out


def link_program_calls(requests: list[Request], table: RequestTable) -> None:
    """Agentic calls: program ids, parents as request ids, and each call's tool time before the
    program's next call (what KV retention and program-aware eviction read)."""
    by_call = {(int(p), int(c)): i for i, (p, c) in enumerate(zip(table.program_id, table.call_index))}
    for i, r in enumerate(requests):
        r.program_id = int(table.program_id[i])
        r.program_parents = tuple(by_call[(r.program_id, c)] for c in table.call_parents[i])
        r.program_wait_s = float(table.tool_s[i])
        for parent in r.program_parents:  # the parent's soonest next call
            before = requests[parent].program_tool_s
            requests[parent].program_tool_s = (
                r.program_wait_s if math.isnan(before) else min(before, r.program_wait_s)
            )


