"""mini_engine: a minimal vLLM-like continuous-batching engine, built as a measurement tool.

Llama-3-8B shape (hidden 4096, 32 layers, 32 q heads, 8 KV heads, head dim 128, SwiGLU MLP 14336,
vocab 128256, RMSNorm; RoPE omitted), random bf16 weights, one GPU.  Paged KV cache (block size 16, pool
sized to 0.85 of the GPU memory free after the weights, block 0 reserved as the sink of padded rows).
Decode steps: a Triton paged-attention kernel (GQA aware, split-KV for batches below 32) replayed from CUDA
graphs per batch-size bucket (1..256).  Prefill: flash SDPA per prompt (fcfs) or one Triton kernel over the
paged cache for all chunks of a step (chunked).  cuDNN SDPA is disabled: on the H100 torch 2.11 ranks it
first and it builds an execution plan for every new sequence length (60-1000 ms on first use).  Next token
= argmax of the last position's logits; output lengths come from the workload (no EOS).

  fcfs     vLLM v0 without chunked prefill: a prefill-only step of whole prompts when waiting requests fit
           (8192 tokens, 256 seqs, free blocks above a 1% watermark), else one decode step of all running
           requests; a decode step that cannot get a block preempts the most recently arrived running
           request by recompute.
  chunked  Sarathi-style: every step carries all running decodes plus prefill chunks (arrival order) that
           fill a 512-token budget (decode tokens count against it); a prompt may span steps.

Requests are replayed in real time (wall clock) from a workload CSV (arrival_s, prompt_tokens,
output_tokens); per-request and per-step CSVs are written.  Not product code.

Subcommands:
  workload  make workload CSVs from the Azure conv trace (numpy only)
  check     kernel checks, consistency check, iteration-latency check
  serve     check, then replay one or more workloads: --run NAME:POLICY:WORKLOAD.csv (repeatable)
  summary   summary statistics from result folders (numpy only)
"""
import argparse
import bisect
import csv
import gc
import json
import math
import os
import shutil
import sys
import time

import numpy as np

LLAMA3_8B = dict(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, inter=14336, vocab=128256)
TINY = dict(hidden=256, layers=2, heads=4, kv_heads=2, head_dim=64, inter=512, vocab=1000)
BLOCK = 16
BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]
MAX_NUM_SEQS = 256
FCFS_TOKEN_BUDGET = 8192
CHUNK_BUDGET = 512
MAX_PROMPT, MAX_OUTPUT = 4096, 512
WATERMARK_FRAC = 0.01


# ----------------------------------------------------------------------------------------------------
# workload generation (numpy only)
# ----------------------------------------------------------------------------------------------------
def make_workloads(trace, outdir, n, rates, seed):
    ctx, gen = [], []
    with open(trace) as f:
        for r in csv.DictReader(f):
            ctx.append(int(r["ContextTokens"]))
            gen.append(int(r["GeneratedTokens"]))
    ctx, gen = np.array(ctx), np.array(gen)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ctx), size=n, replace=False)  # same length pairs for every rate
    p = np.minimum(ctx[idx], MAX_PROMPT)
    o = np.maximum(np.minimum(gen[idx], MAX_OUTPUT), 1)
    e = np.random.default_rng(seed + 1).exponential(1.0, size=n)  # unit-rate gaps, scaled per rate
    os.makedirs(outdir, exist_ok=True)
    paths = {}
    for name, rate in rates.items():
        arr = np.cumsum(e / rate)
        path = os.path.join(outdir, f"workload_{name}.csv")
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["request_id", "arrival_s", "prompt_tokens", "output_tokens", "trace_row"])
            for i in range(n):
                w.writerow([i, f"{arr[i]:.6f}", int(p[i]), int(o[i]), int(idx[i])])
        paths[name] = path
        print(f"{path}: n={n} rate={rate}/s span={arr[-1]:.1f}s mean_prompt={p.mean():.0f} "
              f"mean_output={o.mean():.0f}")
    return paths


def read_workload(path):
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            rows.append((int(r["request_id"]), float(r["arrival_s"]), int(r["prompt_tokens"]),
                         int(r["output_tokens"])))
    rows.sort(key=lambda x: (x[1], x[0]))
    return rows


# ----------------------------------------------------------------------------------------------------
# GPU part (torch / triton imported lazily so `workload` and `summary` need numpy only)
# ----------------------------------------------------------------------------------------------------
def _import_gpu():
    global torch, F, triton, tl
    import torch as _torch
    import torch.nn.functional as _F
    import triton as _triton
    import triton.language as _tl
    torch, F, triton, tl = _torch, _F, _triton, _tl


