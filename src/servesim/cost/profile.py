"""Calibration profiles: the efficiency and overhead parameters of the roofline, per device family.

Every rate is a fraction of the spec sheet (peak FLOP/s, HBM and link bandwidth) and every overhead is
in seconds, so one profile, fitted on one device, prices its siblings from their spec sheets alone.
Shipped profiles live in `profiles/<family>.yaml`; `servesim costmodel calibrate` writes new ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path

import yaml

from servesim.core.errors import ConfigError, InputFileError
from servesim.core.files import read_yaml, write_file
from servesim.cost.host import HOST_TERMS, EngineProfile, engine_from_dict

PROFILE_DIR = Path(__file__).parent / "profiles"
DEFAULT_FAMILY = "generic"


@dataclass(frozen=True)
class CostProfile:
    """The fitted efficiencies and overheads of one device family that the roofline prices with."""

    # -- GEMMs (linear layers) ----------------------------------------------------------------------
    gemm_compute_eff: float = 0.75
    """Fraction of peak FLOP/s that a large GEMM sustains."""
    gemm_pad_rows: float = 96.0
    """A GEMM of M rows computes as if it had M + pad rows (tile padding, pipeline fill):
    efficiency(M) = gemm_compute_eff * M / (M + pad)."""
    gemm_memory_eff: float = 0.85
    """Fraction of HBM bandwidth when a GEMM streams its weights and activations."""
    gemm_latency_s: float = 3.0e-6
    """Per GEMM, beyond the launch overhead: pipeline fill and drain (memory latency, last wave)."""
    # -- attention ----------------------------------------------------------------------------------
    attn_prefill_eff: float = 0.55
    """Fraction of peak FLOP/s of causal attention over a fresh prompt (no cached prefix)."""
    attn_prefill_pad_tokens: float = 256.0
    """Short fresh prompts run slower: efficiency(c) = attn_prefill_eff * c / (c + pad)."""
    attn_prefix_eff: float = 0.3
    """Fraction of peak FLOP/s of attention for a chunk that follows cached context (chunked prefill),
    over all its (query, key) pairs."""
    attn_decode_memory_eff: float = 0.9
    """Fraction of HBM bandwidth when decode attention streams the KV cache."""
    attn_decode_blocks_per_core: float = 0.5
    """(sequence x KV head) work blocks per core needed to reach full bandwidth: one block streams
    at most bandwidth x efficiency / (this x cores). 0 disables the limit."""
    decode_attention: str = "mean"
    """How the engine's decode-attention kernel spreads a batch over the GPU (`DECODE_ATTENTION`):
    `mean`: one block per (sequence, KV head), every sequence at the batch's mean context;
    `max_context`: the same blocks, bound by the longest sequence (no KV splitting);
    `split_kv`: the longest sequence's context split into `split_kv_splits(n)` blocks;
    `batch_kv`: one dense attention over the batch, every query row against every KV token of
    every sequence (a gather of the whole batch's KV, as Hugging Face's paged|sdpa path does);
    `padded_cache`: every sequence reads `decode_padded_tokens` cache slots whatever its context,
    as static-shape engines (JetStream) do."""
    split_kv_target_blocks: float = 256.0
    """`split_kv`: the kernel splits each sequence's context until batch x KV heads x splits reaches
    this many blocks (the split count is a power of two)."""
    split_kv_max_splits: float = 16.0
    """`split_kv`: most splits per sequence."""
    decode_padded_tokens: float = 0.0
    """`padded_cache`: the engine's static cache length in tokens (0: the model's max context)."""
    # -- elementwise (norms, activations, residuals, RoPE, copies) ---------------------------------------
    elementwise_hidden_passes: float = 12.0
    """Hidden-size activation vectors read or written per token per layer."""
    elementwise_mlp_passes: float = 5.0
    """MLP-width activation vectors read or written per token per layer."""
    elementwise_memory_eff: float = 0.85
    """Fraction of HBM bandwidth of elementwise kernels."""
    elementwise_kernels_per_layer: float = 8.0
    """Elementwise kernel launches per layer (each pays `kernel_overhead_s`)."""
    # -- mixture of experts -------------------------------------------------------------------------------
    moe_route_passes: float = 5.0
    """Hidden-size vectors moved per token per routed expert per layer (gather to the expert, scatter-add
    back): elementwise traffic at `elementwise_memory_eff`."""
    moe_kernels: str = "fused"
    """How the routed experts run: `fused` (grouped-GEMM kernels over all experts, a handful of launches
    per layer whatever the expert count, as serving engines run MoE) or `looped` (a loop over the
    touched experts, `moe_kernels_per_expert` launches each, as a plain PyTorch harness runs them)."""
    moe_kernels_per_expert: float = 6.0
    """`looped` only: kernel launches per touched expert per layer (gather, two GEMMs, activation,
    multiply, scatter-add)."""
    moe_fused_kernels_per_layer: float = 15.3
    """`fused` only: kernel launches' worth of fixed time in one MoE layer besides the router GEMM
    (gather, two grouped GEMMs, activation, multiply, routing-weight scale, zero-fill, scatter-add;
    index kernels cost more than a plain launch). Fitted on H200 fused-MoE layers (tools/fit_moe.py)."""
    moe_grouped_eff: float = 0.574
    """`fused` only: speed of grouped GEMMs relative to plain GEMMs of the same rows (compute and
    weight streaming). Fitted with the above: torch's grouped GEMM on an H200."""
    # -- overheads ------------------------------------------------------------------------------------
    kernel_overhead_s: float = 3.0e-6
    """Per kernel: launch gap plus ramp-up and tail inside a CUDA graph."""
    step_overhead_s: float = 1.0e-4
    """Per step: graph launch, sampling, synchronisation."""
    # -- communication ----------------------------------------------------------------------------------
    comm_bw_eff: float = 0.7
    """Fraction of the intra-node link bandwidth that collectives reach (ring bus bandwidth)."""
    comm_latency_s: float = 2.0e-5
    """Fixed time of one collective (all-reduce, all-to-all, send)."""
    source: str = ""
    """What the profile was fitted on."""
    engine: EngineProfile = field(default_factory=EngineProfile)
    """The engine layer: CUDA-graph capture and the host-time model (`cost/host.py`)."""

    def value(self, name: str) -> float:
        """A parameter by name; `host.<mode>.<part>.<feature>` names the engine's host terms."""
        if name.startswith("host."):
            return self.engine.coefficient(name[len("host.") :])
        return getattr(self, name)

    def with_values(self, **values) -> CostProfile:
        host = {k[len("host.") :]: float(v) for k, v in values.items() if k.startswith("host.")}
        plain = {k: v for k, v in values.items() if not k.startswith("host.")}
        if host:
            plain["engine"] = replace(self.engine, host={**self.engine.host, **host})
        return replace(self, **plain)

    def to_dict(self) -> dict:
        """`parameters` (the hardware layer and kernel behaviours) and, if any, `engine`."""
        params = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "engine"}
        out = {"parameters": params}
        if self.engine != EngineProfile():
            out["engine"] = self.engine.to_dict()
        return out


