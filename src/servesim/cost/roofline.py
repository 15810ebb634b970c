"""Per-operator roofline cost model, calibrated by a `CostProfile`.

Each operator of a step costs max(FLOPs / (peak x compute efficiency), bytes / (bandwidth x memory
efficiency)) plus a launch overhead per kernel; a step is the sum over operators, plus collectives, plus a
per-step overhead, and lasts at least the host time that launches it. Efficiencies are closed forms of the
operator's shape (GEMM rows, chunk length, decode parallelism), so a step prices in microseconds.
docs/cost-model.md has the equations.

Everything that does not depend on the step is folded into constants in the constructor. A pure-decode
step of n requests costs C(n) + S(n) x (sum of context lengths): `decode_step_times` evaluates that
form for many steps at once and `step_time` uses the very same coefficients, so both agree exactly.
"""

from __future__ import annotations

import math

import numpy as np

from servesim.catalog.specs import HardwareSpec, ModelSpec
from servesim.cost.base import StepCost, StepShape
from servesim.cost.collectives import collective_latency
from servesim.cost.datatypes import tensor_flops
from servesim.cost.layout import CONTEXT, LOGITS, TOKENS, Layout, window_pairs
from servesim.cost.profile import CostProfile, family_profile
from servesim.cost.shared_cache import remember, shared_cache

ChunkTerms = tuple[float, float, float, float, float, float, float, float, int, int]
"""`RooflineCostModel._chunk_terms`: (fixed seconds, launch seconds, half the chunk's own pairs,
fresh and prefix attention efficiencies, query seconds, decode seconds per context token and
per longest-context token, attention calls, tokens). Written out: the compiled core unpacks a
typed tuple without boxing."""

GROUPS = ("qkv", "attention", "o_proj", "mlp", "moe", "elementwise", "lm_head", "comm", "overhead")


