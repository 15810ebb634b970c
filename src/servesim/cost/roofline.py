"""A first roofline cost model: per step, max(compute, memory) of the dense decoder plus overheads.

GEMM FLOPs over all tokens, attention FLOPs over each sequence's context, weights read once per
step, KV read per decode; tensor-parallel all-reduce as alpha + bytes / link bandwidth.
"""

from __future__ import annotations

import numpy as np

from servesim.catalog.specs import DTYPE_BYTES, HardwareSpec, ModelSpec
from servesim.cost.base import StepCost, StepShape


class RooflineCostModel:
    def __init__(
        self,
        model: ModelSpec,
        hardware: HardwareSpec,
        tp: int = 1,
        compute_efficiency: float = 0.7,
        memory_efficiency: float = 0.8,
        step_overhead_s: float = 2.0e-3,
    ):
        self.model, self.hardware, self.tp = model, hardware, tp
        m = model
        self._flops = hardware.peak_flops(m.act_dtype) * compute_efficiency
        self._bw = hardware.hbm_bytes_per_s * memory_efficiency
        self._weights = m.weight_bytes(tp)
        self._linear_flops_per_token = 2 * m.num_layers * m.params_per_layer / tp
        self._lm_head_flops = 2 * m.vocab_size * m.hidden_size / tp
        heads = m.num_heads / tp
        self._attn_flops_per_pair = 4 * m.num_layers * heads * m.head_dim
        self._kv_bytes = m.kv_bytes_per_token(tp)
        self._act = DTYPE_BYTES[m.act_dtype]
        self._overhead = step_overhead_s
        link = hardware.link_gb_s * 1e9
        self._ar_alpha = 0.0 if tp == 1 else 2 * m.num_layers * hardware.link_latency_s
        self._ar_beta = 0.0 if tp == 1 else 2 * m.num_layers * m.hidden_size * self._act * 2 * (tp - 1) / tp / link

    def breakdown(self, shape: StepShape) -> StepCost:
        tokens = shape.num_tokens
        pairs = shape.decode_ctx_sum + sum(c * (p + (c + 1) / 2) for c, p in shape.prefill_chunks)
        kv_read = shape.decode_ctx_sum + sum(p + c for c, p in shape.prefill_chunks)
        flops = (
            tokens * self._linear_flops_per_token
            + shape.num_logit_tokens * self._lm_head_flops
            + pairs * self._attn_flops_per_pair
        )
        nbytes = self._weights + kv_read * self._kv_bytes
        compute, memory = flops / self._flops, nbytes / self._bw
        comm = self._ar_alpha + tokens * self._ar_beta
        total = max(compute, memory) + comm + self._overhead
        return StepCost(total, {}, compute, memory, comm, self._overhead)

    def step_time(self, shape: StepShape) -> float:
        return self.breakdown(shape).total_s

    def decode_step_times(self, num_decodes: int, ctx_sums: np.ndarray) -> np.ndarray:
        ctx = np.asarray(ctx_sums, dtype=np.float64)
        flops = num_decodes * (self._linear_flops_per_token + self._lm_head_flops)
        compute = (flops + ctx * self._attn_flops_per_pair) / self._flops
        memory = (self._weights + ctx * self._kv_bytes) / self._bw
        comm = self._ar_alpha + num_decodes * self._ar_beta
        return np.maximum(compute, memory) + comm + self._overhead
