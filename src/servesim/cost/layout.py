"""What one GPU of a parallel instance computes per layer: the model cut into operators.

`Layout` turns a `ModelSpec` and a parallel layout (tensor, pipeline and expert parallel degrees) into
the per-GPU GEMM shapes, mixture-of-experts blocks, attention constants and activation widths that the
roofline prices. Pure arithmetic on the spec, no hardware: the same layout prices any device.

Tensor parallelism shards heads, MLP width and vocabulary over `tp` GPUs (column then row parallel, one
all-reduce after attention and one after the MLP). Pipeline parallelism puts `num_layers / pp` layers on
each stage; a step flows through every stage in turn. Expert parallelism (`expert_parallel`) places
whole experts on the `tp` GPUs instead of slicing each expert, with all-to-all dispatch and combine.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.catalog.specs import DTYPE_BYTES, ModelSpec

TOKENS, LOGITS, CONTEXT = "tokens", "logits", "context"
"""Row sources of a GEMM: every token of the step, tokens that need logits, or (MLA) every token whose
latent KV is expanded this step (prefill chunks with their prefix, plus decodes)."""


@dataclass(frozen=True)
class Gemm:
    """One linear layer's GEMM as one GPU runs it: K x N weights, repeated `count` times a step."""

    group: str
    """Breakdown group: qkv, o_proj, mlp, moe, lm_head."""
    k: int
    n: int
    count: int
    """How many times per step (number of layers that hold it)."""
    weight_bytes: float
    """Bytes of one instance of the weight matrix."""
    rows: str = TOKENS


@dataclass(frozen=True)
class MoeBlock:
    """Routed experts of `count` layers, as this GPU sees them."""

    count: int
    num_experts: int
    local_experts: int
    top_k: int
    hidden: int
    width: int
    """Intermediate width of one expert on this GPU (sliced by tp unless expert parallel)."""
    weight_bytes_per_expert: float
    ep: int
    matrices: int = 3
    """Weight matrices per expert: gate, up, down (or up, down)."""


@dataclass(frozen=True)
class AttentionShape:
    """Attention's per-layer FLOPs and bytes per token or token pair, on one GPU."""

    prefill_flops_per_pair: float
    """FLOPs per (query, key) pair per layer, score and value products, this GPU's heads."""
    prefill_bytes_per_ctx_token: float
    """K and V bytes read per context token per layer during prefill."""
    prefill_bytes_per_query: float
    """Q in and output out per chunk token per layer."""
    decode_flops_per_ctx_token: float
    decode_bytes_per_ctx_token: float
    decode_blocks_per_seq: int
    """Independent work blocks per decoding sequence (KV heads); 0: not parallelism-limited."""
    dtype: str