CHOICES = {
    "decode_attention": ("mean", "max_context", "split_kv", "batch_kv", "padded_cache"),
    "moe_kernels": ("fused", "looped"),
}
"""Profile keys that name a behaviour rather than a number, with their valid values."""
DECODE_ATTENTION = CHOICES["decode_attention"]
TEXT_FIELDS = ("source", *CHOICES)
FIT_PARAMETERS = tuple(f.name for f in fields(CostProfile) if f.name not in TEXT_FIELDS + ("engine",))
PINNED_PARAMETERS = (
    "elementwise_memory_eff",
    "elementwise_kernels_per_layer",
    "moe_route_passes",
    "moe_kernels_per_expert",
    "moe_fused_kernels_per_layer",
    "moe_grouped_eff",
    "split_kv_target_blocks",
    "split_kv_max_splits",
    "decode_padded_tokens",
)
"""Not fitted unless asked for: iteration times only see passes / bandwidth and kernels x overhead,
so these are set from a copy-bandwidth measurement and from counting the engine's kernels and bytes
(the split-KV rule is read from the engine's kernel code)."""
DEFAULT_FIT = tuple(p for p in FIT_PARAMETERS if p not in PINNED_PARAMETERS)
LOWER_BOUNDS = {
    **{name: (0.0, "> 0") for name in FIT_PARAMETERS if name.endswith("_eff")},
    "split_kv_target_blocks": (0.0, "> 0"),
    "split_kv_max_splits": (1.0, ">= 1"),
}
"""Parameters the roofline divides by or takes a logarithm of (efficiencies, the split-KV rule),
with the bound a value must meet; every other number must be >= 0."""
ALL_PARAMETERS = FIT_PARAMETERS + HOST_TERMS


