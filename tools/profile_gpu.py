"""Measure a measurement CSV on a real GPU, to calibrate servesim's cost model for that GPU.

    python tools/profile_gpu.py --models llama3-8b llama2-7b --out results/       # one GPU
    python tools/profile_gpu.py --models llama3-70b --tp 4 --out results/         # a TP=4 shard
    servesim costmodel calibrate --measurements results/iterations.csv --gemm results/gemm.csv \
        --hardware <catalog name> --out my-gpu.yaml

Needs PyTorch >= 2.5 with CUDA and PyYAML; not servesim itself (it reads the model shapes from
src/servesim/catalog/models.yaml), so it runs on a bare GPU box.

What one row is: one forward pass (an engine iteration) of a catalog model's per-GPU shard at tensor
parallel degree `--tp` (heads, KV heads, MLP width and vocabulary divided by tp; the all-reduce is not
run, so rows of tp > 1 carry includes_comm=0). Random bf16 weights; every linear layer a cuBLAS GEMM
over all tokens of the batch; RMSNorm, SwiGLU and residual adds as separate PyTorch kernels; RoPE left
out (elementwise, small); attention through `scaled_dot_product_attention`: a fresh prompt as causal
flash attention, a chunk after cached context with an explicit lower-right causal mask over K/V repeated
per query group (`--prefix-attention masked`, the method of the shared H100 data the shipped profile was
fitted on; `gqa` keeps K/V grouped), decodes as grouped queries against their KV; logits for the last
token of each sequence only. Mixture-of-experts layers route tokens with a fixed random top-k (uniform
router); `--moe fused` (default) runs the experts as serving engines do, with a handful of kernels
per layer (gather, two grouped GEMMs over all experts, activation, weighted scatter-add); `--moe looped`
as a Python loop over touched experts (one GEMM pair and a gather/scatter per expert). The K/V
buffers are shared by all layers (timing only: every layer still reads them from memory). Each
iteration is captured in a CUDA graph and replayed; the row's `ms` is the median replay time.

Writes into --out: iterations.csv (docs/interface.md "Measurement CSV"), gemm.csv (gpu, op, M, K, N, ms:
the first model's linear layers alone) and device.json (measured copy bandwidth and GEMM rate). Rows
are appended as they are measured, so a run stopped by --budget-s or a timeout keeps what it measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

DTYPE = torch.bfloat16
CATALOG = Path(__file__).resolve().parents[1] / "src" / "servesim" / "catalog" / "models.yaml"
FIELDS = [
    "gpu",
    "model",
    "tp",
    "kind",
    "prefill_lens",
    "prior_ctx",
    "decode_batch",
    "decode_ctx",
    "ms",
    "includes_comm",
    "moe_kernels",
]
MOE_IMPLS = ("fused", "looped")
MAX_DECODE_TOKENS = 1 << 19
"""Largest decode batch x context measured (the shared H100 grid's bound)."""
GRIDS = {
    "full": dict(
        prefill=[16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
        batches=[(4, 256), (4, 1024), (16, 512), (8, 2048)],
        decode_batch=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
        decode_ctx=[128, 512, 2048, 8192],
        mixed=[(c, p, b) for c in (256, 512, 1024, 2048) for p in (0, 2048) for b in (16, 64)],
    ),
    "quick": dict(
        prefill=[64, 512, 2048, 8192],
        batches=[(4, 1024)],
        decode_batch=[1, 16, 128],
        decode_ctx=[512, 4096],
        mixed=[(512, 0, 32), (512, 2048, 32)],
    ),
}


# -- timing ---------------------------------------------------------------------------------------
def capture(fn):
    """fn captured in a CUDA graph after two warm-up calls (the capture runs on a side stream, as
    CUDA graphs require); returns the graph's replay."""
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(g):
        fn()
    torch.cuda.synchronize()
    return g.replay


def median_ms(fn, graph: bool = True, target_ms: float = 600.0) -> float:
    """Median time of fn, replayed from a CUDA graph (or eagerly), after warm-up."""
    if graph:
        run = capture(fn)
    else:
        for _ in range(2):
            fn()
        torch.cuda.synchronize()
        run = fn
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    reps = None
    while reps is None or len(times) < reps:
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
        if reps is None:
            reps = max(3, min(25, int(target_ms / max(times[0], 1e-3))))
    times.sort()
    return times[len(times) // 2]


def device_ceilings(name: str) -> dict:
    props = torch.cuda.get_device_properties(0)
    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    copy_ms = median_ms(_copy_into(torch.empty_like(src), src), graph=False)
    del src
    gemm_ms = median_ms(_matmul(torch.randn(8192, 8192, device="cuda", dtype=DTYPE), 8192), graph=False)
    return {
        "gpu": name,
        "sms": props.multi_processor_count,
        "mem_gib": props.total_memory / 2**30,
        "torch": torch.__version__,
        "copy_GBps_rw": 2 * 2**30 / copy_ms / 1e6,
        "bf16_gemm_tflops": 2 * 8192**3 / gemm_ms / 1e9,
    }


# -- the model shard -------------------------------------------------------------------------------
def shard_shape(spec: dict, tp: int) -> dict:
    heads, kv = spec["num_heads"], spec["num_kv_heads"]
    if spec.get("kv_lora_rank"):
        sys.exit(f"{spec['name']}: multi-head latent attention is not supported by this harness")
    if heads % tp:
        sys.exit(f"{spec['name']}: tp {tp} does not divide {heads} heads")
    experts = spec.get("num_experts", 0)
    moe_width = spec.get("moe_intermediate_size", 0)
    shared = spec.get("shared_expert_intermediate_size") or moe_width * spec.get("num_shared_experts", 0)
    return dict(
        hidden=spec["hidden_size"],
        heads=heads // tp,
        kv=max(1, kv // tp),
        head_dim=spec.get("head_dim") or spec["hidden_size"] // heads,
        inter=spec["intermediate_size"] // tp,
        vocab=-(-spec["vocab_size"] // tp),
        layers=spec["num_layers"],
        experts=experts,
        top_k=spec.get("num_experts_per_tok", 0),
        moe_width=moe_width // tp,
        shared_width=shared // tp,
        dense_layers=spec.get("num_dense_layers", 0) if experts else spec["num_layers"],
    )


class Shard:
    """Random weights of one GPU's shard; `step(...)` builds a closure running one iteration."""

    def __init__(self, s: dict, prefix_attention: str, seed: int = 0, moe: str = "fused"):
        self.s, self.prefix_attention, self.moe = s, prefix_attention, moe
        torch.manual_seed(seed)
        h, d = s["hidden"], s["head_dim"]

        def w(*shape):
            return torch.randn(*shape, device="cuda", dtype=DTYPE) * 0.02

        self.layers = []
        for i in range(s["layers"]):
            layer = dict(
                qkv=w(h, (s["heads"] + 2 * s["kv"]) * d),
                o=w(s["heads"] * d, h),
                n1=torch.ones(h, device="cuda", dtype=DTYPE),
                n2=torch.ones(h, device="cuda", dtype=DTYPE),
            )
            if i < s["dense_layers"]:
                layer.update(gate_up=w(h, 2 * s["inter"]), down=w(s["inter"], h))
            else:
                layer.update(expert_weights(s["experts"], h, s["moe_width"], w))
                if s["shared_width"]:
                    layer.update(gate_up=w(h, 2 * s["shared_width"]), down=w(s["shared_width"], h))
            self.layers.append(layer)
        self.lm_head = w(h, s["vocab"])

    def routing(self, tokens: int, gen: torch.Generator):
        return route(tokens, self.s["experts"], self.s["top_k"], gen)

    def step(self, prefill: list[int], prior: int, batch: int, ctx: int):
        s = self.s
        h, nh, kv, d = s["hidden"], s["heads"], s["kv"], s["head_dim"]
        group = nh // kv
        tokens = sum(prefill) + batch
        x = torch.randn(tokens, h, device="cuda", dtype=DTYPE)
        k_cache = [torch.randn(1, kv, prior + c, d, device="cuda", dtype=DTYPE) for c in prefill]
        v_cache = [torch.randn_like(k) for k in k_cache]
        if batch:
            k_dec = torch.randn(batch, kv, ctx, d, device="cuda", dtype=DTYPE)
            v_dec = torch.randn_like(k_dec)
        masks = [self._prefix_mask(c, prior) if prior else None for c in prefill]
        ends = [sum(prefill[: i + 1]) - 1 for i in range(len(prefill))] + list(range(sum(prefill), tokens))
        last = torch.tensor(ends, device="cuda")
        routes = None
        if s["experts"]:  # an independent draw per layer, as a trained router's choices vary
            gen = torch.Generator().manual_seed(tokens)
            routes = [self.routing(tokens, gen) for _ in self.layers]

        def attention(q, k, v):
            outs, off = [], 0
            for i, c in enumerate(prefill):
                qi = q[off : off + c].view(c, nh, d).transpose(0, 1).unsqueeze(0)
                k_cache[i][:, :, prior:] = k[off : off + c].view(c, kv, d).transpose(0, 1)
                v_cache[i][:, :, prior:] = v[off : off + c].view(c, kv, d).transpose(0, 1)
                if masks[i] is None:
                    o = F.scaled_dot_product_attention(
                        qi, k_cache[i], v_cache[i], is_causal=True, enable_gqa=group > 1
                    )
                elif self.prefix_attention == "masked" and group > 1:
                    kr = k_cache[i].repeat_interleave(group, 1)
                    vr = v_cache[i].repeat_interleave(group, 1)
                    o = F.scaled_dot_product_attention(qi, kr, vr, attn_mask=masks[i])
                else:
                    o = F.scaled_dot_product_attention(
                        qi, k_cache[i], v_cache[i], attn_mask=masks[i], enable_gqa=group > 1
                    )
                outs.append(o.squeeze(0).transpose(0, 1).reshape(c, nh * d))
                off += c
            if batch:
                qd = q[off:].view(batch, kv, group, d)  # a decode's query heads of one KV head
                k_dec[:, :, -1] = k[off:].view(batch, kv, d)
                v_dec[:, :, -1] = v[off:].view(batch, kv, d)
                outs.append(F.scaled_dot_product_attention(qd, k_dec, v_dec).reshape(batch, nh * d))
            return torch.cat(outs) if len(outs) > 1 else outs[0]

        def experts(hn, layer, index):
            return moe_forward(hn, layer, routes[index], self.moe)

        def run():
            y = x
            for index, layer in enumerate(self.layers):
                hn = F.rms_norm(y, (h,), layer["n1"])
                q, k, v = (hn @ layer["qkv"]).split([nh * d, kv * d, kv * d], dim=1)
                y = y + attention(q, k, v) @ layer["o"]
                hn = F.rms_norm(y, (h,), layer["n2"])
                mlp = (
                    experts(hn, layer, index)
                    if "router" in layer
                    else swiglu(hn, layer["gate_up"], layer["down"])
                )
                y = y + mlp
            return y.index_select(0, last) @ self.lm_head

        return run

    @staticmethod
    def _prefix_mask(chunk: int, prior: int) -> torch.Tensor:
        """Query i of the chunk sees the prefix and chunk tokens up to itself."""
        cols = torch.arange(prior + chunk, device="cuda")
        rows = torch.arange(chunk, device="cuda")[:, None] + prior
        return cols[None, :] <= rows


# -- mixture of experts ----------------------------------------------------------------------------
def swiglu(hn, gate_up, down):
    g, u = (hn @ gate_up).chunk(2, dim=1)
    return (F.silu(g) * u) @ down


class Route:
    """A fixed uniform top-k routing of `tokens` tokens, in the two forms the implementations use."""

    def __init__(self, tokens: int, experts: int, top_k: int, gen: torch.Generator):
        choice = torch.rand(tokens, experts, generator=gen).topk(top_k, dim=1).indices
        self.groups = []  # looped: per touched expert, its token indices
        for e in range(experts):
            rows = (choice == e).any(dim=1).nonzero().flatten()
            if len(rows):
                self.groups.append((e, rows.to("cuda")))
        flat = choice.flatten()
        order = torch.argsort(flat, stable=True)
        # fused: (token, expert) pairs sorted by expert, each expert's rows ending at offs[e]
        self.order = torch.arange(tokens).repeat_interleave(top_k)[order].to("cuda")
        self.offs = torch.bincount(flat, minlength=experts).cumsum(0).to(torch.int32).to("cuda")
        self.weights = torch.full((tokens * top_k, 1), 1.0 / top_k, device="cuda", dtype=DTYPE)
        self.touched = len(self.groups)


def route(tokens: int, experts: int, top_k: int, gen: torch.Generator) -> Route:
    return Route(tokens, experts, top_k, gen)


GROUPED = {"fn": None, "layout": "row", "name": "none"}
"""The grouped GEMM found by `find_grouped_mm` (torch's grouped_mm, in the weight layout it takes)."""


def expert_weights(experts: int, h: int, width: int, w) -> dict:
    gate_up, down = w(experts, h, 2 * width), w(experts, width, h)
    if GROUPED["layout"] == "col":  # same [E, K, N] tensors, column-major storage
        gate_up = gate_up.transpose(1, 2).contiguous().transpose(1, 2)
        down = down.transpose(1, 2).contiguous().transpose(1, 2)
    return dict(router=w(h, experts), e_gate_up=gate_up, e_down=down)


def grouped_mm(x, w, offs):
    """Rows of x in expert order times each expert's [K, N] matrix: one kernel for all experts."""
    if GROUPED["fn"] is None:
        sys.exit("--moe fused needs torch's grouped_mm (PyTorch >= 2.8 on sm90); use --moe looped")
    return GROUPED["fn"](x, w, offs=offs)


def moe_forward(hn, layer, rt: Route, impl: str):
    """Routed (and shared) experts of one layer; the router GEMM runs, its choice is fixed ahead."""
    hn @ layer["router"]
    if impl == "looped":
        out = torch.zeros_like(hn)
        for e, rows in rt.groups:
            xe = hn.index_select(0, rows)
            out.index_add_(0, rows, swiglu(xe, layer["e_gate_up"][e], layer["e_down"][e]))
    else:
        xs = hn.index_select(0, rt.order)
        g, u = grouped_mm(xs, layer["e_gate_up"], rt.offs).chunk(2, dim=1)
        y = grouped_mm(F.silu(g) * u, layer["e_down"], rt.offs) * rt.weights
        out = torch.zeros_like(hn).index_add_(0, rt.order, y)
    if "gate_up" in layer:
        out = out + swiglu(hn, layer["gate_up"], layer["down"])
    return out


def find_grouped_mm() -> str:
    """Pick torch's grouped GEMM and the weight layout it accepts, checked against plain GEMMs
    (empty groups included); 'none' when no candidate works."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 256, generator=gen).to("cuda", DTYPE)
    w = torch.randn(8, 256, 128, generator=gen).to("cuda", DTYPE)
    offs = torch.tensor([0, 8, 8, 24, 24, 24, 32, 40], dtype=torch.int32, device="cuda")
    sizes = torch.diff(offs, prepend=offs.new_zeros(1)).tolist()
    ref = torch.cat([x[a - n : a] @ w[e] for e, (a, n) in enumerate(zip(offs.tolist(), sizes)) if n]).float()
    fns = [f for f in (getattr(F, "grouped_mm", None), getattr(torch, "_grouped_mm", None)) if f]
    for fn in fns:
        for layout in ("row", "col"):
            wl = w if layout == "row" else w.transpose(1, 2).contiguous().transpose(1, 2)
            try:
                out = fn(x, wl, offs=offs)
                torch.cuda.synchronize()
            except Exception as exc:  # noqa: BLE001 - report and try the next candidate
                print(f"{fn.__name__} {layout}: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
                continue
            err = ((out.float() - ref).abs().max() / ref.abs().max()).item()
            if err < 0.02:
                GROUPED.update(fn=fn, layout=layout, name=f"{fn.__module__}.{fn.__name__} ({layout})")
                return GROUPED["name"]
            print(f"{fn.__name__} {layout}: relative error {err:.3g}", flush=True)
    return "none"


# -- the grid ---------------------------------------------------------------------------------------
def points(grid: dict, shape: dict, budget_bytes: float):
    kv_bytes = 2 * shape["kv"] * shape["head_dim"] * 2  # K and V of one token, one layer (shared)
    for c in grid["prefill"]:
        yield "prefill", [c], 0, 0, 0
    for n, c in grid["batches"]:
        yield "prefill_batch", [c] * n, 0, 0, 0
    for b in grid["decode_batch"]:
        for ctx in grid["decode_ctx"]:
            if b * ctx <= MAX_DECODE_TOKENS and b * ctx * kv_bytes <= budget_bytes:
                yield "decode", [], 0, b, ctx
    for c, p, b in grid["mixed"]:
        yield "mixed", [c], p, b, 1024


def gemm_rows(shape: dict, gpu: str):
    h, d = shape["hidden"], shape["head_dim"]
    ops = dict(
        qkv=(h, (shape["heads"] + 2 * shape["kv"]) * d),
        o=(shape["heads"] * d, h),
        gate_up=(h, 2 * shape["inter"]),
        down=(shape["inter"], h),
    )
    for op, (k, n) in ops.items():
        for m in (1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384):
            ms = median_ms(_matmul(torch.randn(m, k, device="cuda", dtype=DTYPE), n))
            yield dict(gpu=gpu, op=op, M=m, K=k, N=n, ms=round(ms, 5))
            torch.cuda.empty_cache()


def _copy_into(dst, src):
    return lambda: dst.copy_(src)


def _matmul(x, n: int):
    """x @ W for a random (x.shape[1] x n) weight W."""
    weight = torch.randn(x.shape[1], n, device="cuda", dtype=DTYPE)
    return lambda: x @ weight


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", required=True, help="catalog model names")
    ap.add_argument("--tp", type=int, default=1, help="measure the per-GPU shard of this TP degree")
    ap.add_argument("--out", required=True)
    ap.add_argument("--grid", choices=sorted(GRIDS), default="full")
    ap.add_argument("--prefix-attention", choices=("masked", "gqa"), default="masked")
    ap.add_argument("--budget-s", type=float, default=math.inf, help="stop measuring after this long")
    ap.add_argument("--no-gemm", action="store_true", help="skip the isolated GEMM table")
    ap.add_argument("--moe", choices=MOE_IMPLS, default="fused",
                    help="how MoE layers run: fused (grouped GEMMs, as engines) or looped (per expert)")
    args = ap.parse_args()
    t0 = time.time()
    catalog = yaml.safe_load(CATALOG.read_text())
    unknown = [m for m in args.models if m not in catalog]
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; catalog: {', '.join(sorted(catalog))}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0)
    info = device_ceilings(gpu)
    info["grouped_mm"] = find_grouped_mm()
    (out / "device.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info), flush=True)
    shapes = {m: shard_shape({"name": m, **catalog[m]}, args.tp) for m in args.models}
    if not args.no_gemm:
        with open(out / "gemm.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["gpu", "op", "M", "K", "N", "ms"])
            writer.writeheader()
            writer.writerows(gemm_rows(shapes[args.models[0]], gpu))
    with open(out / "iterations.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for name in args.models:
            if time.time() - t0 > args.budget_s:
                print(f"budget spent; skipping {name}", flush=True)
                continue
            shard = Shard(shapes[name], args.prefix_attention, moe=args.moe)
            budget_bytes = 0.25 * torch.cuda.mem_get_info()[0]
            done = 0
            for kind, prefill, prior, batch, ctx in points(GRIDS[args.grid], shapes[name], budget_bytes):
                if time.time() - t0 > args.budget_s:
                    break
                try:
                    ms = median_ms(shard.step(prefill, prior, batch, ctx))
                except torch.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    continue
                writer.writerow(
                    dict(
                        gpu=gpu,
                        model=name,
                        tp=args.tp,
                        kind=kind,
                        prefill_lens="+".join(map(str, prefill)),
                        prior_ctx=prior,
                        decode_batch=batch,
                        decode_ctx=ctx,
                        ms=round(ms, 4),
                        includes_comm=int(args.tp == 1),
                        moe_kernels=args.moe if shapes[name]["experts"] else "",
                    )
                )
                f.flush()
                done += 1
                torch.cuda.empty_cache()
            print(f"{name}: {done} rows, {time.time() - t0:.0f} s elapsed", flush=True)
            del shard
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