def _define_kernels():
    global _paged_attn_fwd, _paged_attn_reduce, _paged_prefill_fwd

    @triton.jit
    def _paged_attn_fwd(Q, KC, VC, BT, CTX, O, MS, LS, ACC,
                        stride_qb, stride_qh, stride_kb, stride_kt, stride_kh, stride_bt,
                        stride_ob, stride_oh, scale,
                        GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, D: tl.constexpr,
                        BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, NUM_SPLITS: tl.constexpr,
                        NUM_HEADS: tl.constexpr):
        # one program: one sequence, one KV head (all GROUP query heads of it), one split of the context
        b = tl.program_id(0)
        kvh = tl.program_id(1)
        sp = tl.program_id(2)
        ctx = tl.load(CTX + b)
        n_chunks = tl.cdiv(ctx, BLOCK_N)
        cps = tl.cdiv(n_chunks, NUM_SPLITS)
        start = sp * cps * BLOCK_N
        end = tl.minimum(start + cps * BLOCK_N, ctx)
        offs_g = tl.arange(0, GROUP_PAD)
        offs_d = tl.arange(0, D)
        offs_n = tl.arange(0, BLOCK_N)
        gmask = offs_g < GROUP
        heads = kvh * GROUP + offs_g
        q = tl.load(Q + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
                    mask=gmask[:, None], other=0.0)
        m_i = tl.full([GROUP_PAD], float("-inf"), tl.float32)
        l_i = tl.zeros([GROUP_PAD], dtype=tl.float32)
        acc = tl.zeros([GROUP_PAD, D], dtype=tl.float32)
        bt_row = BT + b * stride_bt
        for n0 in range(start, end, BLOCK_N):
            n = n0 + offs_n
            nmask = n < end
            blk = tl.load(bt_row + n // BLOCK_SIZE, mask=nmask, other=0).to(tl.int64)
            off = blk * stride_kb + (n % BLOCK_SIZE) * stride_kt + kvh * stride_kh
            k = tl.load(KC + off[:, None] + offs_d[None, :], mask=nmask[:, None], other=0.0)
            s = tl.dot(q, tl.trans(k)) * scale
            s = tl.where(nmask[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(VC + off[:, None] + offs_d[None, :], mask=nmask[:, None], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m_i = m_new
        if NUM_SPLITS == 1:
            l_safe = tl.where(l_i > 0, l_i, 1.0)
            o = acc / l_safe[:, None]
            tl.store(O + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :],
                     o.to(O.dtype.element_ty), mask=gmask[:, None])
        else:
            row = (b * NUM_HEADS + heads) * NUM_SPLITS + sp
            tl.store(MS + row, m_i, mask=gmask)
            tl.store(LS + row, l_i, mask=gmask)
            tl.store(ACC + row[:, None] * D + offs_d[None, :], acc, mask=gmask[:, None])

    @triton.jit(do_not_specialize=["num_tiles"])  # a num_tiles of 1 would otherwise compile mid-run
    def _paged_prefill_fwd(Q, KC, VC, BT, O, TILES, num_tiles,
                           stride_qt, stride_qh, stride_kb, stride_kt, stride_kh, stride_bt,
                           stride_ot, stride_oh, scale,
                           GROUP: tl.constexpr, D: tl.constexpr, BLOCK_SIZE: tl.constexpr,
                           BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr):
        # one program: BLOCK_T consecutive tokens of one prefill chunk x the GROUP query heads of one KV
        # head; keys are that sequence's cached positions [0, pos0 + len) read through its block table,
        # with the causal limit key_pos <= query_pos (the chunk's own K/V are already in the cache)
        tile = tl.program_id(0)
        kvh = tl.program_id(1)
        seq = tl.load(TILES + tile)
        qrow = tl.load(TILES + num_tiles + tile)
        tlen = tl.load(TILES + 2 * num_tiles + tile)
        pos0 = tl.load(TILES + 3 * num_tiles + tile)
        offs_m = tl.arange(0, BLOCK_T * GROUP)
        t = offs_m // GROUP
        heads = kvh * GROUP + offs_m % GROUP
        mmask = t < tlen
        offs_d = tl.arange(0, D)
        offs_n = tl.arange(0, BLOCK_N)
        q = tl.load(Q + (qrow + t)[:, None] * stride_qt + heads[:, None] * stride_qh + offs_d[None, :],
                    mask=mmask[:, None], other=0.0)
        qpos = pos0 + t
        m_i = tl.full([BLOCK_T * GROUP], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_T * GROUP], dtype=tl.float32)
        acc = tl.zeros([BLOCK_T * GROUP, D], dtype=tl.float32)
        end = pos0 + tlen
        bt_row = BT + seq * stride_bt
        for n0 in range(0, end, BLOCK_N):
            n = n0 + offs_n
            nmask = n < end
            blk = tl.load(bt_row + n // BLOCK_SIZE, mask=nmask, other=0).to(tl.int64)
            off = blk * stride_kb + (n % BLOCK_SIZE) * stride_kt + kvh * stride_kh
            k = tl.load(KC + off[:, None] + offs_d[None, :], mask=nmask[:, None], other=0.0)
            sc = tl.dot(q, tl.trans(k)) * scale
            sc = tl.where((n[None, :] <= qpos[:, None]) & nmask[None, :], sc, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(sc, 1))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(sc - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(VC + off[:, None] + offs_d[None, :], mask=nmask[:, None], other=0.0)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m_i = m_new
        o = acc / l_i[:, None]
        tl.store(O + (qrow + t)[:, None] * stride_ot + heads[:, None] * stride_oh + offs_d[None, :],
                 o.to(O.dtype.element_ty), mask=mmask[:, None])

    @triton.jit
    def _paged_attn_reduce(MS, LS, ACC, O, stride_ob, stride_oh,
                           NUM_SPLITS: tl.constexpr, D: tl.constexpr, NUM_HEADS: tl.constexpr):
        b = tl.program_id(0)
        h = tl.program_id(1)
        offs_s = tl.arange(0, NUM_SPLITS)
        offs_d = tl.arange(0, D)
        row = (b * NUM_HEADS + h) * NUM_SPLITS + offs_s
        m = tl.load(MS + row)
        l = tl.load(LS + row)
        m_max = tl.max(m, 0)
        m_max = tl.where(m_max == float("-inf"), 0.0, m_max)
        w = tl.exp(m - m_max)
        acc = tl.load(ACC + row[:, None] * D + offs_d[None, :])
        num = tl.sum(acc * w[:, None], 0)
        den = tl.sum(l * w, 0)
        den = tl.where(den > 0, den, 1.0)
        tl.store(O + b * stride_ob + h * stride_oh + offs_d, (num / den).to(O.dtype.element_ty))


def num_splits(B):
    """Split-KV factor: enough programs to fill the GPU for small batches (power of two, <= 16)."""
    s = 256 // (8 * max(B, 1))
    if s <= 1:
        return 1
    return min(16, 1 << (s.bit_length() - 1))


def paged_attention(q, kc, vc, bt, ctx, scratch, S, out=None):
    """Decode attention. q [B, H, D] (last stride 1), kc/vc [NB, BLOCK, KVH, D] (any strides, last 1),
    bt [B, MAXB] int32, ctx [B] int32 (tokens in cache, the new one included)."""
    B, H, D = q.shape
    KVH = kc.shape[2]
    G = H // KVH
    if out is None:
        out = torch.empty(B, H, D, device=q.device, dtype=q.dtype)
    ms, ls, acc = scratch
    _paged_attn_fwd[(B, KVH, S)](
        q, kc, vc, bt, ctx, out, ms, ls, acc,
        q.stride(0), q.stride(1), kc.stride(0), kc.stride(1), kc.stride(2), bt.stride(0),
        out.stride(0), out.stride(1), 1.0 / math.sqrt(D),
        GROUP=G, GROUP_PAD=max(16, triton.next_power_of_2(G)), D=D, BLOCK_SIZE=kc.shape[1],
        BLOCK_N=64, NUM_SPLITS=S, NUM_HEADS=H, num_warps=4)
    if S > 1:
        _paged_attn_reduce[(B, H)](ms, ls, acc, out, out.stride(0), out.stride(1),
                                   NUM_SPLITS=S, D=D, NUM_HEADS=H, num_warps=4)
    return out


PREFILL_BLOCK_T = 16


def prefill_tiles(segs):
    """segs: list of (row in the step's block-table array, first row in the token array, length, prefix).
    Returns int32 [4, ntiles]: seq row, token row, tokens in tile, absolute position of its first token."""
    cols = []
    for i, qrow, n, pre in segs:
        j = np.arange(0, n, PREFILL_BLOCK_T)
        cols.append(np.stack([np.full_like(j, i), qrow + j, np.minimum(PREFILL_BLOCK_T, n - j), pre + j]))
    return np.concatenate(cols, axis=1).astype(np.int32)


def paged_prefill_attention(q, kc, vc, bt, tiles, ntiles, out):
    """Chunk attention over the paged cache (prefix + the chunk itself, causal).  q/out [T, H, D]."""
    T, H, D = q.shape
    KVH = kc.shape[2]
    G = H // KVH
    _paged_prefill_fwd[(ntiles, KVH)](
        q, kc, vc, bt, out, tiles, ntiles,
        q.stride(0), q.stride(1), kc.stride(0), kc.stride(1), kc.stride(2), bt.stride(0),
        out.stride(0), out.stride(1), 1.0 / math.sqrt(D),
        GROUP=G, D=D, BLOCK_SIZE=kc.shape[1], BLOCK_T=PREFILL_BLOCK_T, BLOCK_N=64, num_warps=4)
    return out


def sdpa_causal(q, k, v, prefix):
    """q [L, H, D]; k, v [N, KVH, D] with N = prefix + L (queries are the last L positions)."""
    from torch.nn.attention.bias import causal_lower_right
    L, H, D = q.shape
    N, KVH, _ = k.shape
    qi = q.transpose(0, 1).unsqueeze(0)
    ki = k.transpose(0, 1).unsqueeze(0)
    vi = v.transpose(0, 1).unsqueeze(0)
    if prefix == 0:
        o = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, enable_gqa=(H != KVH))
    else:
        g = H // KVH
        if g > 1:
            ki = ki.repeat_interleave(g, dim=1)
            vi = vi.repeat_interleave(g, dim=1)
        o = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=causal_lower_right(L, N))
    return o.squeeze(0).transpose(0, 1).reshape(L, H * D)


class Model:
    def __init__(self, cfg, device, dtype, kv_frac=0.85, num_blocks=None, max_model_len=MAX_PROMPT + MAX_OUTPUT,
                 use_graphs=True, seed=0):
        self.cfg, self.dev, self.dt = cfg, device, dtype
        self.H, self.L = cfg["hidden"], cfg["layers"]
        self.nh, self.kvh, self.hd = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
        self.qd, self.kvd = self.nh * self.hd, self.kvh * self.hd
        torch.manual_seed(seed)
        W = lambda *sh: torch.empty(*sh, device=device, dtype=dtype).normal_(0.0, 0.02)
        ones = lambda n: torch.ones(n, device=device, dtype=dtype)
        self.embed = W(cfg["vocab"], self.H)
        self.layers = [dict(qkv=W(self.H, self.qd + 2 * self.kvd), o=W(self.qd, self.H),
                            gu=W(self.H, 2 * cfg["inter"]), down=W(cfg["inter"], self.H),
                            n1=ones(self.H), n2=ones(self.H)) for _ in range(self.L)]
        self.norm = ones(self.H)
        self.lm = W(self.H, cfg["vocab"])
        self.weight_bytes = sum(t.numel() * t.element_size() for t in
                                [self.embed, self.lm, self.norm] + [x for l in self.layers for x in l.values()])
        self.block_bytes = 2 * self.L * BLOCK * self.kvd * torch.tensor([], dtype=dtype).element_size()
        if num_blocks is None:
            if device == "cuda":
                torch.cuda.synchronize()
                free, total = torch.cuda.mem_get_info()
                num_blocks = int(kv_frac * free) // self.block_bytes
            else:
                num_blocks = 512
        self.num_blocks = num_blocks
        self.kv_bytes = num_blocks * self.block_bytes
        # one tensor per layer holding K and V of each token side by side, so that one index_copy_ writes
        # both (the k|v columns of the qkv projection are adjacent)
        self.kv = torch.zeros(self.L, num_blocks, BLOCK, 2, self.kvh, self.hd, device=device, dtype=dtype)
        self.kc = [self.kv[l][:, :, 0] for l in range(self.L)]  # [NB, BLOCK, KVH, D] views
        self.vc = [self.kv[l][:, :, 1] for l in range(self.L)]
        self.prefill_attn = "sdpa"  # "sdpa": flash per segment; "paged": one Triton launch for all chunks
        self.max_blocks = (max_model_len + BLOCK - 1) // BLOCK
        maxB = BUCKETS[-1]
        i64, i32 = torch.int64, torch.int32
        self.s_tok = torch.zeros(maxB, device=device, dtype=i64)
        self.s_slot = torch.zeros(maxB, device=device, dtype=i64)
        self.s_bt = torch.zeros(maxB, self.max_blocks, device=device, dtype=i32)
        self.s_ctx = torch.zeros(maxB, device=device, dtype=i32)
        pin = device == "cuda"
        self.h_tok = torch.zeros(maxB, dtype=i64, pin_memory=pin)
        self.h_slot = torch.zeros(maxB, dtype=i64, pin_memory=pin)
        self.h_bt = torch.zeros(maxB, self.max_blocks, dtype=i32, pin_memory=pin)
        self.h_ctx = torch.zeros(maxB, dtype=i32, pin_memory=pin)
        self.h_out = torch.zeros(maxB, dtype=i64, pin_memory=pin)
        self.np_tok, self.np_slot = self.h_tok.numpy(), self.h_slot.numpy()
        self.np_bt, self.np_ctx = self.h_bt.numpy(), self.h_ctx.numpy()
        # eager-step staging: pinned host buffers and device buffers sized for the largest step, so that a
        # step allocates no pinned memory and its index tensors need no new device memory
        maxT = FCFS_TOKEN_BUDGET + 2 * maxB
        maxTiles = maxT // 16 + 2 * maxB
        self.h_etok = torch.zeros(maxT, dtype=i64, pin_memory=pin)
        self.h_eslot = torch.zeros(maxT, dtype=i64, pin_memory=pin)
        self.h_erows = torch.zeros(2 * maxB, dtype=i64, pin_memory=pin)
        self.h_tiles = torch.zeros(4 * maxTiles, dtype=i32, pin_memory=pin)
        self.d_etok = torch.zeros(maxT, device=device, dtype=i64)
        self.d_eslot = torch.zeros(maxT, device=device, dtype=i64)
        self.d_erows = torch.zeros(2 * maxB, device=device, dtype=i64)
        self.d_tiles = torch.zeros(4 * maxTiles, device=device, dtype=i32)
        rows = 64 * self.nh  # split scratch: B * S <= 32 for every B (see num_splits)
        self.scratch = (torch.empty(rows * 16, device=device, dtype=torch.float32),
                        torch.empty(rows * 16, device=device, dtype=torch.float32),
                        torch.empty(rows * 16, self.hd, device=device, dtype=torch.float32))
        self.use_graphs = use_graphs and device == "cuda"
        self.graphs = {}

    # -- the layer stack, shared by every path ----------------------------------------------------
    def _layers(self, x, slots, attn_fn):
        T = x.shape[0]
        for l, w in enumerate(self.layers):
            h = F.rms_norm(x, (self.H,), w["n1"], 1e-5)
            qkv = h @ w["qkv"]
            kv = qkv[:, self.qd:].view(T, 2, self.kvh, self.hd)
            self.kv[l].view(-1, 2, self.kvh, self.hd).index_copy_(0, slots, kv)
            a = attn_fn(l, qkv[:, :self.qd].view(T, self.nh, self.hd), kv[:, 0], kv[:, 1])
            x = torch.addmm(x, a, w["o"])
            h = F.rms_norm(x, (self.H,), w["n2"], 1e-5)
            gt, up = (h @ w["gu"]).chunk(2, dim=1)
            x = torch.addmm(x, F.silu(gt) * up, w["down"])
        return x

    def _head(self, x):
        logits = F.rms_norm(x, (self.H,), self.norm, 1e-5) @ self.lm
        return logits.argmax(dim=-1), logits

    # -- decode: static buffers, graph per bucket ------------------------------------------------
    def _decode_body(self, B, S):
        bt, ctx = self.s_bt[:B], self.s_ctx[:B]

        def attn(l, q, k, v):
            return paged_attention(q, self.kc[l], self.vc[l], bt, ctx, self.scratch, S).view(B, self.qd)
        x = self._layers(self.embed[self.s_tok[:B]], self.s_slot[:B], attn)
        return self._head(x)

    def capture_graphs(self):
        if not self.use_graphs:
            return
        pool = torch.cuda.graph_pool_handle()
        self.s_ctx.zero_(); self.s_slot.zero_(); self.s_bt.zero_(); self.s_tok.zero_()
        for B in reversed(BUCKETS):
            S = num_splits(B)
            st = torch.cuda.Stream()
            st.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(st):
                for _ in range(2):
                    self._decode_body(B, S)
            torch.cuda.current_stream().wait_stream(st)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=pool):
                out = self._decode_body(B, S)
            self.graphs[B] = (g, out)
        torch.cuda.synchronize()

    def _fill_bt(self, rows):
        B = len(rows)
        if all(len(r) == self.max_blocks for r in rows):
            np.stack(rows, out=self.np_bt[:B])
        else:
            for i, row in enumerate(rows):
                self.np_bt[i, :len(row)] = row

    def decode_prepare(self, toks, slots, bt_rows, ctxs):
        """Fill pinned host buffers; returns padded batch size."""
        B = len(toks)
        Bp = next(b for b in BUCKETS if b >= B) if self.use_graphs else B
        self.np_tok[:B] = toks
        self.np_slot[:B] = slots
        self.np_ctx[:B] = ctxs
        self._fill_bt(bt_rows)
        if Bp > B:
            self.np_tok[B:Bp] = 0
            self.np_slot[B:Bp] = 0  # block 0 is a sink that no request owns
            self.np_ctx[B:Bp] = 0
        return Bp

    def decode_launch(self, B, Bp, want_logits=False):
        nb = non_blocking = self.dev == "cuda"
        self.s_tok[:Bp].copy_(self.h_tok[:Bp], non_blocking=nb)
        self.s_slot[:Bp].copy_(self.h_slot[:Bp], non_blocking=nb)
        self.s_ctx[:Bp].copy_(self.h_ctx[:Bp], non_blocking=nb)
        self.s_bt[:Bp].copy_(self.h_bt[:Bp], non_blocking=nb)
        if self.use_graphs:
            g, (nxt, logits) = self.graphs[Bp]
            g.replay()
        else:
            nxt, logits = self._decode_body(Bp, num_splits(Bp))
        self.h_out[:B].copy_(nxt[:B], non_blocking=non_blocking)
        return logits[:B] if want_logits else None

    # -- eager step: prefill segments (+ decodes for chunked mixed steps) -------------------------
    def mixed_launch(self, segs, dec, want_logits=False):
        """segs: list of (tokens np, slots np, prefix_len, block row np).  dec: None or
        (toks, slots, bt_rows, ctxs).  Next tokens for every seg (last row) then every decode land in
        h_out after synchronization."""
        dev = self.dev
        toks = [s[0] for s in segs]
        slots = [s[1] for s in segs]
        Bd = 0
        if dec is not None and len(dec[0]):
            Bd = len(dec[0])
            toks.append(np.asarray(dec[0], dtype=np.int64))
            slots.append(np.asarray(dec[1], dtype=np.int64))
        nb = dev == "cuda"
        T = sum(len(x) for x in toks)
        np.concatenate(toks, out=self.h_etok.numpy()[:T])
        np.concatenate(slots, out=self.h_eslot.numpy()[:T])
        tok = self.d_etok[:T]
        slot = self.d_eslot[:T]
        tok.copy_(self.h_etok[:T], non_blocking=nb)
        slot.copy_(self.h_eslot[:T], non_blocking=nb)
        lens = [len(s[0]) for s in segs]
        Tp = sum(lens)
        paged = self.prefill_attn == "paged" and len(segs) > 0
        bts = []
        if paged:
            # block-table rows of the chunks after the decode rows in the static table; tile metadata
            nseg = len(segs)
            offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
            tiles = prefill_tiles([(Bd + i, offs[i], lens[i], segs[i][2]) for i in range(nseg)])
            ntiles = tiles.shape[1]
            self.h_tiles.numpy()[:4 * ntiles] = tiles.reshape(-1)
            tl_dev = self.d_tiles[:4 * ntiles]
            tl_dev.copy_(self.h_tiles[:4 * ntiles], non_blocking=nb)
            for i, sg in enumerate(segs):
                row = sg[3]
                self.np_bt[Bd + i, :len(row)] = row
            self.s_bt[Bd:Bd + nseg].copy_(self.h_bt[Bd:Bd + nseg], non_blocking=(dev == "cuda"))
            pbt = self.s_bt[:Bd + nseg]
        for s in segs:
            if s[2] > 0 and not paged:
                nblk = (s[2] + len(s[0]) + BLOCK - 1) // BLOCK
                bts.append(torch.from_numpy(np.asarray(s[3][:nblk], dtype=np.int64)).to(dev, non_blocking=True))
            else:
                bts.append(None)
        if Bd:
            S = num_splits(Bd)
            self._fill_bt(dec[2])
            self.np_ctx[:Bd] = dec[3]
            self.s_bt[:Bd].copy_(self.h_bt[:Bd], non_blocking=True)
            self.s_ctx[:Bd].copy_(self.h_ctx[:Bd], non_blocking=True)
            dbt, dctx = self.s_bt[:Bd], self.s_ctx[:Bd]

        def attn(l, q, k, v):
            if paged:
                out = torch.empty(q.shape[0], self.nh, self.hd, device=dev, dtype=q.dtype)
                paged_prefill_attention(q, self.kc[l], self.vc[l], pbt, tl_dev, ntiles, out)
                if Bd:
                    paged_attention(q[Tp:], self.kc[l], self.vc[l], dbt, dctx, self.scratch, S, out=out[Tp:])
                return out.view(-1, self.qd)
            outs, off = [], 0
            for i, L in enumerate(lens):
                pre = segs[i][2]
                if pre == 0:
                    outs.append(sdpa_causal(q[off:off + L], k[off:off + L], v[off:off + L], 0))
                else:
                    N = pre + L
                    g = self.kv[l][bts[i]].view(-1, 2, self.kvh, self.hd)[:N]
                    outs.append(sdpa_causal(q[off:off + L], g[:, 0], g[:, 1], pre))
                off += L
            if Bd:
                outs.append(paged_attention(q[Tp:], self.kc[l], self.vc[l], dbt, dctx, self.scratch,
                                            S).view(Bd, self.qd))
            return torch.cat(outs) if len(outs) > 1 else outs[0]

        x = self._layers(self.embed[tok], slot, attn)
        last = np.concatenate([np.cumsum(lens) - 1, Tp + np.arange(Bd)]).astype(np.int64)
        n = len(last)
        self.h_erows.numpy()[:n] = last
        rows = self.d_erows[:n]
        rows.copy_(self.h_erows[:n], non_blocking=nb)  # pinned: a pageable copy would block the host
        nxt, logits = self._head(x[rows])
        self.h_out[:n].copy_(nxt, non_blocking=(dev == "cuda"))
        return logits if want_logits else None

    def sync(self):
        if self.dev == "cuda":
            torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------------
# engine: requests, block pool, schedulers, real-time loop
# ----------------------------------------------------------------------------------------------------
class Req:
    __slots__ = ("rid", "arrival", "prompt_len", "output_len", "prompt_ids", "gen", "blocks", "bt",
                 "num_computed", "prefill_len", "first_time", "last_time", "finish_time", "max_gap",
                 "preemptions", "key")

    def __init__(self, rid, arrival, prompt_len, output_len, vocab, rng, max_blocks):
        self.rid, self.arrival, self.prompt_len, self.output_len = rid, arrival, prompt_len, output_len
        self.prompt_ids = rng.integers(0, vocab, size=prompt_len, dtype=np.int64)
        self.gen = []
        self.blocks = []
        self.bt = np.zeros(max_blocks, dtype=np.int32)  # block-table row, mirrors self.blocks
        self.num_computed = 0
        self.prefill_len = prompt_len
        self.first_time = self.last_time = self.finish_time = None
        self.max_gap = 0.0
        self.preemptions = 0
        self.key = (arrival, rid)

    def all_ids(self):
        if not self.gen:
            return self.prompt_ids
        return np.concatenate([self.prompt_ids, np.asarray(self.gen, dtype=np.int64)])

    @property
    def prefilled(self):
        return self.num_computed >= self.prefill_len

    def slots(self, start, n):
        pos = np.arange(start, start + n)
        bl = np.asarray(self.blocks, dtype=np.int64)
        return bl[pos // BLOCK] * BLOCK + pos % BLOCK


_key = lambda r: r.key


class Engine:
    def __init__(self, model, policy, log=print):
        assert policy in ("fcfs", "chunked")
        self.m, self.policy, self.log = model, policy, log
        # fcfs: whole prompts, flash SDPA per prompt; chunked: one Triton launch over the paged cache
        model.prefill_attn = "paged" if policy == "chunked" else "sdpa"
        self.free = list(range(model.num_blocks - 1, 0, -1))  # block 0 is the padding sink
        self.total_blocks = model.num_blocks - 1
        self.watermark = int(WATERMARK_FRAC * self.total_blocks)
        self.waiting, self.running = [], []
        self.step_preempted = 0

    # -- blocks ---------------------------------------------------------------------------------
    def _alloc(self, n):
        got = self.free[-n:] if n else []
        del self.free[len(self.free) - n:]
        return got

    def _release(self, r):
        self.free.extend(r.blocks)
        r.blocks = []

    def _preempt(self, r):
        """Recompute preemption: drop the KV, requeue at the head (waiting is kept in arrival order)."""
        self._release(r)
        r.num_computed = 0
        r.preemptions += 1
        self.running.remove(r)
        bisect.insort(self.waiting, r, key=_key)
        self.step_preempted += 1

    def _admit(self, r):
        n = r.prompt_len + len(r.gen)  # recompute covers the tokens already generated
        need = (n + BLOCK - 1) // BLOCK
        if len(self.free) - need < self.watermark:
            return False
        r.blocks = self._alloc(need)
        r.bt[:need] = r.blocks
        r.prefill_len, r.num_computed = n, 0
        self.waiting.remove(r)
        bisect.insort(self.running, r, key=_key)
        return True

    def _reserve_decodes(self):
        """All running requests (arrival order); decoding ones get a slot for one more token, preempting
        the latest-arrived running request when no block is free.  Returns (decodes, partial prefills)."""
        queue = list(self.running)
        decodes, partials = [], []
        qi = 0
        while qi < len(queue):
            r = queue[qi]; qi += 1
            if not r.prefilled:
                partials.append(r)
                continue
            need = r.num_computed + 1 > len(r.blocks) * BLOCK
            if need and not self.free:
                ok = True
                while not self.free:
                    if len(queue) > qi:
                        self._preempt(queue.pop())
                    else:
                        self._preempt(r); ok = False
                        break
                if not ok:
                    break
            if need:
                r.blocks.append(self.free.pop())
                r.bt[len(r.blocks) - 1] = r.blocks[-1]
            decodes.append(r)
        return decodes, partials

    # -- policies: return (prefill segments [(req, start, n)], decode reqs) ----------------------
    def schedule_fcfs(self):
        if self.waiting:
            tokens, batch = 0, []
            for r in list(self.waiting):
                n = r.prompt_len + len(r.gen)
                if tokens + n > FCFS_TOKEN_BUDGET or len(self.running) + 1 > MAX_NUM_SEQS:
                    break
                if not self._admit(r):
                    break
                batch.append((r, 0, n))
                tokens += n
            if batch:
                return batch, []
        decodes, _ = self._reserve_decodes()
        return [], decodes

    def schedule_chunked(self):
        decodes, partials = self._reserve_decodes()
        budget = CHUNK_BUDGET - len(decodes)
        segs = []
        for r in partials:
            if budget <= 0:
                break
            c = min(r.prefill_len - r.num_computed, budget)
            segs.append((r, r.num_computed, c))
            budget -= c
        if self.step_preempted == 0:
            for r in list(self.waiting):
                if budget <= 0 or len(self.running) + 1 > MAX_NUM_SEQS:
                    break
                if not self._admit(r):
                    break
                c = min(r.prefill_len, budget)
                segs.append((r, 0, c))
                budget -= c
        return segs, decodes

    # -- one step ---------------------------------------------------------------------------------
    def step(self, want_logits=False):
        self.step_preempted = 0
        segs, decs = self.schedule_fcfs() if self.policy == "fcfs" else self.schedule_chunked()
        if not segs and not decs:
            return None
        m = self.m
        dec = None
        if decs:
            pos = [r.num_computed for r in decs]
            toks = [r.gen[-1] for r in decs]
            slots = [r.blocks[p // BLOCK] * BLOCK + p % BLOCK for r, p in zip(decs, pos)]
            ctxs = [p + 1 for p in pos]
            rows = [r.bt for r in decs]
            dec = (toks, slots, rows, ctxs)
        info = dict(num_prefill_seqs=len(segs), num_prefill_tokens=sum(s[2] for s in segs),
                    prefill_lens="+".join(str(s[2]) for s in segs),
                    prefill_prefix="+".join(str(s[1]) for s in segs),
                    num_decode_seqs=len(decs), sum_decode_ctx=sum(dec[3]) if dec else 0,
                    max_decode_ctx=max(dec[3]) if dec else 0, num_preempted=self.step_preempted)
        if segs:
            kind = "prefill" if not decs else "mixed"
            seg_in = [(r.all_ids()[s:s + n], r.slots(s, n), s, np.asarray(r.blocks)) for r, s, n in segs]
            if m.dev == "cuda":
                e0 = torch.cuda.Event(enable_timing=True); e1 = torch.cuda.Event(enable_timing=True)
                e0.record()
            t_launch = time.perf_counter()
            logits = m.mixed_launch(seg_in, dec, want_logits)
            t_enq = time.perf_counter()
            bucket = 0
        else:
            kind = "decode"
            Bp = m.decode_prepare(dec[0], dec[1], dec[2], dec[3])
            if m.dev == "cuda":
                e0 = torch.cuda.Event(enable_timing=True); e1 = torch.cuda.Event(enable_timing=True)
                e0.record()
            t_launch = time.perf_counter()
            logits = m.decode_launch(len(decs), Bp, want_logits)
            t_enq = time.perf_counter()
            bucket = Bp
        if m.dev == "cuda":
            e1.record()
        m.sync()
        t_done = time.perf_counter()
        out = m.h_out.numpy()
        info.update(kind=kind, decode_bucket=bucket, host_enqueue_ms=round((t_enq - t_launch) * 1e3, 4),
                    gpu_ms=e0.elapsed_time(e1) if m.dev == "cuda" else float("nan"))
        emitted = []
        for i, (r, s, n) in enumerate(segs):
            r.num_computed = s + n
            if r.prefilled:
                emitted.append((r, int(out[i])))
        for j, r in enumerate(decs):
            r.num_computed += 1
            emitted.append((r, int(out[len(segs) + j])))
        return info, emitted, t_launch, t_done, logits

    def _emit(self, r, tok, t):
        r.gen.append(tok)
        if r.first_time is None:
            r.first_time = t
        else:
            r.max_gap = max(r.max_gap, t - r.last_time)
        r.last_time = t
        if len(r.gen) >= r.output_len:
            r.finish_time = t
            self._release(r)
            self.running.remove(r)
            return True
        return False

    # -- real-time replay -------------------------------------------------------------------------
    def replay(self, workload, time_limit, seed=0):
        rng = np.random.default_rng(seed)
        vocab = self.m.cfg["vocab"]
        reqs = [Req(rid, a, p, o, vocab, rng, self.m.max_blocks) for rid, a, p, o in workload]
        steps = []
        nxt, N, done = 0, len(reqs), 0
        t0 = time.perf_counter()
        while done < N:
            now = time.perf_counter() - t0
            if now > time_limit:
                self.log(f"time limit {time_limit}s reached with {N - done} requests unfinished")
                break
            while nxt < N and reqs[nxt].arrival <= now:
                self.waiting.append(reqs[nxt])  # arrivals come in arrival order
                nxt += 1
            if not self.waiting and not self.running:
                if nxt < N:
                    dt = reqs[nxt].arrival - now
                    if dt > 0.0015:
                        time.sleep(min(dt - 0.001, 0.002))
                continue
            res = self.step()
            if res is None:
                time.sleep(0.0005)
                continue
            info, emitted, t_launch, t_done, _ = res
            t_end = t_done - t0
            for r, tok in emitted:
                done += self._emit(r, tok, t_end)
            info.update(step=len(steps), start_s=round(now, 6), end_s=round(t_end, 6),
                        wall_ms=round((t_done - t0 - now) * 1e3, 4), cpu_prep_ms=round((t_launch - t0 - now) * 1e3, 4),
                        num_running=len(self.running), num_waiting=len(self.waiting),
                        free_blocks=len(self.free))
            info["gpu_ms"] = round(info["gpu_ms"], 4)
            steps.append(info)
        return reqs, steps, t0


STEP_FIELDS = ["step", "kind", "start_s", "end_s", "wall_ms", "gpu_ms", "cpu_prep_ms", "host_enqueue_ms",
               "num_prefill_seqs",
               "num_prefill_tokens", "prefill_lens", "prefill_prefix", "num_decode_seqs", "decode_bucket",
               "sum_decode_ctx", "max_decode_ctx", "num_preempted", "num_running", "num_waiting",
               "free_blocks"]
REQ_FIELDS = ["request_id", "arrival_s", "prompt_tokens", "output_tokens", "first_token_s", "finish_s",
              "ttft_s", "tpot_s", "e2e_s", "num_tokens", "max_token_gap_s", "preemptions", "finished"]


def write_results(outdir, reqs, steps):
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "steps.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=STEP_FIELDS)
        w.writeheader()
        w.writerows(steps)
    f6 = lambda x: "" if x is None else f"{x:.6f}"
    with open(os.path.join(outdir, "requests.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(REQ_FIELDS)
        for r in sorted(reqs, key=lambda r: r.rid):
            n = len(r.gen)
            fin = r.finish_time is not None
            tpot = (r.finish_time - r.first_time) / (n - 1) if fin and n > 1 else None
            w.writerow([r.rid, f6(r.arrival), r.prompt_len, r.output_len, f6(r.first_time), f6(r.finish_time),
                        f6(r.first_time - r.arrival if r.first_time is not None else None), f6(tpot),
                        f6(r.finish_time - r.arrival if fin else None), n, f6(r.max_gap), r.preemptions,
                        int(fin)])


# ----------------------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------------------
def kernel_check(dev, dtype, log, KVH=8, G=4, D=128, NB=2048, cases=None, prefill_cases=None):
    torch.manual_seed(1)
    H = KVH * G
    kv = torch.randn(NB, BLOCK, 2, KVH, D, device=dev, dtype=dtype)  # the model's fused layout
    kc, vc = kv[:, :, 0], kv[:, :, 1]
    worst = 0.0
    for ctxs in cases or ([1, 17, 100, 1000, 3000], [4096], [5, 64, 65, 129, 513, 2048, 16, 31]):
        B = len(ctxs)
        maxb = max((c + BLOCK - 1) // BLOCK for c in ctxs)
        perm = torch.randperm(NB - 1, device=dev)[:B * maxb].view(B, maxb) + 1
        bt = perm.to(torch.int32).contiguous()
        ctx = torch.tensor(ctxs, device=dev, dtype=torch.int32)
        qkv = torch.randn(B, H * D + 2 * KVH * D, device=dev, dtype=dtype)
        q = qkv[:, :H * D].view(B, H, D)  # strided like the model's
        refs = []
        for b, c in enumerate(ctxs):
            nb = (c + BLOCK - 1) // BLOCK
            k = kc[bt[b, :nb].long()].reshape(-1, KVH, D)[:c].transpose(0, 1)
            v = vc[bt[b, :nb].long()].reshape(-1, KVH, D)[:c].transpose(0, 1)
            qq = q[b].view(KVH, G, D).float()
            refs.append(F.scaled_dot_product_attention(qq, k.float(), v.float()).reshape(H, D))
        ref = torch.stack(refs)
        rows = 64 * H
        scratch = (torch.empty(rows * 16, device=dev), torch.empty(rows * 16, device=dev),
                   torch.empty(rows * 16, D, device=dev))
        for S in sorted({1, 4, num_splits(B)}):
            if B * S > 64:
                continue
            out = paged_attention(q, kc, vc, bt, ctx, scratch, S).float()
            err = ((out - ref).norm() / ref.norm()).item()
            worst = max(worst, err)
            log(f"kernel_check decode ctxs={ctxs} splits={S}: rel_err={err:.2e} {'OK' if err < 2e-2 else 'FAIL'}")
    # chunk (prefill) kernel: several chunks with cached prefixes in one launch, vs explicit-mask reference
    for chunks in (prefill_cases or [[(0, 37), (100, 64), (1000, 512), (5, 1), (2047, 16)], [(0, 700)]]):
        T = sum(L for _, L in chunks)
        qkv = torch.randn(T, H * D + 2 * KVH * D, device=dev, dtype=dtype)
        q = qkv[:, :H * D].view(T, H, D)
        maxb = max((P + L + BLOCK - 1) // BLOCK for P, L in chunks)
        bt = (torch.randperm(NB - 1, device=dev)[:len(chunks) * maxb].view(len(chunks), maxb) + 1).to(torch.int32)
        refs, segs, off = [], [], 0
        for i, (P, L) in enumerate(chunks):
            N = P + L
            nb = (N + BLOCK - 1) // BLOCK
            k = kc[bt[i, :nb].long()].reshape(-1, KVH, D)[:N].float().repeat_interleave(G, 1)  # [N, H, D]
            v = vc[bt[i, :nb].long()].reshape(-1, KVH, D)[:N].float().repeat_interleave(G, 1)
            sc = torch.einsum("lhd,nhd->hln", q[off:off + L].float(), k) / math.sqrt(D)
            mask = torch.arange(N, device=dev)[None, :] <= (P + torch.arange(L, device=dev))[:, None]
            sc = sc.masked_fill(~mask[None], float("-inf"))
            refs.append(torch.einsum("hln,nhd->lhd", sc.softmax(-1), v))
            segs.append((i, off, L, P))
            off += L
        ref = torch.cat(refs)
        tiles = torch.from_numpy(prefill_tiles(segs)).to(dev)
        out = torch.empty(T, H, D, device=dev, dtype=dtype)
        paged_prefill_attention(q, kc, vc, bt, tiles, tiles.shape[1], out)
        err = ((out.float() - ref).norm() / ref.norm()).item()
        worst = max(worst, err)
        log(f"kernel_check chunk (prefix,len)={chunks}: rel_err={err:.2e} {'OK' if err < 2e-2 else 'FAIL'}")
    return worst


def consistency_check(model, log):
    """Same prompt three ways: whole prefill; prefill n-1 then (graph) decode; chunked prefill."""
    rng = np.random.default_rng(5)
    n = 300
    ids = rng.integers(0, model.cfg["vocab"], size=n, dtype=np.int64)
    blocks = np.arange(1, 1 + (n + BLOCK) // BLOCK + 1, dtype=np.int64)
    sl = lambda s, k: blocks[np.arange(s, s + k) // BLOCK] * BLOCK + np.arange(s, s + k) % BLOCK
    ref = model.mixed_launch([(ids, sl(0, n), 0, blocks)], None, True)[-1].float()
    model.sync()
    model.mixed_launch([(ids[:n - 1], sl(0, n - 1), 0, blocks)], None)
    model.sync()
    Bp = model.decode_prepare([ids[n - 1]], [int(sl(n - 1, 1)[0])], [blocks], [n])
    dec = model.decode_launch(1, Bp, True)[-1].float()
    model.sync()
    e1 = ((dec - ref).norm() / ref.norm()).item()
    msg = (f"consistency_check: logits rel_err decode-vs-prefill={e1:.2e} "
           f"(argmax equal {dec.argmax().item() == ref.argmax().item()})")
    was = model.prefill_attn
    for mode in ("sdpa", "paged"):
        model.prefill_attn = mode
        s = 0
        for c in (128, 100, 72):
            out = model.mixed_launch([(ids[s:s + c], sl(s, c), s, blocks)], None, True)
            s += c
        model.sync()
        chk = out[-1].float()
        e2 = ((chk - ref).norm() / ref.norm()).item()
        msg += (f", chunked[{mode}]-vs-prefill={e2:.2e} (argmax equal {chk.argmax().item() == ref.argmax().item()})")
    model.prefill_attn = was
    log(msg)
    return e1


def latency_check(model, log, ref_csv=None):
    refs = {}
    if ref_csv and os.path.exists(ref_csv):
        with open(ref_csv) as f:
            for r in csv.DictReader(f):
                if r["model"] == "llama3-8b":
                    refs[(r["kind"], r["prefill_lens"], int(r["prior_ctx"]), int(r["decode_batch"]),
                          int(r["decode_ctx"]))] = float(r["ms"])
    rows = []
    NB = model.num_blocks - 1

    def fake_rows(B, ctx, base=0):
        nb = (ctx + BLOCK) // BLOCK
        return [((np.arange(model.max_blocks) + base + i * nb) % NB + 1).astype(np.int32) for i in range(B)]

    def timeit(fn, n=10):
        for _ in range(2):
            fn()
        model.sync()
        ts = []
        for _ in range(n):
            a = torch.cuda.Event(enable_timing=True); b = torch.cuda.Event(enable_timing=True)
            a.record(); fn(); b.record(); b.synchronize()
            ts.append(a.elapsed_time(b))
        return sorted(ts)[len(ts) // 2]

    for B, ctx in [(1, 128), (1, 2048), (8, 512), (64, 512), (64, 2048), (256, 512)]:
        rws = fake_rows(B, ctx)
        slots = [int(r[ctx // BLOCK]) * BLOCK + ctx % BLOCK for r in rws]
        Bp = model.decode_prepare([1] * B, slots, rws, [ctx] * B)
        ms = timeit(lambda: model.decode_launch(B, Bp))
        rows.append(("decode", "", 0, B, ctx, ms, refs.get(("decode", "", 0, B, ctx))))
    for lens, prior, B, dctx in [([512], 0, 0, 0), ([2048], 0, 0, 0), ([1024] * 4, 0, 0, 0),
                                 ([512], 0, 64, 1024), ([512], 2048, 64, 1024)]:
        segs, base = [], 0
        for L in lens:
            nb = (prior + L + BLOCK - 1) // BLOCK
            bl = (np.arange(nb) + base) % NB + 1
            base += nb
            pos = np.arange(prior, prior + L)
            segs.append((np.ones(L, dtype=np.int64), bl[pos // BLOCK] * BLOCK + pos % BLOCK, prior, bl))
        dec = None
        if B:
            rws = fake_rows(B, dctx, base)
            dec = ([1] * B, [int(r[dctx // BLOCK]) * BLOCK + dctx % BLOCK for r in rws], rws, [dctx] * B)
        kind = "mixed" if B else ("prefill" if len(lens) == 1 else "prefill_batch")
        key = (kind, "+".join(map(str, lens)), prior, B, dctx)
        # fcfs prefills use flash SDPA per prompt; chunked steps use the paged chunk kernel
        for mode in (("sdpa", "paged") if kind == "mixed" else ("sdpa",)):
            model.prefill_attn = mode
            ms = timeit(lambda: model.mixed_launch(segs, dec))
            rows.append((kind if mode == "sdpa" else kind + "[paged]",) + key[1:] + (ms, refs.get(key)))
        model.prefill_attn = "sdpa"
    for r in rows:
        ref = f"{r[6]:.2f}" if r[6] else "n/a"
        log(f"latency_check {r[0]:<13} prefill={r[1] or '-':<20} prior={r[2]:<5} decode_batch={r[3]:<4} "
            f"decode_ctx={r[4]:<5} engine_ms={r[5]:7.2f} reference_ms={ref}")
    return rows


def diagnostics(model, log):
    """Where eager step time goes: SDPA backend first-call cost, host enqueue vs GPU time, kernel profile."""
    log("diag: sdp priority order", torch._C._get_sdp_priority_order(), "cudnn", torch.backends.cudnn.version(),
        "cudnn_sdp_enabled", torch.backends.cuda.cudnn_sdp_enabled())
    NB = model.num_blocks - 1

    def seg(L, prior=0, base=0):
        nb = (prior + L + BLOCK - 1) // BLOCK
        bl = ((np.arange(nb) + base) % NB + 1).astype(np.int64)
        pos = np.arange(prior, prior + L)
        return (np.ones(L, dtype=np.int64), bl[pos // BLOCK] * BLOCK + pos % BLOCK, prior, bl)

    def ev_time(fn):
        a = torch.cuda.Event(enable_timing=True); b = torch.cuda.Event(enable_timing=True)
        model.sync()
        a.record(); t = time.perf_counter(); fn(); th = time.perf_counter() - t; b.record(); b.synchronize()
        return a.elapsed_time(b), th * 1e3

    was = torch.backends.cuda.cudnn_sdp_enabled()
    for cud, Ls in ((True, (777, 1333, 2901)), (False, (779, 1335, 2903))):
        torch.backends.cuda.enable_cudnn_sdp(cud)
        for L in Ls:
            sg = [seg(L)]
            t1 = ev_time(lambda: model.mixed_launch(sg, None))
            t2 = ev_time(lambda: model.mixed_launch(sg, None))
            log(f"diag: cudnn_sdp={cud} fresh prefill L={L}: first call gpu {t1[0]:.1f} ms (host {t1[1]:.1f}), "
                f"second {t2[0]:.1f} ms (host {t2[1]:.1f})")
    torch.backends.cuda.enable_cudnn_sdp(was)
    B, dctx = 64, 1024
    nb = (dctx + BLOCK) // BLOCK
    rws = [((np.arange(model.max_blocks) + 4000 + i * nb) % NB + 1).astype(np.int32) for i in range(B)]
    dec = ([1] * B, [int(r[dctx // BLOCK]) * BLOCK + dctx % BLOCK for r in rws], rws, [dctx] * B)
    cases = {"prefill512": ([seg(512)], None), "mixed512+64dec": ([seg(512)], dec),
             "mixed512(prefix2048)+64dec": ([seg(512, 2048)], dec), "decode64_eager": ([], dec),
             "prefill64": ([seg(64)], None)}
    for name, (sg, dc) in cases.items():
        for mode in ("sdpa", "paged"):
            model.prefill_attn = mode
            for _ in range(2):
                model.mixed_launch(sg, dc)
            res = [ev_time(lambda: model.mixed_launch(sg, dc)) for _ in range(5)]
            log(f"diag: {name} [{mode}]: gpu {np.median([r[0] for r in res]):.2f} ms, "
                f"host enqueue {np.median([r[1] for r in res]):.2f} ms")
    model.prefill_attn = "sdpa"
    try:
        from torch.profiler import profile, ProfilerActivity
        sg, dc = cases["mixed512(prefix2048)+64dec"]
        model.prefill_attn = "paged"
        model.sync()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            model.mixed_launch(sg, dc)
            model.sync()
        ka = prof.key_averages()
        for key in ("self_device_time_total", "self_cuda_time_total"):
            try:
                log("diag: profile by device time\n" + ka.table(sort_by=key, row_limit=14, max_name_column_width=60))
                break
            except Exception as e:
                log("diag: sort key", key, "failed", repr(e)[:100])
        log("diag: profile by cpu time\n" + ka.table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=60))
    except Exception as e:
        log("diag: profiler failed", repr(e)[:300])
    model.prefill_attn = "sdpa"
    q = torch.randn(64, model.nh, model.hd, device="cuda", dtype=model.dt)
    bt = model.s_bt[:64]; ctx = torch.full((64,), 16, device="cuda", dtype=torch.int32)
    model.sync()
    t = time.perf_counter()
    for _ in range(200):
        paged_attention(q, model.kc[0], model.vc[0], bt, ctx, model.scratch, 1)
    th = (time.perf_counter() - t) / 200 * 1e6
    model.sync()
    x = torch.zeros(16, device="cuda")
    t = time.perf_counter()
    for _ in range(200):
        x.add_(1)
    tt = (time.perf_counter() - t) / 200 * 1e6
    model.sync()
    log(f"diag: host cost per eager triton paged_attention launch {th:.1f} us, per torch add_ {tt:.1f} us")


# ----------------------------------------------------------------------------------------------------
# summaries (numpy only)
# ----------------------------------------------------------------------------------------------------
def summarize(run_dir):
    def load(p):
        with open(p) as f:
            return list(csv.DictReader(f))
    reqs, steps = load(os.path.join(run_dir, "requests.csv")), load(os.path.join(run_dir, "steps.csv"))
    fin = [r for r in reqs if r["finished"] == "1"]
    arr = lambda k, rs: np.array([float(r[k]) for r in rs if r[k] != ""])
    ttft, tpot, e2e = arr("ttft_s", fin), arr("tpot_s", fin), arr("e2e_s", fin)
    pct = lambda a: {f"p{q}": round(float(np.percentile(a, q)) * 1e3, 2) for q in (50, 90, 99)} if len(a) else {}
    first_arr = min(float(r["arrival_s"]) for r in reqs)
    last_fin = max(float(r["finish_s"]) for r in fin) if fin else float("nan")
    toks = sum(int(r["num_tokens"]) for r in fin)
    span = last_fin - first_arr
    by_kind = {}
    for k in ("prefill", "decode", "mixed"):
        s = [x for x in steps if x["kind"] == k]
        if s:
            by_kind[k] = dict(n=len(s), mean_wall_ms=round(float(np.mean([float(x["wall_ms"]) for x in s])), 3),
                              mean_gpu_ms=round(float(np.mean([float(x["gpu_ms"]) for x in s])), 3))
    return dict(requests=len(reqs), finished=len(fin), ttft_ms=pct(ttft), tpot_ms=pct(tpot),
                e2e_mean_s=round(float(e2e.mean()), 3) if len(e2e) else None,
                duration_s=round(span, 2), req_throughput_per_s=round(len(fin) / span, 3),
                output_tok_throughput_per_s=round(toks / span, 1),
                preemptions=sum(int(r["preemptions"]) for r in reqs),
                max_token_gap_ms=round(float(arr("max_token_gap_s", fin).max()) * 1e3, 2) if fin else None,
                steps=len(steps), steps_by_kind=by_kind)


# ----------------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("workload")
    w.add_argument("--trace", default="traces/azure2023/AzureLLMInferenceTrace_conv.csv")
    w.add_argument("--out", default="workloads")
    w.add_argument("-n", type=int, default=500)
    w.add_argument("--rates", default="A=6,B=12")
    w.add_argument("--seed", type=int, default=2023)
    for name in ("check", "serve"):
        s = sub.add_parser(name)
        s.add_argument("--out", default=os.environ.get("OUT", "/tmp/mini_engine"))
        s.add_argument("--tiny", action="store_true", help="tiny model (CPU / interpreter testing)")
        s.add_argument("--device", default="cuda")
        s.add_argument("--num-blocks", type=int, default=None)
        s.add_argument("--ref", default="data/measurements/h100/iterations.csv")
        s.add_argument("--skip-latency", action="store_true")
        s.add_argument("--diag", action="store_true", help="eager-step diagnostics after the checks")
        s.add_argument("--sdpa", default="flash", choices=["flash", "default"],
                       help="flash: disable cuDNN SDPA (it builds a plan per new shape, ~60 ms each)")
        if name == "serve":
            s.add_argument("--run", action="append", default=[], help="NAME:POLICY:WORKLOAD.csv")
            s.add_argument("--time-limit", type=float, default=170.0)
            s.add_argument("--deadline", type=float, default=570.0,
                           help="seconds from start by which every run must have ended")
            s.add_argument("--max-requests", type=int, default=None)
            s.add_argument("--time-scale", type=float, default=1.0, help="divide arrival times (testing)")
            s.add_argument("--tar", default=None, help="tar the out folder here after each run")
            s.add_argument("--warmup", type=int, default=24, help="requests of an untimed warm-up replay")
    sm = sub.add_parser("summary")
    sm.add_argument("dirs", nargs="+")
    a = ap.parse_args()

    if a.cmd == "workload":
        rates = {k: float(v) for k, v in (x.split("=") for x in a.rates.split(","))}
        make_workloads(a.trace, a.out, a.n, rates, a.seed)
        return
    if a.cmd == "summary":
        for d in a.dirs:
            print(d, json.dumps(summarize(d), indent=1))
        return

    T0 = time.time()
    _import_gpu()
    _define_kernels()
    os.makedirs(a.out, exist_ok=True)
    logf = open(os.path.join(a.out, "log.txt"), "a")

    def log(*x):
        s = " ".join(str(y) for y in x)
        print(s, flush=True)
        logf.write(s + "\n"); logf.flush()

    dev = a.device
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    if a.sdpa == "flash":
        torch.backends.cuda.enable_cudnn_sdp(False)
    info = dict(torch=torch.__version__, triton=triton.__version__, python=sys.version.split()[0],
                sdpa_cudnn_enabled=torch.backends.cuda.cudnn_sdp_enabled())
    if dev == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, sms=p.multi_processor_count, mem_gib=round(p.total_memory / 2**30, 2),
                    cuda=torch.version.cuda)
    log("device", json.dumps(info))
    if dev == "cuda":
        kernel_check(dev, dtype, log)
    cfg = TINY if a.tiny else LLAMA3_8B
    if dev == "cuda":
        torch.cuda.empty_cache()
    t = time.time()
    model = Model(cfg, dev, dtype, num_blocks=a.num_blocks)
    log(f"model: weights {model.weight_bytes / 2**30:.2f} GiB, KV pool {model.num_blocks} blocks of {BLOCK} "
        f"tokens ({model.kv_bytes / 2**30:.2f} GiB, {model.num_blocks * BLOCK} tokens), "
        f"init {time.time() - t:.1f}s")
    t = time.time()
    model.capture_graphs()
    log(f"graphs captured for buckets {sorted(model.graphs)} in {time.time() - t:.1f}s")
    info.update(weights_gib=round(model.weight_bytes / 2**30, 3), kv_blocks=model.num_blocks,
                kv_gib=round(model.kv_bytes / 2**30, 3))
    if dev == "cuda":
        info["mem_after_setup_gib"] = round(torch.cuda.memory_allocated() / 2**30, 2)
    consistency_check(model, log)
    if dev == "cuda" and not a.skip_latency:
        try:
            rows = latency_check(model, log, a.ref)
            info["latency_check"] = [dict(kind=r[0], prefill=r[1], prior=r[2], decode_batch=r[3],
                                          decode_ctx=r[4], engine_ms=round(r[5], 3), reference_ms=r[6])
                                     for r in rows]
        except Exception as e:
            import traceback
            log(f"latency_check FAILED: {e!r}\n{traceback.format_exc()}")
        model.prefill_attn = "sdpa"
    if dev == "cuda" and a.diag:
        try:
            diagnostics(model, log)
        except Exception as e:
            import traceback
            log(f"diagnostics FAILED: {e!r}\n{traceback.format_exc()}")
        model.prefill_attn = "sdpa"
    with open(os.path.join(a.out, "device.json"), "w") as f:
        json.dump(info, f, indent=1)
    if a.tar:
        os.system(f"tar czf {a.tar} -C {a.out} .")
    if a.cmd == "check":
        return
    for spec in a.run:
        name, policy, wl = spec.split(":")
        elapsed = time.time() - T0
        if elapsed > a.deadline - 40:
            log(f"skipping run {name}: deadline")
            continue
        workload = read_workload(wl)
        if a.max_requests:
            workload = workload[:a.max_requests]
        if a.time_scale != 1.0:
            workload = [(i, t / a.time_scale, p, o) for i, t, p, o in workload]
        limit = min(a.time_limit, a.deadline - elapsed - 20)  # leave time to write results
        log(f"run {name}: policy={policy} workload={os.path.basename(wl)} n={len(workload)} limit={limit:.0f}s")
        try:
            if a.warmup:
                # untimed: same policy, first requests squeezed to t=0, outputs cut to 16 tokens
                t = time.time()
                wu = [(i, 0.0, p, min(o, 16)) for i, _, p, o in workload[:a.warmup]]
                Engine(model, policy, log).replay(wu, 60)
                log(f"warm-up replay of {len(wu)} requests took {time.time() - t:.1f}s")
            eng = Engine(model, policy, log)
            gc.collect()
            if dev == "cuda":
                ms0 = torch.cuda.memory_stats()
                try:
                    hs0 = torch.cuda.host_memory_stats()
                except Exception:
                    hs0 = {}
            gc.disable()
            t = time.time()
            try:
                reqs, steps, _ = eng.replay(workload, limit)
            finally:
                gc.enable()
            d = os.path.join(a.out, name)
            write_results(d, reqs, steps)
            if a.max_requests is None and a.time_scale == 1.0:
                shutil.copy(wl, os.path.join(d, "workload.csv"))
            else:
                with open(os.path.join(d, "workload.csv"), "w", newline="") as f:
                    ww = csv.writer(f)
                    ww.writerow(["request_id", "arrival_s", "prompt_tokens", "output_tokens"])
                    for i, tt, p, o in sorted(workload):
                        ww.writerow([i, f"{tt:.6f}", p, o])
            summ = summarize(d)
            if dev == "cuda":
                ms1 = torch.cuda.memory_stats()
                summ["allocator_during_run"] = {k: ms1.get(k, 0) - ms0.get(k, 0) for k in
                                                ("num_device_alloc", "num_device_free", "num_alloc_retries")}
                try:
                    hs1 = torch.cuda.host_memory_stats()
                    summ["allocator_during_run"]["num_host_alloc"] = hs1.get("num_host_alloc", 0) - hs0.get("num_host_alloc", 0)
                except Exception:
                    pass
                info.setdefault("runs", {})[name] = summ
                with open(os.path.join(a.out, "device.json"), "w") as f:
                    json.dump(info, f, indent=1)
            log(f"run {name} done in {time.time() - t:.1f}s:", json.dumps(summ))
            assert len(eng.free) + sum(len(r.blocks) for r in eng.running) == eng.total_blocks, "block leak"
        except Exception as e:
            import traceback
            log(f"run {name} FAILED: {e!r}\n{traceback.format_exc()}")
        if a.tar:
            os.system(f"tar czf {a.tar} -C {a.out} .")
    log(f"all done in {time.time() - T0:.1f}s")


if __name__ == "__main__":
    main()