def load_profile(path: str | Path) -> CostProfile:
    """A profile from YAML; unknown or non-numeric keys are errors naming the file."""
    p = Path(path)
    try:
        stamp = p.stat().st_mtime_ns
    except OSError as exc:
        raise InputFileError(p, f"cannot read profile ({exc.strerror or exc})") from None
    return _load_profile(str(p.resolve()), stamp)


@lru_cache(maxsize=64)
def _load_profile(path: str, _stamp: int) -> CostProfile:
    p = Path(path)
    return profile_from_dict(read_yaml(p, "profile") or {}, str(p))


def profile_from_dict(data: dict, where: str = "cost.profile") -> CostProfile:
    """`{parameters: {...}, engine: {...}}` (or the parameters alone) as a profile."""
    if not isinstance(data, dict):
        raise InputFileError(where, "expected a mapping of profile parameters")
    engine = engine_from_dict(data.get("engine"), where)
    data = data.get("parameters", {k: v for k, v in data.items() if k != "engine"}) or {}
    if not isinstance(data, dict):
        raise InputFileError(where, "expected a mapping of profile parameters")
    known = {f.name for f in fields(CostProfile)} - {"engine"}
    for key, value in data.items():
        if key not in known:
            raise InputFileError(where, f"unknown profile parameter {key!r}")
        if key in CHOICES and value not in CHOICES[key]:
            raise InputFileError(where, f"{key}: expected one of {', '.join(CHOICES[key])}, got {value!r}")
        if key in TEXT_FIELDS:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputFileError(where, f"{key}: expected a number, got {value!r}")
        floor, rule = LOWER_BOUNDS.get(key, (0.0, ">= 0"))
        if value < floor or (value == floor and rule == "> 0"):
            raise InputFileError(where, f"{key}: must be {rule}, got {value}")
    values = {k: (v if k in TEXT_FIELDS else float(v)) for k, v in data.items()}
    return CostProfile(**values, engine=engine)


def save_profile(profile: CostProfile, path: str | Path, header: str = "") -> None:
    """Write atomically: a failed write leaves no half profile behind."""
    body = yaml.safe_dump(profile.to_dict(), sort_keys=False)
    text = "".join(f"# {line}\n" for line in header.splitlines()) + body
    write_file(path, lambda p: p.write_text(text))


@lru_cache(maxsize=None)
def family_profile(family: str) -> CostProfile:
    """The shipped profile of a device family, or the generic one."""
    path = PROFILE_DIR / f"{family}.yaml"
    if not path.exists():
        path = PROFILE_DIR / f"{DEFAULT_FAMILY}.yaml"
    if not path.exists():  # a broken install: never price silently with uncalibrated defaults
        raise RuntimeError(f"the shipped cost profiles are missing from {PROFILE_DIR}; reinstall servesim")
    return load_profile(path)


def resolve_profile(hardware_family: str, path: str | Path | None = None, key: str = "cost.profile"):
    """The profile a config asks for: a file path, a shipped profile's name, or the hardware family's."""
    if path is None:
        return family_profile(hardware_family)
    p = Path(path)
    shipped = PROFILE_DIR / f"{p.name}.yaml"
    if not p.exists() and p.name == str(path) and shipped.exists():
        p = shipped
    elif not p.exists():
        names = ", ".join(sorted(f.stem for f in PROFILE_DIR.glob("*.yaml")))
        raise ConfigError(
            key, f"profile {str(path)!r} not found: neither a file nor a shipped profile ({names})"
        )
    return load_profile(p)
