"""`cost:` how engine steps are priced."""

from typing import Literal

from pydantic import Field

from servesim.config.base import Component, Section


class CostConfig(Section):
    model: Component = "roofline"
    """Cost model: a built-in name (`roofline`), `module:Class`, or `{name: ..., <params>}`."""
    profile: str | None = None
    """Calibration profile YAML (from `servesim costmodel calibrate`); default: the shipped profile of
    the hardware's family (`hopper`, `ampere`, ... or `generic`)."""
    expert_parallel: bool = False
    """MoE models: place whole experts on the instance's tensor-parallel GPUs (all-to-all dispatch)
    instead of slicing every expert across them."""
    host_overhead_s: float = Field(0.0, ge=0, le=10)
    """CPU time to launch one step; a step lasts max(GPU time, this). CUDA-graph engines: ~0.0005."""
    prefill_host_overhead_s: float | None = Field(None, ge=0, le=10)
    """The same for steps that carry prefill tokens (eager, not graph-captured: ~0.01-0.02 in
    PyTorch engines); default `host_overhead_s`."""
    prefill_attention: Literal["per_chunk", "batched"] | None = None
    """How the engine calls prefill attention: once per chunk (`per_chunk`: flash attention or SDPA
    per prompt; kernel launches grow with a step's chunks) or once for all chunks of a step
    (`batched`: a varlen or paged kernel). Default: the profile's (`engine.prefill_attention`)."""