class RooflineCostModel:
    def __init__(
        self,
        model: ModelSpec,
        hardware: HardwareSpec,
        tp: int = 1,
        pp: int = 1,
        expert_parallel: bool = False,
        profile: CostProfile | None = None,
        host_overhead_s: float = 0.0,
        prefill_host_overhead_s: float | None = None,
        include_comm: bool = True,
    ):
        self.model, self.hardware, self.tp, self.pp = model, hardware, tp, pp
        self.profile = profile if profile is not None else family_profile(hardware.family)
        self.layout = Layout(model, tp, pp, expert_parallel)
        self.host_overhead_s = host_overhead_s
        self.prefill_host_overhead_s = (
            host_overhead_s if prefill_host_overhead_s is None else prefill_host_overhead_s
        )
        self.include_comm = include_comm and (tp > 1 or pp > 1)
        self._precompute()
        # `_linear_time` reads these constants alone
        self._linear_cache: dict[tuple[int, int, int], float] = shared_cache(
            ("linear_time", tuple(self._gemms), self._pad, self._t_gemm))
        self._decode_cache: dict[tuple[int, int], tuple[float, float, float, str]] = {}
        self._chunk_cache: dict[tuple[int, int], ChunkTerms] = {}
        self._decode_terms_cache: dict[int, tuple[float, float, float]] = {}

    # -- constants ---------------------------------------------------------------------------------
    def _precompute(self) -> None:
        pr, hw, lay = self.profile, self.hardware, self.layout
        self._t_kernel = pr.kernel_overhead_s
        gemm_peak = tensor_flops(hw, lay.gemm_dtype) * pr.gemm_compute_eff
        gemm_bw = hw.hbm_bytes_per_s * pr.gemm_memory_eff
        ab = lay.act_bytes
        # Per GEMM: seconds per row of compute (pad rows included later), seconds of weight streaming,
        # seconds of activation streaming per row, row source, multiplicity, group.
        self._gemms = [
            (
                2.0 * g.k * g.n / gemm_peak,
                g.weight_bytes / gemm_bw,
                (g.k + g.n) * ab / gemm_bw,
                g.rows,
                g.count,
                g.group,
            )
            for g in lay.gemms
        ]
        # the same per GEMM, typed, for `_linear_time`: its rows' source (0 tokens, 1 logits, 2
        # context rows), count, then the seconds above
        self._linear_gemms: list[tuple[int, float, float, float, float]] = [
            ((TOKENS, LOGITS, CONTEXT).index(src), float(count), row_s, w_s, act_s)
            for row_s, w_s, act_s, src, count, _ in self._gemms
        ]
        self._pad = pr.gemm_pad_rows
        self._t_gemm = pr.kernel_overhead_s + pr.gemm_latency_s
        moe = lay.moe
        self._has_moe = moe is not None
        if moe is not None:
            self._moe_setup(moe, gemm_peak, gemm_bw, ab)
        a = lay.attention
        attn_peak = tensor_flops(hw, a.dtype)
        self._attn_prefill_flops = a.prefill_flops_per_pair / attn_peak
        self._attn_heads = lay.model.num_heads // self.tp
        self._attn_pad = pr.attn_prefill_pad_tokens * 32  # profile unit: tokens of a 32-head GPU
        attn_bw = hw.hbm_bytes_per_s * pr.attn_decode_memory_eff
        self._attn_ctx_bytes = a.prefill_bytes_per_ctx_token / attn_bw
        self._attn_q_bytes = a.prefill_bytes_per_query / attn_bw
        self._dec_flops = a.decode_flops_per_ctx_token / (attn_peak * pr.attn_prefill_eff)
        self._dec_bytes = a.decode_bytes_per_ctx_token / attn_bw
        L = self._layers = lay.num_layers
        self._dec_blocks = a.decode_blocks_per_seq
        # One (sequence, KV head) block streams at most 1/saturation of the bandwidth.
        saturation = pr.attn_decode_blocks_per_core * hw.num_cores
        limited = a.decode_blocks_per_seq and saturation > 0
        self._dec_block_token = self._dec_bytes * saturation / self._dec_blocks if limited else 0.0
        self._decode_mode = pr.decode_attention
        model = self.model
        self._plain_attention = not (model.sliding_window or model.is_mla or self._decode_mode == "batch_kv")
        """Attention without a window, MLA or `batch_kv`: runs of chunk steps are priced in the
        written-out form (`chunk_step_times`)."""
        padded = pr.decode_attention == "padded_cache"
        self._dec_padded = (pr.decode_padded_tokens or lay.model.max_context) if padded else 0.0
        self._engine = pr.engine
        self._has_host: bool = pr.engine.has_host  # (a property of an object not compiled: read once)
        # what `_chunk_terms` reads of objects not compiled, read once
        self._chunk_calls: int = pr.engine.attention_calls(1)
        self._step_overhead: float = pr.step_overhead_s
        self._fresh_eff: float = pr.attn_prefill_eff
        self._prefix_eff: float = pr.attn_prefix_eff
        self._engine_terms = pr.engine.has_host or pr.decode_attention == "batch_kv"
        # batch_kv: seconds per (query, key) pair; per KV token gathered, then expanded to all heads
        self._batch_pair = L * self._attn_prefill_flops / pr.attn_prefill_eff
        expand = self._attn_heads / max(self._dec_blocks, 1)
        self._batch_kv_token = L * self._dec_bytes * 2 * (1 + expand)
        el_bw = hw.hbm_bytes_per_s * pr.elementwise_memory_eff
        per_token = (
            pr.elementwise_hidden_passes * lay.model.hidden_size * L
            + pr.elementwise_mlp_passes * lay.mlp_width_sum()
            + lay.model_hidden_passes * lay.model.hidden_size
        ) * ab
        self._elem_per_token = per_token / el_bw
        self._elem_fixed = pr.elementwise_kernels_per_layer * L * self._t_kernel
        self._comm_setup()

    def _moe_setup(self, moe, gemm_peak: float, gemm_bw: float, ab: float) -> None:
        """Routed experts: `looped` launches kernels per touched expert at plain-GEMM speed; `fused`
        runs grouped GEMMs (at `moe_grouped_eff` of that speed) in a fixed number of kernels."""
        pr, hw = self.profile, self.hardware
        fused = pr.moe_kernels != "looped"
        eff = pr.moe_grouped_eff if fused and pr.moe_grouped_eff > 0 else 1.0
        self._moe_row = 2.0 * moe.matrices * moe.hidden * moe.width / gemm_peak / eff
        self._moe_weight = moe.weight_bytes_per_expert / gemm_bw / eff
        self._moe_act = (3 * moe.hidden + moe.matrices * moe.width) * ab / gemm_bw / eff
        el_bw = hw.hbm_bytes_per_s * pr.elementwise_memory_eff
        self._moe_route = pr.moe_route_passes * moe.hidden * ab / el_bw
        t_kernel, t_gemm = pr.kernel_overhead_s, pr.kernel_overhead_s + pr.gemm_latency_s
        if fused:
            self._moe_layer_launch = pr.moe_fused_kernels_per_layer * t_kernel + 2 * pr.gemm_latency_s
            self._moe_expert_launch = 0.0
        else:  # top-k and combine kernels, two GEMM ramps, and per-expert launches
            self._moe_layer_launch = 2 * t_kernel + 2 * t_gemm
            self._moe_expert_launch = pr.moe_kernels_per_expert * t_kernel

    def _comm_setup(self) -> None:
        pr, hw, lay, tp = self.profile, self.hardware, self.layout, self.tp
        link = hw.group_link_bytes_per_s(tp) * pr.comm_bw_eff
        h_bytes = lay.hidden_bytes
        n_allreduce = lay.num_allreduces
        ring = 2.0 * (tp - 1) / tp if tp > 1 else 0.0
        self._comm_fixed = n_allreduce * collective_latency(pr, hw, "all_reduce", tp) if tp > 1 else 0.0
        self._comm_per_token: float = n_allreduce * ring * h_bytes / link  # (typed: compiled, unboxed)
        # Logits gathered from the vocabulary shards.
        self._comm_logit_fixed = collective_latency(pr, hw, "gather", tp) if tp > 1 else 0.0
        self._comm_per_logit: float = 0.0
        if tp > 1:
            self._comm_per_logit = (tp - 1) / tp * lay.model.vocab_size * lay.act_bytes / link
        if self.pp > 1:
            self._comm_fixed += (self.pp - 1) * collective_latency(pr, hw, "send", 2)
            send = hw.group_link_bytes_per_s(2) * pr.comm_bw_eff
            self._comm_per_token += (self.pp - 1) * h_bytes / send
        self._a2a_fixed = self._a2a_per_token = 0.0
        if lay.expert_parallel:
            moe = lay.moe
            assert moe is not None  # expert parallelism implies MoE layers
            ep = moe.ep
            # Dispatch and combine: each GPU sends its 1/ep share of tokens' top-k copies off-GPU.
            vol = moe.top_k * h_bytes * (ep - 1) / ep / ep
            self._a2a_fixed = 2 * moe.count * collective_latency(pr, hw, "all_to_all", ep)
            a2a = hw.group_link_bytes_per_s(ep) * pr.comm_bw_eff
            self._a2a_per_token = 2 * moe.count * vol / a2a
        if not self.include_comm:
            self._comm_fixed = self._comm_per_token = 0.0
            self._comm_logit_fixed = self._comm_per_logit = 0.0
            self._a2a_fixed = self._a2a_per_token = 0.0

    # -- the engine's calls --------------------------------------------------------------------------
    def step_time(self, shape: StepShape) -> float:
        chunks = shape.prefill_chunks
        if not chunks:
            n = shape.num_decodes
            if n == 0:
                return self.profile.step_overhead_s
            logits, ctx = shape.num_logit_tokens, shape.decode_ctx_sum
            const, per_ctx, per_longest, _ = self._decode_coeffs(n, logits)
            if per_longest or self._engine_terms:
                t = self._decode_time(n, logits, ctx, shape.max_decode_ctx, max)
            else:  # the common case, kept to one lookup: mean context, no host model
                t = const + ctx * per_ctx
            return t if t > self.host_overhead_s else self.host_overhead_s
        t = self._engine.step_time(
            self._mixed_time(shape),
            "eager",
            len(chunks) + shape.num_decodes,
            self._engine.attention_calls(len(chunks)),
            shape.num_tokens,
            shape.kv_tokens,
        )
        return t if t > self.prefill_host_overhead_s else self.prefill_host_overhead_s

    def decode_step_times(
        self, num_decodes: int, ctx_sums: np.ndarray, max_ctxs: np.ndarray | None = None
    ) -> np.ndarray:
        ctx = np.asarray(ctx_sums, dtype=np.float64)
        if num_decodes == 0:
            return np.full(ctx.shape, self.profile.step_overhead_s)
        if max_ctxs is None:
            longest = np.ceil(ctx / num_decodes)
        else:
            longest = np.asarray(max_ctxs, dtype=np.float64)
        t = self._decode_time(num_decodes, num_decodes, ctx, longest, np.maximum)
        return np.maximum(t, self.host_overhead_s) if self.host_overhead_s > 0 else t

    def decode_run_times(self, num_decodes: int, ctx0: int, first: int, k: int) -> list[float]:
        """`decode_step_times` of k steps whose context sums are ctx0 + n j and longest contexts
        first + j (a cohort's run), in plain Python, float for float: for short runs, where
        numpy's cost per call outweighs its gain. The usual forms of `_decode_gpu` are written
        out with the run's coefficients looked up once; host time and `batch_kv` price each step
        alone."""
        n = num_decodes
        if n == 0:
            return [self.profile.step_overhead_s] * k
        const, per_ctx, per_longest, _ = self._decode_coeffs(n, n)
        times: list[float]  # (declared: `_decode_time` is untyped, and compiled the floor below would be too)
        if self._engine_terms:
            times = [self._decode_time(n, n, ctx0 + n * j, first + j, max) for j in range(k)]
        elif per_longest:
            times = [const + max((ctx0 + n * j) * per_ctx, (first + j) * per_longest) for j in range(k)]
        else:
            times = [const + (ctx0 + n * j) * per_ctx for j in range(k)]
        floor = self.host_overhead_s
        return [t if t > floor else floor for t in times] if floor > 0 else times

    def chunk_step_times(
        self, chunk: int, priors: list[int], num_decodes: int, ctx_sums: list[int],
        max_ctxs: list[int], last: int = 0,
    ) -> list[float] | None:
        """Seconds of consecutive steps that each compute one prompt chunk of `chunk` tokens
        after `priors[j]` cached ones and `num_decodes` decodes with context sums `ctx_sums[j]`
        and longest contexts `max_ctxs[j]`: `step_time` of each, float for float (the same
        operations in the same order, with what does not change between the steps computed
        once, and kept per (chunk, decodes) for chunks other than a last). `last`: the final
        step is instead the prompt's last chunk, of `last` tokens, whose logit row counts too.
        None where that form is not written out (a sliding window, MLA, `batch_kv` attention):
        price the steps one by one. Plain Python: runs are a few steps."""
        if not self._plain_attention:
            return None
        n = num_decodes
        out: list[float] = []
        steps = (priors, ctx_sums, max_ctxs)
        repeats = len(priors) - 1 if last else len(priors)
        if repeats:
            self._chunk_times(chunk, n, self._repeat_terms(chunk, n), steps, 0, repeats, out)
        if last:
            self._chunk_times(last, n, self._chunk_terms(last, n, n + 1), steps, repeats, repeats + 1, out)
        return out

    def _chunk_times(
        self, c: int, n: int, terms: ChunkTerms, steps: tuple[list[int], list[int], list[int]], first: int,
        end: int, out: list[float],
    ) -> None:
        """`chunk_step_times` of steps `first` to `end` (exclusive) of `steps` (priors, context
        sums, longest contexts), each computing a chunk of `c` tokens beside `n` decodes, with the
        steps' `_chunk_terms`. (Indexed: compiled, a list's items are read natively, where zip
        and islice are generic calls.)"""
        t, launch, half, fresh, prefix, q_b, per_ctx, per_longest, calls, tokens = terms
        priors, ctx_sums, max_ctxs = steps
        flops, ctx_b, L = self._attn_prefill_flops, self._attn_ctx_bytes, self._layers
        dec_compute = self._dec_flops >= self._dec_bytes
        engine, floor, host = self._engine, self.prefill_host_overhead_s, self._has_host
        for j in range(first, end):
            p, ctx, longest = priors[j], ctx_sums[j], max_ctxs[j]
            comp = (c * p + half) * flops / (prefix if p else fresh)
            mem = (p + c) * ctx_b + q_b
            a0 = a1 = 0.0
            if comp >= mem:
                a0 += L * (comp if comp > mem else mem)
            else:
                a1 += L * (comp if comp > mem else mem)
            if n:
                bandwidth, slowest = ctx * per_ctx, longest * per_longest
                if dec_compute and bandwidth >= slowest:
                    a0 += bandwidth if bandwidth > slowest else slowest
                else:
                    a1 += bandwidth if bandwidth > slowest else slowest
            gpu = t + a0 + a1 + launch
            if host:
                gpu = engine.step_time(gpu, "eager", 1 + n, calls, tokens, ctx + n + (c + p))
            out.append(gpu if gpu > floor else floor)

    def _chunk_terms(self, c: int, n: int, logits: int) -> ChunkTerms:
        """What `chunk_step_times` computes once for steps of a `c`-token chunk beside `n`
        decodes with `logits` logit rows (as `_mixed_time` computes it for each step)."""
        tokens = c + n
        t = (
            self._linear_time(tokens, logits, 0)
            + self._moe_time(tokens)
            + tokens * self._elem_per_token
            + self._elem_fixed
            + self._comm_time(tokens, logits)
            + self._step_overhead
        )
        calls = self._chunk_calls
        launch = 0.0 + self._layers * self._t_kernel * calls
        half, rows = c * (c + 1) / 2, c * self._attn_heads
        fresh = self._fresh_eff * rows / (rows + self._attn_pad)
        prefix = self._prefix_eff * rows / (rows + self._attn_pad)
        per_ctx = per_longest = 0.0
        if n:
            per_ctx, per_longest, launches = self._decode_terms(n)
            launch += launches
        return (t, launch, half, fresh, prefix, c * self._attn_q_bytes, per_ctx, per_longest, calls,
                tokens)

    def _repeat_terms(self, c: int, n: int) -> ChunkTerms:
        """`_chunk_terms` of a chunk that is not the prompt's last, kept: a run's repeats meet
        the same few (chunk, decodes) pairs again and again (a last chunk's rarely recur)."""
        terms = self._chunk_cache.get((c, n))
        if terms is None:
            terms = remember(self._chunk_cache, (c, n), self._chunk_terms(c, n, n))
        return terms

    def gpu_time(self, shape: StepShape) -> float:
        """The step's GPU time alone: no host time, no floors."""
        if not shape.prefill_chunks:
            if shape.num_decodes == 0:
                return self.profile.step_overhead_s
            n, ctx, longest = shape.num_decodes, shape.decode_ctx_sum, shape.max_decode_ctx
            return self._decode_gpu(self._decode_coeffs(n, shape.num_logit_tokens), n, ctx, longest, max)
        return self._mixed_time(shape)

    def breakdown(self, shape: StepShape) -> StepCost:
        """Per-group seconds; `total_s` equals `step_time(shape)` up to float rounding."""
        # compute-bound, memory-bound, overhead seconds; FLOP seconds hidden under memory-bound time
        parts = {g: [0.0, 0.0, 0.0, 0.0] for g in GROUPS}
        graph_rows = 0 if shape.prefill_chunks else self._engine.graph_batch(shape.num_decodes)
        tokens = graph_rows or shape.num_tokens
        rows = {"tokens": tokens, LOGITS: graph_rows or shape.num_logit_tokens}
        rows[CONTEXT] = self._context_rows(shape)
        for row_s, w_s, act_s, src, count, group in self._gemms:
            m = rows[src]
            if m:
                c, mem = row_s * (m + self._pad), w_s + act_s * m
                parts[group][0 if c >= mem else 1] += count * max(c, mem)
                parts[group][2] += count * self._t_gemm
                parts[group][3] += count * c if c < mem else 0.0
        if self.layout.moe is not None and tokens:
            c, mem, dispatch, launches = self._moe_parts(tokens)
            parts["moe"][0 if c >= mem else 1] += max(c, mem)
            parts["moe"][3] += c if c < mem else 0.0
            parts["moe"][1] += dispatch
            parts["moe"][2] += launches
        self._attention_parts(shape, parts["attention"], graph_rows)
        if tokens:
            parts["elementwise"][1] += tokens * self._elem_per_token
            parts["elementwise"][2] += self._elem_fixed
        parts["comm"][0] += self._comm_time(tokens, rows[LOGITS])
        parts["overhead"][2] += self.profile.step_overhead_s
        by_op = {g: sum(v[:3]) for g, v in parts.items() if sum(v[:3]) > 0}
        compute = sum(v[0] for g, v in parts.items() if g != "comm")
        memory = sum(v[1] for v in parts.values())
        overhead = sum(v[2] for v in parts.values())
        comm = parts["comm"][0]
        hidden = sum(v[3] for v in parts.values())
        gpu = compute + memory + overhead + comm
        total = self.step_time(shape) if tokens else gpu
        if total > gpu:
            by_op["host_wait"] = total - gpu
            overhead += total - gpu
        return StepCost(total, by_op, compute, memory, comm, overhead, hidden)

    # -- pieces --------------------------------------------------------------------------------------
    def _decode_time(self, n: int, logits: int, ctx_sum, longest, maximum):
        """A pure-decode step (`maximum` = max) or a vector of them (np.maximum): GPU time, then the
        engine's host time."""
        coeffs = self._decode_coeffs(n, logits)
        gpu = self._decode_gpu(coeffs, n, ctx_sum, longest, maximum)
        if not self._engine.has_host:
            return gpu
        return self._engine.step_time(gpu, coeffs[3], n, 0, n, ctx_sum + n, decode=True)

    def _decode_gpu(self, coeffs, n: int, ctx_sum, longest, maximum):
        const, per_ctx, per_longest, _ = coeffs
        if self._decode_mode == "batch_kv":
            kv = ctx_sum + n
            return const + maximum(kv * (n * self._batch_pair), kv * self._batch_kv_token)
        if per_longest:
            return const + maximum(ctx_sum * per_ctx, longest * per_longest)
        return const + ctx_sum * per_ctx

    def _decode_coeffs(self, n: int, logits: int) -> tuple[float, float, float, str]:
        """C, A, B and the host mode of a pure-decode step of n requests: it costs
        C + max(A x context sum, B x longest context), where B x longest is what the slowest block
        of a block-limited kernel needs (B = 0 if none). A captured graph computes its padded batch."""
        key = (n, logits)
        hit = self._decode_cache.get(key)
        if hit is not None:
            return hit
        rows = self._engine.graph_batch(n)
        m, lg = rows or n, rows or logits
        const = (
            self._linear_time(m, lg, m)
            + self._moe_time(m)
            + m * self._elem_per_token
            + self._elem_fixed
            + self._comm_time(m, lg)
            + self.profile.step_overhead_s
        )
        per_ctx, per_longest, launches = self._decode_attention_terms(n, m)
        coeffs = (const + launches, per_ctx, per_longest, "graph" if rows else "eager")
        return remember(self._decode_cache, key, coeffs)

    def _decode_terms(self, n: int) -> tuple[float, float, float]:
        """`_decode_attention_terms(n, n)`, kept per decode count: the chunk form reads them for
        every run of chunk steps beside decodes (a mixed run's last chunk has fresh terms)."""
        terms = self._decode_terms_cache.get(n)
        if terms is None:
            terms = remember(self._decode_terms_cache, n, self._decode_attention_terms(n, n))
        return terms

    def _decode_attention_terms(self, n: int, split_basis: int) -> tuple[float, float, float]:
        """Decode attention of all layers: (seconds per context token at full bandwidth, seconds
        per token of the longest context for the slowest block, launch seconds). `mean` puts the
        slowest block at the mean context, so its share folds into the first term."""
        L = self._layers
        full = self._dec_flops if self._dec_flops > self._dec_bytes else self._dec_bytes
        block = self._dec_block_token  # one block's seconds per context token; 0: not block-limited
        mode, launches = self._decode_mode, L * self._t_kernel
        if mode == "batch_kv":
            return 0.0, 0.0, launches
        if mode in ("mean", "padded_cache") or not block:
            per = block / n if block / n > full else full
            if mode == "padded_cache":  # a static cache: every decode reads all its slots
                return 0.0, 0.0, launches + L * per * n * self._dec_padded
            return L * per, 0.0, launches
        if mode == "split_kv":
            splits = self._splits(split_basis)
            block /= splits
            if splits > 1:
                launches += L * self._t_kernel  # the reduction across splits
        return L * full, L * block, launches

    def _splits(self, batch: int) -> int:
        """Splits per sequence of a split-KV kernel: a power of two filling the target blocks."""
        pr = self.profile
        per_seq = pr.split_kv_target_blocks / (batch * max(self._dec_blocks, 1))
        if per_seq < 2:
            return 1
        return int(min(pr.split_kv_max_splits, 2 ** math.floor(math.log2(per_seq))))

    def _mixed_time(self, shape: StepShape) -> float:
        tokens, logits = shape.num_tokens, shape.num_logit_tokens
        t = (
            self._linear_time(tokens, logits, self._context_rows(shape))
            + self._moe_time(tokens)
            + tokens * self._elem_per_token
            + self._elem_fixed
            + self._comm_time(tokens, logits)
            + self.profile.step_overhead_s
        )
        acc = [0.0, 0.0, 0.0, 0.0]
        self._attention_parts(shape, acc)
        return t + acc[0] + acc[1] + acc[2]

    def _context_rows(self, shape: StepShape) -> int:
        if not self.model.is_mla:
            return 0
        return shape.num_decodes + sum(c + p for c, p in shape.prefill_chunks)

    def _linear_time(self, tokens: int, logits: int, ctx_rows: int) -> float:
        key = (tokens, logits, ctx_rows)
        hit = self._linear_cache.get(key)
        if hit is not None:
            return hit
        total, pad, launch = 0.0, self._pad, self._t_gemm
        for source, count, row_s, w_s, act_s in self._linear_gemms:
            m = tokens if source == 0 else logits if source == 1 else ctx_rows
            if m:
                c, mem = row_s * (m + pad), w_s + act_s * m
                total += count * ((c if c > mem else mem) + launch)
        return remember(self._linear_cache, key, total)

    def _moe_parts(self, tokens: int) -> tuple[float, float, float, float]:
        """Routed experts of all MoE layers: (compute s, memory s, dispatch s, launch s).

        Routing is taken as uniform: of E experts, a batch of T tokens with top-k touches
        E (1 - (1 - k/E)^T) of them in expectation; only those experts' weights are read, and each
        touched expert costs its kernel launches. Moving token rows to and from the experts is
        elementwise traffic on top of the expert GEMMs.
        """
        moe = self.layout.moe
        assert moe is not None  # called for MoE models only
        frac_hit = 1.0 - (1.0 - moe.top_k / moe.num_experts) ** tokens
        touched = moe.local_experts * frac_hit
        rows = tokens * moe.top_k / moe.ep
        compute = moe.count * self._moe_row * (rows + self._pad * touched)
        memory = moe.count * (touched * self._moe_weight + rows * self._moe_act)
        dispatch = moe.count * rows * self._moe_route
        launches = moe.count * (self._moe_layer_launch + touched * self._moe_expert_launch)
        return compute, memory, dispatch, launches

    def _moe_time(self, tokens: int) -> float:
        if not self._has_moe or not tokens:
            return 0.0
        c, mem, dispatch, launches = self._moe_parts(tokens)
        return (c if c > mem else mem) + dispatch + launches

    def _attention_parts(self, shape: StepShape, acc: list[float], graph_rows: int = 0) -> None:
        """Prefill-chunk and decode attention of all layers into acc [compute, memory, overhead,
        hidden FLOP seconds]."""
        pr, L = self.profile, self._layers
        if self._decode_mode == "batch_kv":
            self._batch_attention(shape, acc)
            return
        window = self.model.sliding_window
        chunks = shape.prefill_chunks
        # a batched (varlen/paged) prefill kernel is one launch per layer for all chunks
        acc[2] += L * self._t_kernel * self._engine.attention_calls(sum(1 for c, _ in chunks if c > 0))
        for c, p in chunks:
            if c <= 0:
                continue
            if window and p + c > window:
                pairs = window_pairs(p, c, window)
                p = min(p, window - 1)  # keys read: the window before the chunk's first query
            else:
                pairs = c * p + c * (c + 1) / 2
            # Work blocks scale with query rows x heads: short chunks on few heads leave cores idle.
            rows = c * self._attn_heads
            eff = (pr.attn_prefix_eff if p else pr.attn_prefill_eff) * rows / (rows + self._attn_pad)
            comp = pairs * self._attn_prefill_flops / eff
            mem = (p + c) * self._attn_ctx_bytes + c * self._attn_q_bytes
            acc[0 if comp >= mem else 1] += L * (comp if comp > mem else mem)
            acc[3] += L * comp if comp < mem else 0.0
        n = shape.num_decodes
        if n:
            per_ctx, per_longest, launches = self._decode_attention_terms(n, graph_rows or n)
            bandwidth = shape.decode_ctx_sum * per_ctx
            slowest = shape.max_decode_ctx * per_longest
            compute = self._dec_flops >= self._dec_bytes and bandwidth >= slowest
            acc[0 if compute else 1] += bandwidth if bandwidth > slowest else slowest
            acc[2] += launches

    def _batch_attention(self, shape: StepShape, acc: list[float]) -> None:
        """`batch_kv`: one dense attention over the batch, every query row against every KV token
        of the batch, after gathering the batch's KV and expanding it to all heads."""
        kv = shape.kv_tokens
        comp = kv * (shape.num_tokens * self._batch_pair)
        mem = kv * self._batch_kv_token
        acc[0 if comp >= mem else 1] += comp if comp > mem else mem
        acc[3] += comp if comp < mem else 0.0
        acc[2] += self._layers * self._t_kernel

    def _comm_time(self, tokens: int, logits: int) -> float:
        t = 0.0
        if tokens:
            t += self._comm_fixed + tokens * self._comm_per_token
            t += self._a2a_fixed + tokens * self._a2a_per_token
        if logits:
            t += self._comm_logit_fixed + logits * self._comm_per_logit
        return t
