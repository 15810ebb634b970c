"""What a step does, in work rather than time: tensor FLOPs, HBM bytes and link bytes per GPU.

The power model prices a step from these (energy per FLOP, per byte moved, per byte sent) plus the
step's duration; the time model prices the same shape in seconds. Both read the same `Layout`, so the
operator inventory is written once. Counts are ideal: each weight read once per step, each cached
token's K/V read once per layer, activations written and read once per kernel (as the roofline's
memory terms count them).

A pure-decode step of n requests is linear in the sum of their contexts S: F = F0(n) + F1 S,
B = B0(n) + B1 S; `decode_coeffs` returns those coefficients so runs of steps price in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

from servesim.cost.base import StepShape
from servesim.cost.layout import CONTEXT, LOGITS, TOKENS, Layout, window_pairs
from servesim.cost.profile import CostProfile
from servesim.cost.shared_cache import remember, shared_cache

_ROWS = (TOKENS, LOGITS, CONTEXT)
"""A GEMM's row sources, in the order `WorkModel._linear` numbers them."""

ChunkTerms = tuple[float, float, float, float, float, float, float, float]
"""`WorkModel._chunk_terms`: (linear FLOPs, linear bytes, MoE FLOPs, MoE bytes, half the chunk's
own pairs, query bytes, elementwise bytes, link bytes). Written out: the compiled core unpacks
a typed tuple without boxing."""


@dataclass(frozen=True, slots=True)
class StepWork:
    """The work of one step on one GPU, which the roofline turns into time."""

    flops: float
    """Tensor-core FLOPs on one GPU (GEMMs and attention)."""
    hbm_bytes: float
    """Bytes read or written in HBM on one GPU."""
    link_bytes: float = 0.0
    """Bytes one GPU sends over the intra-node link (all-reduce, all-to-all, pipeline sends)."""


