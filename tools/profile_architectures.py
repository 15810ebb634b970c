"""Measure forward passes of OPT-13B and Mistral-7B-v0.1 shapes on one GPU: the architecture variants
(plain MLP, learned positions, biases, LayerNorm, tied head; sliding-window attention) that the catalog
prices. Writes data/measurements/h200-papers/ (see its README):

    python tools/profile_architectures.py --out results/ --budget-s 95
    servesim costmodel validate --measurements results/iterations.csv

Method of tools/profile_gpu.py (random bf16 weights, one cuBLAS GEMM per linear layer over all tokens,
CUDA-graph replay, median of the replays), extended with what these two architectures add:
- OPT: LayerNorm with bias, linear layers with bias, a plain (non-gated) ReLU MLP of width 4h, learned
  position embeddings (a gather and add per token), multi-head attention, LM head tied to the
  embedding (one matrix).
- Mistral-7B-v0.1: RMSNorm, SwiGLU, grouped-query attention (32 query / 8 KV heads) over a 4,096-token
  sliding window: a decode attends to the last 4,096 tokens only (its K/V are those tokens, as
  window-aware paged kernels read), a prompt chunk after a longer prefix attends to the last
  window + chunk - 1 keys with a band mask.
Writes iterations.csv (INTERFACE.md "Measurement CSV") into --out.
"""
import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_gpu import FIELDS, device_ceilings, median_ms  # noqa: E402

DT = torch.bfloat16
SHAPES = {
    "opt-13b": dict(h=5120, layers=40, heads=40, kv=40, inter=20480, vocab=50272, gated=False,
                    act="relu", norm="layer", bias=True, learned_pos=2050, window=0),
    "mistral-7b-v0.1": dict(h=4096, layers=32, heads=32, kv=8, inter=14336, vocab=32000, gated=True,
                            act="silu", norm="rms", bias=False, learned_pos=0, window=4096),
}
GRID = {
    "opt-13b": dict(prefill=[128, 512, 1024, 2048], batches=[(4, 512)],
                    decode=[(1, 512), (16, 512), (64, 1024), (128, 2048), (256, 1024)],
                    mixed=[(512, 0, 32, 1024), (512, 1024, 32, 1024)]),
    "mistral-7b-v0.1": dict(prefill=[128, 512, 2048, 4096], batches=[(4, 512)],
                            decode=[(1, 512), (16, 512), (64, 2048), (32, 8192), (128, 16384)],
                            mixed=[(512, 0, 32, 1024), (512, 6144, 32, 8192)]),
}


