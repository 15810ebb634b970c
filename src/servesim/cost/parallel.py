"""Checks that a model can be laid out over an instance's GPUs, before anything runs."""

from __future__ import annotations

from servesim.catalog.specs import ModelSpec
from servesim.core.errors import ConfigError


def check_layout(model: ModelSpec, tp: int, pp: int, expert_parallel: bool = False) -> None:
    """ConfigError naming the offending key if `model` cannot be split `tp` x `pp` ways."""
    name = model.name
    if model.num_heads % tp:
        raise ConfigError(
            "cluster.tp", f"{tp} does not divide the {model.num_heads} attention heads of {name}"
        )
    kv = model.num_kv_heads
    if not model.is_mla and kv % tp and tp % kv:
        raise ConfigError(
            "cluster.tp",
            f"{tp} neither divides nor is a multiple of the {kv} KV heads of {name}",
        )
    dense_layers = model.num_dense_layers if model.is_moe else model.num_layers
    if dense_layers and model.intermediate_size % tp:
        raise ConfigError(
            "cluster.tp", f"{tp} does not divide the MLP width {model.intermediate_size} of {name}"
        )
    if expert_parallel and not model.is_moe:
        raise ConfigError("cost.expert_parallel", f"{name} has no experts to place")
    if model.is_moe:
        if expert_parallel and model.num_experts % tp:
            raise ConfigError("cluster.tp", f"{tp} does not divide the {model.num_experts} experts of {name}")
        if not expert_parallel and model.moe_intermediate_size % tp:
            raise ConfigError(
                "cluster.tp",
                f"{tp} does not divide the expert width {model.moe_intermediate_size} of {name} "
                "(or set cost.expert_parallel: true)",
            )
    if pp > model.num_layers:
        raise ConfigError("cluster.pp", f"{pp} stages for the {model.num_layers} layers of {name}")
