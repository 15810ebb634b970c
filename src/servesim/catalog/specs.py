"""Frozen spec objects for models and accelerators, and the catalog that loads them from YAML."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from servesim.core.errors import ConfigError

DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_context: int
    head_dim: int = 0
    weight_dtype: str = "bf16"
    kv_dtype: str = "bf16"
    act_dtype: str = "bf16"

    def __post_init__(self):
        if not self.head_dim:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)

    @property
    def params_per_layer(self) -> int:
        h, d = self.hidden_size, self.head_dim
        attn = h * d * (self.num_heads + 2 * self.num_kv_heads) + self.num_heads * d * h
        mlp = 3 * h * self.intermediate_size
        return attn + mlp

    @property
    def num_params(self) -> int:
        return self.num_layers * self.params_per_layer + 2 * self.vocab_size * self.hidden_size

    def weight_bytes(self, tp: int = 1) -> float:
        return self.num_params * DTYPE_BYTES[self.weight_dtype] / tp

    def kv_bytes_per_token(self, tp: int = 1) -> float:
        """K and V of every layer for one token, on one of `tp` GPUs (KV heads split, min 1)."""
        kv_heads = max(1, self.num_kv_heads // tp)
        return 2 * self.num_layers * kv_heads * self.head_dim * DTYPE_BYTES[self.kv_dtype]


@dataclass(frozen=True)
class HardwareSpec:
    name: str
    peak_tflops: dict[str, float]
    hbm_gib: float
    hbm_tb_s: float
    link_gb_s: float
    link_latency_s: float
    pcie_gb_s: float = 32.0
    tdp_w: float = 0.0
    family: str = "generic"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hbm_bytes(self) -> float:
        return self.hbm_gib * 2**30

    @property
    def hbm_bytes_per_s(self) -> float:
        return self.hbm_tb_s * 1e12

    def peak_flops(self, dtype: str = "bf16") -> float:
        if dtype in self.peak_tflops:
            return self.peak_tflops[dtype] * 1e12
        return self.peak_tflops["bf16"] * 1e12


_HERE = Path(__file__).parent


@lru_cache(maxsize=None)
def _table(kind: str) -> dict[str, dict]:
    return yaml.safe_load((_HERE / f"{kind}.yaml").read_text())


def model_names() -> list[str]:
    return sorted(_table("models"))


def hardware_names() -> list[str]:
    return sorted(_table("hardware"))


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
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "unknown key")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(key, f"incomplete spec: {exc}") from None