class Layout:
    def __init__(self, model: ModelSpec, tp: int = 1, pp: int = 1, expert_parallel: bool = False):
        self.model, self.tp, self.pp = model, tp, pp
        self.expert_parallel = bool(expert_parallel and model.is_moe and tp > 1)
        self.act_bytes = model.stream_bytes
        """Activations between kernels (residual stream); GEMM inputs are quantised on the fly."""
        self.weight_dtype_bytes = DTYPE_BYTES[model.weight_dtype]
        self.gemm_dtype = model.act_dtype
        self.gemms: list[Gemm] = []
        self.moe: MoeBlock | None = None
        self._build()

    # -- derived per-token quantities ----------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return self.model.num_layers

    @property
    def hidden_bytes(self) -> float:
        """One hidden-size activation vector (what an all-reduce or a pipeline send moves per token)."""
        return self.model.hidden_size * self.act_bytes

    def mlp_width_sum(self) -> float:
        """Per-token MLP activation width on this GPU summed over layers (elementwise traffic).

        Counted for a gated MLP (the activation reads gate and up, writes one vector); a plain MLP's
        activation reads and writes one vector: 2/3 of that traffic.
        """
        m, tp = self.model, self.tp
        scale = m.mlp_matrices / 3
        if not m.is_moe:
            return scale * m.num_layers * m.intermediate_size / tp
        per_moe = (m.num_experts_per_tok * m.moe_intermediate_size + m.shared_expert_intermediate_size) / tp
        return scale * (m.num_dense_layers * m.intermediate_size / tp + m.num_moe_layers * per_moe)

    @property
    def model_hidden_passes(self) -> int:
        """Hidden-size vectors moved per token once per step (not per layer): learned positions
        gather a row and add it to the input (read both, write one)."""
        return 3 if self.model.position_embedding == "learned" else 0

    @property
    def num_allreduces(self) -> int:
        """All-reduces per step under tensor parallelism: after attention and after the MLP, or one
        per layer when they run in parallel; MoE layers under expert parallelism use all-to-all."""
        if self.tp == 1:
            return 0
        per_layer = 1 if self.model.parallel_attention else 2
        moe_layers = self.moe.count if self.expert_parallel else 0
        return per_layer * self.num_layers - moe_layers

    # -- construction ------------------------------------------------------------------------------------
    def _build(self) -> None:
        m, tp = self.model, self.tp
        h, L = m.hidden_size, m.num_layers
        wb, ab = self.weight_dtype_bytes, self.act_bytes
        add = self._add
        if m.is_mla:
            self._mla_projections()
        else:
            nh, kvh, d = m.num_heads // tp, m.kv_heads_per_gpu(tp), m.head_dim
            add("qkv", h, (nh + 2 * kvh) * d, L, wb)
            add("o_proj", nh * d, h, L, wb)
        dense_layers = m.num_dense_layers if m.is_moe else L
        if dense_layers:  # gate and up fused (gated MLP), or up alone; then down
            add("mlp", h, (m.mlp_matrices - 1) * m.intermediate_size // tp, dense_layers, wb)
            add("mlp", m.intermediate_size // tp, h, dense_layers, wb)
        if m.is_moe:
            self._moe()
        add("lm_head", h, -(-m.vocab_size // tp), 1, ab, rows=LOGITS)
        self.attention = self._attention()

    def _add(self, group, k, n, count, dtype_bytes, rows=TOKENS) -> None:
        if k > 0 and n > 0 and count > 0:
            self.gemms.append(Gemm(group, int(k), int(n), int(count), k * n * dtype_bytes, rows))

    def _mla_projections(self) -> None:
        m, add = self.model, self._add
        h, L, nh, wb = m.hidden_size, m.num_layers, m.num_heads // self.tp, self.weight_dtype_bytes
        latent = m.kv_lora_rank + m.qk_rope_head_dim
        if m.q_lora_rank:  # q down-projection fused with the KV down-projection, replicated
            add("qkv", h, m.q_lora_rank + latent, L, wb)
            add("qkv", m.q_lora_rank, nh * m.qk_head_dim, L, wb)
        else:
            add("qkv", h, latent, L, wb)
            add("qkv", h, nh * m.qk_head_dim, L, wb)
        # Up-projection of the latent: expands cached context for prefill, absorbed into q/o for decode;
        # either way its weights are read and it multiplies every context row once.
        add("qkv", m.kv_lora_rank, nh * (m.qk_nope_head_dim + m.v_head_dim), L, wb, rows=CONTEXT)
        add("o_proj", nh * m.v_head_dim, h, L, wb)

    def _moe(self) -> None:
        m, tp = self.model, self.tp
        h, wb = m.hidden_size, self.weight_dtype_bytes
        count = m.num_moe_layers
        self._add("moe", h, m.num_experts, count, self.act_bytes)  # router, replicated
        if m.shared_expert_intermediate_size:
            self._add("moe", h, (m.mlp_matrices - 1) * m.shared_expert_intermediate_size // tp, count, wb)
            self._add("moe", m.shared_expert_intermediate_size // tp, h, count, wb)
        ep = tp if self.expert_parallel else 1
        width = m.moe_intermediate_size // (1 if self.expert_parallel else tp)
        self.moe = MoeBlock(
            count=count,
            num_experts=m.num_experts,
            local_experts=m.num_experts // ep,
            top_k=m.num_experts_per_tok,
            hidden=h,
            width=width,
            weight_bytes_per_expert=m.mlp_matrices * h * width * wb,
            ep=ep,
            matrices=m.mlp_matrices,
        )

    def _attention(self) -> AttentionShape:
        m, tp = self.model, self.tp
        ab, kvb = self.act_bytes, DTYPE_BYTES[m.kv_dtype]
        nh = m.num_heads // tp
        attn_dtype = "fp8" if (m.act_dtype == "fp8" and m.kv_dtype == "fp8") else "bf16"
        if m.is_mla:
            qk, v, latent = m.qk_head_dim, m.v_head_dim, m.kv_lora_rank + m.qk_rope_head_dim
            return AttentionShape(
                prefill_flops_per_pair=2.0 * nh * (qk + v),
                prefill_bytes_per_ctx_token=nh * (qk + v) * ab,
                prefill_bytes_per_query=nh * (qk + v) * ab,
                decode_flops_per_ctx_token=2.0 * nh * (latent + m.kv_lora_rank),
                decode_bytes_per_ctx_token=latent * kvb,
                decode_blocks_per_seq=0,  # latent shared by all heads; MLA kernels split the context
                dtype=attn_dtype,
            )
        d, kvh = m.head_dim, m.kv_heads_per_gpu(tp)
        # Kernels that fold a KV head's query group into one block without splitting the context are
        # limited by how many blocks a decode has; single-query (MHA) decodes ran split-KV in the
        # measured PyTorch (H200 rows of llama2-7b and qwen1.5-moe), so they are not.
        blocks = kvh if m.num_heads > m.num_kv_heads else 0
        return AttentionShape(
            prefill_flops_per_pair=4.0 * nh * d,
            prefill_bytes_per_ctx_token=2 * kvh * d * kvb,
            prefill_bytes_per_query=2 * nh * d * ab,
            decode_flops_per_ctx_token=4.0 * nh * d,
            decode_bytes_per_ctx_token=2 * kvh * d * kvb,
            decode_blocks_per_seq=blocks,
            dtype=attn_dtype,
        )


def window_pairs(prior: int, chunk: int, window: int) -> float:
    """(query, key) pairs of a chunk after `prior` cached tokens when each query sees at most
    `window` keys: the sum over positions x = prior+1 .. prior+chunk of min(x, window)."""
    a, b = prior + 1, prior + chunk
    top = min(b, window)
    ramp = (top * (top + 1) - (a - 1) * a) / 2 if top >= a else 0.0
    return ramp + max(0, b - max(a - 1, window)) * window