class Model:
    def __init__(self, s):
        self.s = s
        torch.manual_seed(0)
        h, d = s["h"], s["h"] // s["heads"]
        self.d = d
        def w(*shape):
            return torch.randn(*shape, device="cuda", dtype=DT) * 0.02

        def b(n):
            return torch.zeros(n, device="cuda", dtype=DT) if s["bias"] else None

        width = 2 * s["inter"] if s["gated"] else s["inter"]
        self.layers = [dict(qkv=w(h, (s["heads"] + 2 * s["kv"]) * d), qkv_b=b((s["heads"] + 2 * s["kv"]) * d),
                            o=w(s["heads"] * d, h), o_b=b(h), up=w(h, width), up_b=b(width),
                            down=w(s["inter"], h), down_b=b(h),
                            n1=torch.ones(h, device="cuda", dtype=DT), n1_b=b(h),
                            n2=torch.ones(h, device="cuda", dtype=DT), n2_b=b(h))
                       for _ in range(s["layers"])]
        self.lm_head = w(h, s["vocab"])
        self.pos = w(s["learned_pos"], h) if s["learned_pos"] else None

    def norm(self, x, wt, bias):
        h = self.s["h"]
        return F.layer_norm(x, (h,), wt, bias) if self.s["norm"] == "layer" else F.rms_norm(x, (h,), wt)

    @staticmethod
    def linear(x, wt, bias):
        return torch.addmm(bias, x, wt) if bias is not None else x @ wt

    def step(self, prefill, prior, batch, ctx):
        s, d = self.s, self.d
        nh, kv, W = s["heads"], s["kv"], s["window"]
        group = nh // kv
        tokens = sum(prefill) + batch
        x = torch.randn(tokens, s["h"], device="cuda", dtype=DT)
        pos_ids = torch.randint(0, max(1, s["learned_pos"]), (tokens,), device="cuda")
        # keys a prompt chunk attends: the whole prefix, or the window's band
        keep = [min(prior, W - 1) if W and prior + c > W else prior for c in prefill]
        kc = [torch.randn(1, kv, k + c, d, device="cuda", dtype=DT) for c, k in zip(prefill, keep)]
        vc = [torch.randn_like(t) for t in kc]
        masks = []
        for c, k in zip(prefill, keep):
            if not k and not (W and c > W):
                masks.append(None)
                continue
            cols = torch.arange(k + c, device="cuda")[None, :]
            rows = torch.arange(c, device="cuda")[:, None] + k
            m = cols <= rows
            if W:
                m &= cols > rows - W
            masks.append(m)
        dctx = min(ctx, W) if W else ctx
        if batch:
            kd = torch.randn(batch, kv, dctx, d, device="cuda", dtype=DT)
            vd = torch.randn_like(kd)
        ends = [sum(prefill[: i + 1]) - 1 for i in range(len(prefill))] + list(range(sum(prefill), tokens))
        last = torch.tensor(ends, device="cuda")
        act = F.relu if s["act"] == "relu" else F.silu

        def attention(q, k, v):
            outs, off = [], 0
            for i, c in enumerate(prefill):
                qi = q[off:off + c].view(c, nh, d).transpose(0, 1).unsqueeze(0)
                n0 = keep[i]
                kc[i][:, :, n0:] = k[off:off + c].view(c, kv, d).transpose(0, 1)
                vc[i][:, :, n0:] = v[off:off + c].view(c, kv, d).transpose(0, 1)
                if masks[i] is None:
                    o = F.scaled_dot_product_attention(qi, kc[i], vc[i], is_causal=True, enable_gqa=group > 1)
                else:
                    kr = kc[i].repeat_interleave(group, 1) if group > 1 else kc[i]
                    vr = vc[i].repeat_interleave(group, 1) if group > 1 else vc[i]
                    o = F.scaled_dot_product_attention(qi, kr, vr, attn_mask=masks[i])
                outs.append(o.squeeze(0).transpose(0, 1).reshape(c, nh * d))
                off += c
            if batch:
                qd = q[off:].view(batch, kv, group, d)
                kd[:, :, -1] = k[off:].view(batch, kv, d)
                vd[:, :, -1] = v[off:].view(batch, kv, d)
                outs.append(F.scaled_dot_product_attention(qd, kd, vd).reshape(batch, nh * d))
            return torch.cat(outs) if len(outs) > 1 else outs[0]

        def run():
            y = x + self.pos.index_select(0, pos_ids) if self.pos is not None else x
            for L in self.layers:
                hn = self.norm(y, L["n1"], L["n1_b"])
                q, k, v = self.linear(hn, L["qkv"], L["qkv_b"]).split([nh * d, kv * d, kv * d], dim=1)
                y = y + self.linear(attention(q, k, v), L["o"], L["o_b"])
                hn = self.norm(y, L["n2"], L["n2_b"])
                u = self.linear(hn, L["up"], L["up_b"])
                if s["gated"]:
                    g, u = u.chunk(2, dim=1)
                    u = act(g) * u
                else:
                    u = act(u)
                y = y + self.linear(u, L["down"], L["down_b"])
            return y.index_select(0, last) @ self.lm_head

        return run


def points(g):
    for c in g["prefill"]:
        yield "prefill", [c], 0, 0, 0
    for n, c in g["batches"]:
        yield "prefill_batch", [c] * n, 0, 0, 0
    for b, c in g["decode"]:
        yield "decode", [], 0, b, c
    for c, p, b, x in g["mixed"]:
        yield "mixed", [c], p, b, x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=100)
    args = ap.parse_args()
    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0)
    print(json.dumps({"gpu": gpu, "torch": torch.__version__}), flush=True)
    with open(out / "iterations.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=FIELDS)
        wr.writeheader()
        for name, s in SHAPES.items():
            m = Model(s)
            for kind, pre, prior, batch, ctx in points(GRID[name]):
                if time.time() - t0 > args.budget_s:
                    print("budget spent", flush=True)
                    break
                ms = median_ms(m.step(pre, prior, batch, ctx), target_ms=150)
                wr.writerow(dict(gpu=gpu, model=name, tp=1, kind=kind, prefill_lens="+".join(map(str, pre)),
                                 prior_ctx=prior, decode_batch=batch, decode_ctx=ctx, ms=round(ms, 4),
                                 includes_comm=1))
                f.flush()
                elapsed = f"{time.time() - t0:.0f}s"
                print(name, kind, pre[:1], prior, batch, ctx, round(ms, 3), elapsed, flush=True)
                torch.cuda.empty_cache()
            del m
            torch.cuda.empty_cache()
    (out / "device.json").write_text(json.dumps(device_ceilings(gpu), indent=1))


if __name__ == "__main__":
    main()
