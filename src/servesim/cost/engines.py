"""Engine profiles: what a serving engine changes on top of a device's cost profile.

The same GPU runs a model at different speeds under TensorRT-LLM, vLLM, SGLang, JetStream or MindIE:
their decode-attention kernels read the KV cache differently (split over the context, or every slot of
a static padded cache), their MoE kernels differ, their host (CPU) work per step and per request
differs, and so do their default batching limits. A device profile (`cost/profile.py`) prices kernels;
an engine profile, named by `engine.kind` in a config, says which kernel behaviours apply, scales the
kernel efficiencies relative to the reference engine (TensorRT-LLM, 1.0), and brings the engine's host
layer (`cost/host.py`). Shipped engine profiles live in `engines/<kind>.yaml`; a cost profile written by
`servesim costmodel calibrate --engine-run` is an engine profile too (its fitted `engine:` host layer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from servesim.core.errors import InputFileError
from servesim.core.files import read_yaml
from servesim.cost.host import EngineProfile, engine_from_dict
from servesim.cost.profile import CHOICES, CostProfile

ENGINE_DIR = Path(__file__).parent / "engines"
SCALED = (
    "gemm_compute_eff", "gemm_memory_eff", "attn_prefill_eff", "attn_prefix_eff",
    "attn_decode_memory_eff", "elementwise_memory_eff", "moe_grouped_eff", "comm_bw_eff",
)
"""Efficiencies an engine profile may scale (its kernels against the reference engine's)."""
BEHAVIOURS = (*CHOICES, "attn_decode_blocks_per_core")
"""Kernel behaviours an engine profile may set: the choices (`decode_attention`, `moe_kernels`) and
whether one sequence limits decode-attention parallelism (0: the kernel splits long contexts)."""
BATCHING = ("max_num_batched_tokens", "max_num_seqs", "chunked_prefill", "static_batches")
"""The engine's documented batching defaults (used where a setup does not state them)."""
KEYS = ("description", "source", "behaviours", "scale", "batching", "engine", "host_cpu_scale")


@dataclass(frozen=True)
class EngineKind:
    name: str
    description: str = ""
    source: str = ""
    behaviours: dict[str, str | float] = field(default_factory=dict, hash=False)
    """Profile choices the engine's kernels impose (`decode_attention: padded_cache`, ...)."""
    scale: dict[str, float] = field(default_factory=dict, hash=False)
    """Multipliers of the device profile's efficiencies (1: as fast as the reference engine)."""
    batching: dict[str, float | bool] = field(default_factory=dict, hash=False)
    """Batching defaults: token budget, sequences, chunked prefill, static batches."""
    host: EngineProfile | None = None
    """The engine's host layer; None keeps the device profile's."""
    host_cpu_scale: dict[str, float] = field(default_factory=dict, hash=False)
    """Host time on a server with this host CPU (`HardwareSpec.host_cpu`) over host time on the x86
    servers the host layer was fitted on; a CPU not listed: 1."""

    def apply(self, profile: CostProfile, host_cpu: str = "x86", scheduler_steps: int = 1) -> CostProfile:
        """The device profile as this engine runs it on a server with that host CPU, scheduling
        `scheduler_steps` decode steps at a time (vLLM V0's `--num-scheduler-steps`)."""
        values: dict = dict(self.behaviours)
        values.update({k: getattr(profile, k) * v for k, v in self.scale.items()})
        out = profile.with_values(**values) if values else profile
        if self.host is None:
            return out
        # A device profile calibrated on an engine's own logs carries measured host terms: they win.
        mine = out.engine
        factor = self.host_cpu_scale.get(host_cpu, 1.0)
        terms = {**self.host.host, **{k: v for k, v in mine.host.items() if v}}
        host = EngineProfile(mine.graph_batch_sizes or self.host.graph_batch_sizes,
                             {k: v * factor for k, v in terms.items()},
                             mine.prefill_attention if mine.has_host else self.host.prefill_attention,
                             decode_serial_share=1.0 / scheduler_steps)
        return replace(out, engine=host)


def engine_kinds() -> list[str]:
    """Names of the shipped engine profiles."""
    return sorted(p.stem for p in ENGINE_DIR.glob("*.yaml"))


def resolve_engine(kind: str, key: str = "engine.kind") -> EngineKind:
    """A shipped engine profile by name, or an engine/cost profile file; errors name `key`."""
    shipped = ENGINE_DIR / f"{kind}.yaml"
    if shipped.is_file():
        return _load(str(shipped), kind)
    path = Path(kind)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return _load(str(path.resolve()), path.stem)
    from servesim.core.errors import ConfigError

    raise ConfigError(key, f"unknown engine {kind!r}: expected one of {', '.join(engine_kinds())} "
                           "or an engine profile YAML file")


def apply_engine(profile: CostProfile, kind: str | None, key: str = "engine.kind",
                 host_cpu: str = "x86", scheduler_steps: int = 1) -> CostProfile:
    """The profile as engine `kind` runs it on a server with that host CPU, `scheduler_steps` decode
    steps per scheduling (unset kind: as is)."""
    return profile if not kind else resolve_engine(kind, key).apply(profile, host_cpu, scheduler_steps)


@lru_cache(maxsize=32)
def _load(path: str, name: str) -> EngineKind:
    data = read_yaml(Path(path), "engine profile") or {}
    if not isinstance(data, dict):
        raise InputFileError(path, "expected a mapping (an engine profile)")
    if "parameters" in data:  # a calibrated cost profile: its engine layer is the engine profile
        return EngineKind(name, description=f"host layer of {path}",
                          host=engine_from_dict(data.get("engine") or {}, path))
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise InputFileError(path, f"unknown key {unknown[0]!r}; expected {', '.join(KEYS)}")
    return EngineKind(
        name,
        description=str(data.get("description", "")),
        source=str(data.get("source", "")),
        behaviours=_behaviours(data.get("behaviours") or {}, path),
        scale=_scale(data.get("scale") or {}, path),
        batching=_batching(data.get("batching") or {}, path),
        host=engine_from_dict(data["engine"], path) if "engine" in data else None,
        host_cpu_scale=_host_cpu_scale(data.get("host_cpu_scale") or {}, path),
    )


def _host_cpu_scale(data: dict, where: str) -> dict[str, float]:
    from servesim.catalog.specs import HOST_CPUS

    return _factors(data, "host_cpu_scale", HOST_CPUS, "CPU", 100, where)


def _behaviours(data: dict, where: str) -> dict:
    for key, value in _mapping(data, "behaviours", where).items():
        if key not in BEHAVIOURS:
            raise InputFileError(where, f"behaviours: unknown key {key!r}; expected {', '.join(BEHAVIOURS)}")
        if key in CHOICES and value not in CHOICES[key]:
            raise InputFileError(where, f"behaviours.{key}: expected one of {', '.join(CHOICES[key])}")
        if key not in CHOICES and (isinstance(value, bool) or not isinstance(value, (int, float))
                                   or not 0 <= value < math.inf):
            raise InputFileError(where, f"behaviours.{key}: expected a number >= 0, got {value!r}")
    return {k: (v if k in CHOICES else float(v)) for k, v in data.items()}


def _scale(data: dict, where: str) -> dict[str, float]:
    return _factors(data, "scale", SCALED, "key", 4, where)


def _factors(data: dict, section: str, known, noun: str, high: float, where: str) -> dict[str, float]:
    """`section`: a mapping of `known` names to finite factors in (0, high]."""
    for key, value in _mapping(data, section, where).items():
        if key not in known:
            raise InputFileError(where, f"{section}: unknown {noun} {key!r}; expected {', '.join(known)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= high \
                or not math.isfinite(value):
            raise InputFileError(where, f"{section}.{key}: expected a number in (0, {high}], got {value!r}")
    return {k: float(v) for k, v in data.items()}


def _batching(data: dict, where: str) -> dict:
    for key, value in _mapping(data, "batching", where).items():
        if key not in BATCHING:
            raise InputFileError(where, f"batching: unknown key {key!r}; expected {', '.join(BATCHING)}")
        flag = key in ("chunked_prefill", "static_batches")
        if flag != isinstance(value, bool) or (not flag and (not isinstance(value, int) or value < 1)):
            kind = "true or false" if flag else "a positive integer"
            raise InputFileError(where, f"batching.{key}: expected {kind}, got {value!r}")
    return dict(data)


def _mapping(data, name: str, where: str) -> dict:
    if not isinstance(data, dict):
        raise InputFileError(where, f"{name}: expected a mapping")
    return data
