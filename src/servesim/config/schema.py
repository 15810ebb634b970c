"""The whole config tree. Everything a run depends on is here; derived values live in build.py."""

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from servesim.config.base import Component, Nested, Section
from servesim.config.cluster import ClusterConfig
from servesim.config.cost import CostConfig
from servesim.config.kv import KVConfig
from servesim.config.power import PowerConfig, PricingConfig
from servesim.config.slo import SLOObjective, check_names
from servesim.config.workload import WorkloadConfig
from servesim.core.errors import ConfigError


class EngineConfig(Section):
    kind: str | None = None
    """The serving engine the cost model prices: a shipped engine profile (`tensorrt-llm`,
    `tensorrt-llm-pytorch`, `vllm`, `vllm-rocm-2024`, `vllm-cuda-v0`, `sglang`, `jetstream`, `mindie`,
    `optimum-habana`, `tgi-gaudi`) or an engine profile YAML (a profile from `servesim costmodel calibrate
    --engine-run` included); its kernel behaviours, efficiency scales and host layer go on top of the
    device profile (docs/cost-model.md §4). Default: the device profile alone."""
    num_scheduler_steps: int = Field(1, ge=1, le=1024)
    """Decode steps the engine runs per scheduling (vLLM V0's `--num-scheduler-steps`): a pure-decode
    step waits for 1/N of the engine profile's serial host time. Only the price changes: the simulated
    scheduler still admits requests at every step."""
    scheduler: Component = "fcfs"
    """Scheduling policy (the order of requests): `fcfs`, `srtf`, `edf`, `priority`, `module:Class`,
    or `{name: srtf, aging_s: 30}` with the policy's parameters. `chunked_prefill` is `fcfs` with
    `batching: chunked`."""
    batching: Component = "whole"
    """How a step is filled: `whole` prompts (vLLM without chunked prefill) or `chunked` (Sarathi:
    decodes first, then prompt chunks up to `chunk_size`; `{name: chunked, max_prefills: 4}`)."""
    max_num_seqs: int = Field(256, ge=1, le=65536)
    """Most requests running (holding KV and scheduled) at once."""
    max_num_batched_tokens: int = Field(8192, ge=1, le=10_000_000)
    """Most tokens computed in one step (whole-prompt batching)."""
    chunk_size: int = Field(512, ge=1, le=10_000_000)
    """Chunked batching: the per-step token budget (decode tokens count against it)."""
    block_size: int = Field(16, ge=1, le=4096)
    """KV cache block size, tokens."""
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    """Fraction of HBM the engine may use (weights + activations + KV)."""
    kv_capacity_tokens: int | None = Field(None, ge=1)
    """Override the KV capacity derived from memory (what-if studies)."""
    kv_allocation: Literal["prompt", "chunk"] = "prompt"
    """When admission takes KV blocks: `prompt` holds everything a request must compute before
    its next token at once (vLLM v0), `chunk` only each scheduled chunk (vLLM v1, Hugging Face).
    The same under whole-prompt batching."""
    kv_watermark: float = Field(0.01, ge=0, lt=1)
    """Fraction of KV blocks admission keeps free while other requests hold KV (vLLM's 1%)."""
    prefix_caching: bool = False
    """Reuse KV blocks of shared prompt prefixes."""
    preemption: Literal["recompute", "swap"] = "recompute"
    """What happens to a preempted request's KV: dropped and recomputed, or copied to host memory
    and back over PCIe."""
    predictor: Component = "oracle"
    """Output-length predictor: a name (`oracle`, `noisy_oracle`, `bucket`, `mean`, `module:Class`)
    or a block `{name: noisy_oracle, sigma: 0.5}` with the predictor's parameters."""
    check_kv_conservation: bool = False
    """Debug mode: check KV block conservation after every step of every instance (slower); a
    violation stops the run with `KVConservationError` naming the counts."""
    max_run_steps: int = Field(4096, ge=1, le=1 << 20)
    """Most identical decode steps simulated as one event. Results do not depend on it (1 steps one
    iteration at a time, for checking that); only speed does."""
    scheduler_params: dict[str, Any] = {}
    """Older spelling of `scheduler: {name: ..., <params>}` for plugins; still accepted."""
    chunked_prefill: dict[str, Any] | None = None
    """Older spelling of `batching: {name: chunked, <params>}`; still accepted."""
    srtf: dict[str, Any] | None = None
    """Older spelling of `scheduler: {name: srtf, <params>}`; still accepted (validated always)."""
    edf: dict[str, Any] | None = None
    """Older spelling of `scheduler: {name: edf, <params>}`; still accepted (validated always)."""
    priority: dict[str, Any] | None = None
    """Older spelling of `scheduler: {name: priority, <params>}`; still accepted (validated always)."""


