"""Frozen spec objects for models and accelerators, and the catalog that loads them from YAML.

A `ModelSpec` covers dense decoders with multi-head or grouped-query attention, mixture-of-experts
MLPs (routed experts, shared experts, leading dense layers) and multi-head latent attention (MLA,
DeepSeek-V2/V3). Everything the cost model needs about the architecture is derived here from the
published shape; nothing depends on a parallel layout except where a method takes `tp`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from servesim.core.errors import ConfigError

CHOICES = {
    "activation": ("silu", "gelu", "gelu_tanh", "relu"),
    "norm": ("rmsnorm", "layernorm"),
    "position_embedding": ("rotary", "learned", "alibi", "none"),
}
DTYPE_BYTES = {
    "fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "fp4": 0.5,
    "nvfp4": 0.5 + 1 / 16,  # an fp8 scale per 16 elements
    "mxfp4": 0.5 + 1 / 32,  # an 8-bit exponent scale per 32 elements (OCP microscaling)
}


@dataclass(frozen=True)
class ModelSpec:
    """A model's architecture as the cost model needs it: layers, widths, heads, experts, datatypes."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    """Dense MLP width; for MoE models, that of the leading dense layers, if any."""
    vocab_size: int
    max_context: int
    head_dim: int = 0
    weight_dtype: str = "bf16"
    """Decoder-layer linear weights; embeddings and the LM head stay 16-bit."""
    kv_dtype: str = "bf16"
    act_dtype: str = "bf16"
    """GEMM input precision, which sets the tensor-core rate (fp8: W8A8). The residual stream,
    embeddings and LM head stay 16-bit unless this is fp32."""
    tie_word_embeddings: bool = False
    """The LM head is the input embedding (one matrix in memory; still one GEMM per step)."""
    # -- architecture variants (defaults: the Llama family) --
    gated_mlp: bool = True
    """MLP with a gate (SwiGLU/GeGLU: gate, up and down matrices) or plain (OPT, Falcon: up, down)."""
    activation: str = "silu"
    """MLP activation (silu, gelu, gelu_tanh, relu); memory-bound either way, priced alike."""
    norm: str = "rmsnorm"
    """rmsnorm or layernorm; priced alike (one read and one write of the hidden vector)."""
    position_embedding: str = "rotary"
    """rotary, learned (a table of max_context x hidden added to the input: OPT), alibi or none."""
    bias: bool = False
    """Linear layers carry biases (OPT): extra parameters, added in the GEMM epilogue."""
    parallel_attention: bool = False
    """Attention and MLP read the same normed input and are summed (Falcon, GPT-J): under tensor
    parallelism one all-reduce per layer instead of two."""
    sliding_window: int = 0
    """Attention looks back at most this many tokens (Mistral-7B-v0.1: 4096); 0: the whole context.
    Only attention time follows it: the KV cache still holds the whole context."""
    # -- mixture of experts (0 experts: dense) --
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0
    """Total width of the always-active shared expert(s); default moe width x num_shared_experts."""
    num_dense_layers: int = 0
    """Leading layers that keep a dense MLP in an MoE model (DeepSeek-V3: 3)."""
    # -- multi-head latent attention (kv_lora_rank 0: standard attention) --
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    source: str = ""
    """Where the shape comes from (Hugging Face repository)."""

    def __post_init__(self):
        if not self.head_dim:
            object.__setattr__(self, "head_dim", self.hidden_size // max(1, self.num_heads))
        if self.num_experts and not self.shared_expert_intermediate_size:
            width = self.moe_intermediate_size * self.num_shared_experts
            object.__setattr__(self, "shared_expert_intermediate_size", width)
        for key in ("weight_dtype", "kv_dtype", "act_dtype"):
            if getattr(self, key) not in DTYPE_BYTES:
                valid = ", ".join(DTYPE_BYTES)
                raise ConfigError(key, f"unknown dtype {getattr(self, key)!r}; valid: {valid}")
        for key, valid in CHOICES.items():
            if getattr(self, key) not in valid:
                raise ConfigError(key, f"unknown {key} {getattr(self, key)!r}; valid: {', '.join(valid)}")

    # -- architecture -------------------------------------------------------------------------
    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def num_moe_layers(self) -> int:
        return self.num_layers - self.num_dense_layers if self.is_moe else 0

    @property
    def qk_head_dim(self) -> int:
        """Query/key width per head (MLA: no-RoPE part + RoPE part)."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim if self.is_mla else self.head_dim

    @property
    def attention_params(self) -> int:
        h, nh = self.hidden_size, self.num_heads
        if self.is_mla:
            q = (
                h * nh * self.qk_head_dim
                if not self.q_lora_rank
                else (h * self.q_lora_rank + self.q_lora_rank * nh * self.qk_head_dim)
            )
            kv = h * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank * nh * (
                self.qk_nope_head_dim + self.v_head_dim
            )
            return q + kv + nh * self.v_head_dim * h
        d = self.head_dim
        qkv = d * (nh + 2 * self.num_kv_heads)
        return h * qkv + nh * d * h + (qkv + h if self.bias else 0)

    @property
    def mlp_matrices(self) -> int:
        """Weight matrices of an MLP: gate, up and down, or up and down."""
        return 3 if self.gated_mlp else 2

    @property
    def dense_mlp_params(self) -> int:
        width = self.intermediate_size
        biases = (self.mlp_matrices - 1) * width + self.hidden_size if self.bias else 0
        return self.mlp_matrices * self.hidden_size * width + biases

    @property
    def expert_params(self) -> int:
        """One routed expert (gate, up, down; or up, down)."""
        return self.mlp_matrices * self.hidden_size * self.moe_intermediate_size

    @property
    def moe_layer_params(self) -> int:
        h = self.hidden_size
        return (
            self.num_experts * self.expert_params
            + self.mlp_matrices * h * self.shared_expert_intermediate_size
            + h * self.num_experts  # router
        )

    @property
    def layer_params(self) -> int:
        """All decoder-layer parameters (every expert counted)."""
        if not self.is_moe:
            return self.num_layers * (self.attention_params + self.dense_mlp_params)
        return (
            self.num_layers * self.attention_params
            + self.num_dense_layers * self.dense_mlp_params
            + self.num_moe_layers * self.moe_layer_params
        )

    @property
    def embedding_params(self) -> int:
        """Input embedding plus LM head (one matrix if tied), plus learned positions."""
        tables = (1 if self.tie_word_embeddings else 2) * self.vocab_size
        if self.position_embedding == "learned":
            tables += self.max_context
        return tables * self.hidden_size

    def attended_context(self, context: int) -> int:
        """Tokens one query attends to at a context of `context` tokens (the window caps it)."""
        w = self.sliding_window
        return context if not w or context < w else w

    @property
    def num_params(self) -> int:
        return self.layer_params + self.embedding_params

    @property
    def active_params_per_token(self) -> int:
        """Parameters a token multiplies through (top-k and shared experts only), LM head included."""
        if not self.is_moe:
            dense = self.num_layers * (self.attention_params + self.dense_mlp_params)
        else:
            h = self.hidden_size
            moe = (
                self.num_experts_per_tok * self.expert_params
                + self.mlp_matrices * h * self.shared_expert_intermediate_size
                + h * self.num_experts
            )
            dense = (
                self.num_layers * self.attention_params
                + self.num_dense_layers * self.dense_mlp_params
                + self.num_moe_layers * moe
            )
        return dense + self.vocab_size * self.hidden_size

    # -- memory -------------------------------------------------------------------------------
    @property
    def stream_bytes(self) -> float:
        """Bytes per element of the residual stream, embeddings and LM head (16-bit, or fp32)."""
        return 4.0 if self.act_dtype == "fp32" else 2.0

    def weight_bytes(self, tp: int = 1) -> float:
        """Weights held by one of `tp` GPUs (layers in `weight_dtype`, embeddings 16-bit)."""
        layers = self.layer_params * DTYPE_BYTES[self.weight_dtype]
        embed = self.embedding_params * self.stream_bytes
        return (layers + embed) / tp

    def kv_heads_per_gpu(self, tp: int = 1) -> int:
        """KV heads one of `tp` GPUs stores: split across GPUs, replicated when tp > KV heads."""
        return max(1, self.num_kv_heads // tp)

    def kv_bytes_per_token(self, tp: int = 1) -> float:
        """KV cache bytes of one token, all layers, on one of `tp` GPUs.

        MLA caches one compressed latent (+ RoPE key) per layer, replicated on every GPU.
        """
        if self.is_mla:
            width = self.kv_lora_rank + self.qk_rope_head_dim
        else:
            width = 2 * self.kv_heads_per_gpu(tp) * self.head_dim
        return self.num_layers * width * DTYPE_BYTES[self.kv_dtype]


HOST_CPUS = ("x86", "grace")
"""Host CPUs an engine's host time is priced for (engine profiles' `host_cpu_scale`)."""


@dataclass(frozen=True)
class HardwareSpec:
    """One accelerator's spec sheet: peak FLOP/s per datatype, memory, links, power."""

    name: str
    peak_tflops: dict[str, float]
    """Dense (no sparsity) tensor throughput per datatype, TFLOP/s per device."""
    hbm_gib: float
    hbm_tb_s: float
    link_gb_s: float
    """Intra-node device-to-device bandwidth per direction, GB/s (NVLink, Infinity Fabric, ICI...)."""
    link_latency_s: float
    pcie_gb_s: float = 32.0
    link_peers: int = 0
    """Direct links without a switch (a full mesh: Gaudi's RoCE ports, AMD's Infinity Fabric, Ascend's
    HCCS): the link bandwidth is split evenly over this many peers, so a group of p devices reaches
    (p - 1) / link_peers of it. 0: a switch (NVSwitch), every group gets all of it."""
    tdp_w: float | None = 0.0
    family: str = "generic"
    """Calibration family: devices of one family share a cost profile (relative to spec sheets)."""
    num_cores: int = 0
    """Streaming multiprocessors / compute units / AI cores; 0 if the notion does not apply."""
    idle_w: float | None = None
    """Board power with nothing running (W, measured or published); None: the power profile's
    fraction of TDP."""
    max_clock_mhz: float = 0.0
    """Maximum (boost) SM clock, MHz: the reference of `power.clock_mhz`; 0 if unknown."""
    host_cpu: str = "x86"
    """The server's host CPU (`x86`, or `grace` for Grace-hosted GB200/GH200): an engine's host time
    is priced per CPU (`host_cpu_scale` of an engine profile, docs/cost-model.md section 4)."""
    usd_per_hour: float | None = None
    """Default rental price of one device, $/hour (source and date beside the entry); None: unknown,
    set `pricing.usd_per_gpu_hour`."""
    aliases: tuple[str, ...] = ()
    """Device names as drivers report them (the `gpu` column of measurement files)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "aliases", tuple(self.aliases))
        if "bf16" not in self.peak_tflops:
            raise ConfigError("peak_tflops", "needs at least a bf16 entry")
        if self.host_cpu not in HOST_CPUS:
            raise ConfigError("host_cpu", f"expected one of {', '.join(HOST_CPUS)}, got {self.host_cpu!r}")

    @property
    def hbm_bytes(self) -> float:
        return self.hbm_gib * 2**30

    @property
    def hbm_bytes_per_s(self) -> float:
        return self.hbm_tb_s * 1e12

    @property
    def link_bytes_per_s(self) -> float:
        return self.link_gb_s * 1e9

    def group_link_bytes_per_s(self, devices):
        """Link bandwidth per direction one device has towards the other `devices - 1` of a group
        (`devices` may be an array; a group of one has no peer and is priced as two)."""
        if not self.link_peers:
            return self.link_bytes_per_s
        import numpy as np

        return self.link_bytes_per_s * np.clip(devices - 1, 1, self.link_peers) / self.link_peers

    def peak_flops(self, dtype: str = "bf16") -> float:
        """Dense FLOP/s at `dtype`; a datatype the device lacks runs at its bf16 rate (weight-only
        quantised kernels dequantise to 16 bits)."""
        if dtype in self.peak_tflops:
            return self.peak_tflops[dtype] * 1e12
        return self.peak_tflops["bf16"] * 1e12


_HERE = Path(__file__).parent


@lru_cache(maxsize=None)
def _table(kind: str) -> Mapping[str, dict]:
    return _Catalog((_HERE / f"{kind}.yaml").read_text())


class _Catalog(Mapping):
    """A catalog file as name -> entry, each entry made into Python values when first asked for.
    The file is parsed at once (with libyaml's C parser when PyYAML has it, ~10x faster), but a run
    asks for one model and one device of dozens each: making every entry was ~3 ms of each start."""

    def __init__(self, text: str):
        self._loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
        self._nodes = {self._make(key): value for key, value in self._loader.get_single_node().value}
        self._entries: dict[str, Any] = {}

    def _make(self, node):
        return self._loader.construct_document(node)

    def __getitem__(self, name: str):
        if name not in self._entries:
            self._entries[name] = self._make(self._nodes[name])
        return self._entries[name]

    def __iter__(self):
        return iter(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)


def model_names() -> list[str]:
    return sorted(_table("models"))


def hardware_names() -> list[str]:
    return sorted(_table("hardware"))


def hardware_by_alias(device_name: str) -> str | None:
    """The catalog name for a device name as drivers report it (or a catalog name), else None."""
    table = _table("hardware")
    if device_name in table:
        return device_name
    wanted = device_name.strip().lower()
    for name, entry in table.items():
        if any(a.lower() == wanted for a in entry.get("aliases", ())):
            return name
    return None


def get_model(spec: str | dict, key: str = "model") -> ModelSpec:
    return _build(ModelSpec, "models", spec, key)


def get_hardware(spec: str | dict, key: str = "hardware") -> HardwareSpec:
    return _build(HardwareSpec, "hardware", spec, key)


def _build(cls, kind: str, spec: str | dict, key: str):
    table = _table(kind)
    if isinstance(spec, str):
        if spec not in table:
            raise ConfigError(key, f"unknown {kind} {spec!r}; valid: {', '.join(sorted(table))}")
        data = {"name": spec, **table[spec]}
    else:
        data = dict(spec)
        base = data.pop("base", None)
        if base is not None:
            if base not in table:
                raise ConfigError(f"{key}.base", f"unknown {kind} {base!r}")
            data = {**table[base], **data}
        data.setdefault("name", base or "custom")
    known = {f.name: f.type for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "unknown key")
    for name, value in data.items():
        _check_type(f"{key}.{name}", known[name], value)
        if name in _POSITIVE and not value > 0:
            raise ConfigError(f"{key}.{name}", f"must be > 0, got {value!r}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(key, f"incomplete spec: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{key}.{exc.key}", str(exc).split(": ", 1)[-1]) from None


_POSITIVE = {
    "num_layers", "hidden_size", "num_heads", "num_kv_heads", "intermediate_size", "vocab_size",
    "max_context", "hbm_gib", "hbm_tb_s", "link_gb_s", "pcie_gb_s",
}
"""Inline-spec fields that divide or size something: zero is never meant (a dense model's
`num_experts`, a device's `num_cores` may be 0)."""


def _check_type(key: str, annotation: str, value) -> None:
    """Inline specs come from users: numbers must be finite and non-negative, flags booleans."""
    if value is None and "None" in annotation:
        return
    base = annotation.split(" |")[0]
    if base in ("int", "float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if base == "int":
            ok = ok and float(value).is_integer()
        if not ok or not 0 <= value < math.inf:
            kind = "an integer" if base == "int" else "a number"
            raise ConfigError(key, f"expected {kind} >= 0, got {value!r}")
    elif base == "bool" and not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    elif base == "str" and not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {value!r}")
    elif base.startswith("dict[str, float]"):
        if not isinstance(value, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf
            for v in value.values()
        ):
            raise ConfigError(key, f"expected a mapping of datatype to positive TFLOP/s, got {value!r}")