class WorkModel:
    """Counts a step's work on one tensor-parallel rank of an instance, summed over its pipeline
    stages (every layer once), so the instance's work is `tp` times this."""

    def __init__(self, layout: Layout, profile: CostProfile):
        self.layout = layout
        self.model = layout.model
        self._mla = layout.model.is_mla  # (a property: read once)
        ab = layout.act_bytes
        L = layout.num_layers
        per_token = (
            profile.elementwise_hidden_passes * layout.model.hidden_size * L
            + profile.elementwise_mlp_passes * layout.mlp_width_sum()
            + layout.model_hidden_passes * layout.model.hidden_size
        ) * ab
        self._elem_bytes_per_token = per_token
        self._route_bytes = profile.moe_route_passes * layout.model.hidden_size * ab
        self._link_per_token, self._link_per_logit = self._link_terms()
        # the chunk form's attention constants, read from `Layout` (not compiled) once
        a = layout.attention
        self._layers: int = layout.num_layers
        self._pair_flops: float = a.prefill_flops_per_pair
        self._ctx_bytes: float = a.prefill_bytes_per_ctx_token
        self._query_bytes: float = a.prefill_bytes_per_query
        self._dec_flops: float = a.decode_flops_per_ctx_token
        self._dec_bytes: float = a.decode_bytes_per_ctx_token
        self._decode_cache: dict[int, tuple[float, float, float, float, float]] = {}
        self._chunk_cache: dict[tuple[int, int], ChunkTerms] = {}
        # per GEMM, what `_linear` reads, typed (`Gemm` is not compiled): its rows' source (0
        # tokens, 1 logits, 2 context rows), count, FLOPs per row of all `count` (count x 2.0 x
        # K x N), weight bytes, activation bytes per row ((K + N) x act bytes)
        self._gemms: list[tuple[int, float, float, float, float]] = [
            (_ROWS.index(g.rows), float(g.count), g.count * 2.0 * g.k * g.n, float(g.weight_bytes),
             (g.k + g.n) * ab)
            for g in layout.gemms
        ]
        # `_linear` reads these constants alone
        self._linear_cache: dict[tuple[int, int, int], tuple[float, float]] = shared_cache(
            ("linear_work", tuple(layout.gemms), ab))

    def work(self, shape: StepShape) -> StepWork:
        return StepWork(*self.work_parts(shape))

    def work_parts(self, shape: StepShape) -> tuple[float, float, float]:
        """`work` as (flops, HBM bytes, link bytes): the power model prices every single step
        from these, and a frozen `StepWork` costs a `__setattr__` call per field."""
        tokens, logits = shape.num_tokens, shape.num_logit_tokens
        if not tokens:
            return 0.0, 0.0, 0.0
        flops, hbm = self._linear(tokens, logits, self._context_rows(shape))
        f_moe, b_moe = self._moe(tokens)
        f_att, b_att = self._attention(shape)
        flops += f_moe + f_att
        hbm += b_moe + b_att + tokens * self._elem_bytes_per_token
        link = tokens * self._link_per_token + logits * self._link_per_logit
        return flops, hbm, link

    def chunk_step_work(
        self, chunk: int, priors: list[int], num_decodes: int, ctx_sums: list[int], last: int = 0,
    ) -> tuple[list[float], list[float]]:
        """FLOPs and bytes moved (HBM bytes + link bytes, added in that order) per step, of the
        steps `RooflineCostModel.chunk_step_times` prices (`last` as there): `work` of each,
        float for float. Not for a sliding window or MLA."""
        n = num_decodes
        flops: list[float] = []
        moved: list[float] = []
        repeats = len(priors) - 1 if last else len(priors)
        if repeats:
            terms = self._repeat_terms(chunk, n)
            self._chunk_work(chunk, n, terms, priors, ctx_sums, 0, repeats, flops, moved)
        if last:
            terms = self._chunk_terms(last, n, n + 1)
            self._chunk_work(last, n, terms, priors, ctx_sums, repeats, repeats + 1, flops, moved)
        return flops, moved

    def _chunk_work(
        self, c: int, n: int, terms: ChunkTerms, priors: list[int], ctx_sums: list[int], first: int, end: int,
        flops: list[float], moved: list[float],
    ) -> None:
        """`chunk_step_work` of steps `first` to `end` (exclusive) of a `c`-token chunk beside `n`
        decodes, with the steps' `_chunk_terms`. (Indexed: compiled, a list's items are read
        natively, where zip and islice are generic calls.)"""
        lin_f, lin_b, f_moe, b_moe, half, q_b, elem, link = terms
        L, pair_f, ctx_b = self._layers, self._pair_flops, self._ctx_bytes
        dec_f, dec_b = self._dec_flops, self._dec_bytes
        for j in range(first, end):
            p, ctx = priors[j], ctx_sums[j]
            f_att = 0.0 + L * (c * p + half) * pair_f
            b_att = 0.0 + L * ((p + c) * ctx_b + q_b)
            if n:
                f_att += L * ctx * dec_f
                b_att += L * ctx * dec_b
            flops.append(lin_f + (f_moe + f_att))
            moved.append(lin_b + (b_moe + b_att + elem) + link)

    def _chunk_terms(self, c: int, n: int, logits: int) -> ChunkTerms:
        """What `chunk_step_work` computes once for steps of a `c`-token chunk beside `n` decodes
        with `logits` logit rows."""
        tokens = c + n
        lin_f, lin_b = self._linear(tokens, logits, 0)
        f_moe, b_moe = self._moe(tokens)
        half, q_b = c * (c + 1) / 2, c * self._query_bytes
        link = tokens * self._link_per_token + logits * self._link_per_logit
        return lin_f, lin_b, f_moe, b_moe, half, q_b, tokens * self._elem_bytes_per_token, link

    def _repeat_terms(self, c: int, n: int) -> ChunkTerms:
        """`_chunk_terms` of a chunk that is not the prompt's last, kept: a run's repeats meet
        the same few (chunk, decodes) pairs again and again (a last chunk's rarely recur)."""
        terms = self._chunk_cache.get((c, n))
        if terms is None:
            terms = remember(self._chunk_cache, (c, n), self._chunk_terms(c, n, n))
        return terms

    def decode_coeffs(self, n: int) -> tuple[float, float, float, float, float]:
        """(F0, F1, B0, B1, link) of a pure-decode step of n requests: F = F0 + F1 S, B = B0 + B1 S."""
        hit = self._decode_cache.get(n)
        if hit is not None:
            return hit
        if n == 0:
            return (0.0, 0.0, 0.0, 0.0, 0.0)
        base = self.work(StepShape([], n, 0, n))
        a = self.layout.attention
        L = self.layout.num_layers
        f1 = L * a.decode_flops_per_ctx_token
        b1 = L * a.decode_bytes_per_ctx_token
        out = (base.flops, f1, base.hbm_bytes, b1, base.link_bytes)
        self._decode_cache[n] = out
        return out

    # -- pieces ----------------------------------------------------------------------------------------
    def _context_rows(self, shape: StepShape) -> int:
        if not self._mla:
            return 0
        return shape.num_decodes + sum(c + p for c, p in shape.prefill_chunks)

    def _linear(self, tokens: int, logits: int, ctx_rows: int) -> tuple[float, float]:
        key = (tokens, logits, ctx_rows)
        hit = self._linear_cache.get(key)
        if hit is not None:
            return hit
        flops = hbm = 0.0
        for source, count, row_flops, weight, row_bytes in self._gemms:
            m = tokens if source == 0 else logits if source == 1 else ctx_rows
            if m:  # count x 2.0 x K x N x m; count x (weight bytes + (K + N) x act bytes x m)
                flops += row_flops * m
                hbm += count * (weight + row_bytes * m)
        return remember(self._linear_cache, key, (flops, hbm))

    def _moe(self, tokens: int) -> tuple[float, float]:
        moe = self.layout.moe
        if moe is None:
            return 0.0, 0.0
        touched = moe.local_experts * (1.0 - (1.0 - moe.top_k / moe.num_experts) ** tokens)
        rows = tokens * moe.top_k / moe.ep
        ab = self.layout.act_bytes
        flops = moe.count * 2.0 * moe.matrices * moe.hidden * moe.width * rows
        hbm = moe.count * (
            touched * moe.weight_bytes_per_expert
            + rows * (3 * moe.hidden + moe.matrices * moe.width) * ab
            + rows * self._route_bytes
        )
        return flops, hbm

    def _attention(self, shape: StepShape) -> tuple[float, float]:
        a, L = self.layout.attention, self.layout.num_layers
        flops = hbm = 0.0
        window = self.model.sliding_window
        for c, p in shape.prefill_chunks:
            if c > 0:
                if window and p + c > window:  # as the roofline: the window caps pairs and keys
                    pairs, p = window_pairs(p, c, window), min(p, window - 1)
                else:
                    pairs = c * p + c * (c + 1) / 2
                flops += L * pairs * a.prefill_flops_per_pair
                hbm += L * ((p + c) * a.prefill_bytes_per_ctx_token + c * a.prefill_bytes_per_query)
        if shape.num_decodes:
            flops += L * shape.decode_ctx_sum * a.decode_flops_per_ctx_token
            hbm += L * shape.decode_ctx_sum * a.decode_bytes_per_ctx_token
        return flops, hbm

    def _link_terms(self) -> tuple[float, float]:
        """Bytes one GPU sends per token (collectives of every layer) and per logit (gather)."""
        lay, tp, pp = self.layout, self.layout.tp, self.layout.pp
        h_bytes = lay.hidden_bytes
        per_token = per_logit = 0.0
        if tp > 1:
            per_token += lay.num_allreduces * 2.0 * (tp - 1) / tp * h_bytes
            per_logit += (tp - 1) / tp * lay.model.vocab_size * lay.act_bytes
        if pp > 1:
            per_token += (pp - 1) * h_bytes  # one send per stage boundary
        if lay.expert_parallel:
            moe = lay.moe
            assert moe is not None  # expert parallelism implies MoE layers
            ep = moe.ep
            per_token += 2 * moe.count * moe.top_k * h_bytes * (ep - 1) / ep / ep
        return per_token, per_logit