class SLOConfig(Section):
    ttft_s: float = Field(1.0, gt=0)
    """Time-to-first-token objective, seconds."""
    tpot_s: float = Field(0.1, gt=0)
    """Time-per-output-token objective, seconds."""
    objectives: dict[str, Nested[SLOObjective]] = {}
    """More objectives by name (absolute, per-token, slowdown, per-class limits), each reported with
    its attainment and goodput (`slo.objectives.NAME`); see docs/metrics.md."""

    @field_validator("objectives")
    @classmethod
    def _objective_names(cls, value):
        return check_names(value)


class OutputConfig(Section):
    dir: str | None = None
    """Where `servesim run` writes; default `out/<config name>`."""
    requests_csv: bool = True
    """Write requests.csv."""
    timeseries_csv: bool = True
    """Write timeseries.csv: per-instance queue, batch, KV usage and busy share over time."""
    timeseries_interval_s: float | None = Field(None, gt=0)
    """Bin width of timeseries.csv, seconds (default: about 200 bins over the run)."""


class SimConfig(Section):
    seed: int = Field(0, ge=0, le=2**63 - 1)
    """The one seed; every subsystem derives its own stream from it."""
    model: str | dict[str, Any] = "llama3-8b"
    """Catalog model name or an inline spec."""
    hardware: str | dict[str, Any] = "h100-sxm"
    """Catalog hardware name or an inline spec."""
    cluster: Nested[ClusterConfig] = Field(default_factory=ClusterConfig)
    engine: Nested[EngineConfig] = Field(default_factory=EngineConfig)
    workload: Nested[WorkloadConfig] = Field(default_factory=WorkloadConfig)
    cost: Nested[CostConfig] = Field(default_factory=CostConfig)
    kv: Nested[KVConfig] = Field(default_factory=KVConfig)
    """KV tiers (DRAM, SSD), the cluster-wide pool, eviction policies, agentic retention."""
    slo: Nested[SLOConfig] = Field(default_factory=SLOConfig)
    power: Nested[PowerConfig] = Field(default_factory=PowerConfig)
    """Power model, caps and clock limits, a cluster power budget (docs/energy.md)."""
    pricing: Nested[PricingConfig] = Field(default_factory=PricingConfig)
    """Dollars per GPU-hour and grid carbon intensity (docs/energy.md)."""
    output: Nested[OutputConfig] = Field(default_factory=OutputConfig)
    max_sim_time_s: float | None = Field(None, gt=0)
    """Stop the simulation at this simulated time if it has not ended before (a run ends when every
    request has finished, been rejected or failed); requests still in flight then are counted as
    unfinished. The steps that ended before the limit count (tokens, step log, energy), the step
    in flight at it does not, whether steps run one by one or as runs."""

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    # A tuple default, not `default_factory=list`: pydantic inspects a factory's signature, and
    # `list`'s is text that the tokenizer parses (~3 ms of each start, for its regular expressions).
    _pool_engines: tuple[EngineConfig, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _resolve_pool_engines(self):
        """Each pool's engine: the top-level one with the pool's keys replaced, validated now."""
        base = self.engine.model_dump(mode="python", exclude_unset=True)
        engines = []
        for key, override in self.cluster.engine_overrides():
            try:
                engines.append(EngineConfig.model_validate({**base, **override}) if override else self.engine)
            except ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(p) for p in err["loc"])
                msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                raise ConfigError(f"{key}.{loc}", msg) from None
        self._pool_engines = tuple(engines)
        return self

    def pool_engines(self) -> list[EngineConfig]:
        """The engine of each pool, in the order of `build.resolve_pools`."""
        return list(self._pool_engines)

    @property
    def base_dir(self) -> Path:
        """Folder of the config file: relative paths fall back to it after the working directory."""
        return self._base_dir

    def resolve_path(self, path: str | Path) -> Path:
        p = Path(path)
        if p.is_absolute() or p.exists():
            return p
        beside = self._base_dir / p
        return beside if beside.exists() else p
