"""Measure mixture-of-experts cost on a real GPU: fused (grouped GEMM) against looped experts.

    python tools/measure_moe.py --out results/ --budget-s 75

Needs PyTorch >= 2.8 with CUDA (torch's grouped GEMM) and PyYAML; shares the model shards and timing
of `tools/profile_gpu.py`. Writes into --out, appending as it goes (a run cut short keeps its rows):
- `moe_layer.csv` (gpu, model, tp, impl, tokens, touched_experts, ms): one MoE layer alone (router GEMM,
  routed experts, shared expert) at several token counts, both implementations, uniform random top-k;
- `iterations.csv` (the Measurement CSV with a `moe_kernels` column): whole iterations of
  `--iteration-model` with fused experts on the quick grid, then looped decode rows while time is left;
- `device.json`: the grouped GEMM found, copy bandwidth, GEMM rate.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import profile_gpu as pg  # noqa: E402

LAYER_MODELS = (("qwen3-30b-a3b", 1), ("qwen1.5-moe-a2.7b", 1), ("mixtral-8x7b", 1), ("deepseek-v3", 8))
LAYER_TOKENS = (1, 8, 32, 128, 512, 2048, 8192)
LAYER_FIELDS = ["gpu", "model", "tp", "impl", "tokens", "touched_experts", "ms"]


def timed(fn, target_ms: float) -> float:
    """Median ms replayed from a CUDA graph; eagerly when the graph cannot be captured."""
    try:
        return pg.median_ms(fn, target_ms=target_ms)
    except Exception as exc:  # noqa: BLE001 - say why and measure without the graph
        print(f"graph capture failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); eager",
              flush=True)
        torch.cuda.synchronize()
        return pg.median_ms(fn, graph=False, target_ms=target_ms)


def moe_dims(spec: dict, tp: int) -> dict:
    """The routed and shared experts of one layer of a tp-sliced shard (each expert cut by tp)."""
    width = spec["moe_intermediate_size"]
    shared = spec.get("shared_expert_intermediate_size") or width * spec.get("num_shared_experts", 0)
    return dict(hidden=spec["hidden_size"], experts=spec["num_experts"], top_k=spec["num_experts_per_tok"],
                width=width // tp, shared=shared // tp)


def layer_rows(catalog: dict, gpu: str, deadline: float):
    def w(*shape):
        return torch.randn(*shape, device="cuda", dtype=pg.DTYPE) * 0.02

    for name, tp in LAYER_MODELS:
        d = moe_dims(catalog[name], tp)
        layer = pg.expert_weights(d["experts"], d["hidden"], d["width"], w)
        if d["shared"]:
            layer.update(gate_up=w(d["hidden"], 2 * d["shared"]), down=w(d["shared"], d["hidden"]))
        for tokens in LAYER_TOKENS:
            x = torch.randn(tokens, d["hidden"], device="cuda", dtype=pg.DTYPE)
            rt = pg.route(tokens, d["experts"], d["top_k"], torch.Generator().manual_seed(tokens))
            for impl in pg.MOE_IMPLS:
                if time.time() > deadline:
                    return
                if impl == "fused" and pg.GROUPED["fn"] is None:
                    continue
                ms = timed(lambda a=(x, layer, rt, impl): pg.moe_forward(*a), 60.0)
                yield dict(gpu=gpu, model=name, tp=tp, impl=impl, tokens=tokens,
                           touched_experts=rt.touched, ms=round(ms, 5))
        del layer
        torch.cuda.empty_cache()


def iteration_rows(catalog: dict, name: str, impl: str, kinds: tuple, gpu: str, deadline: float):
    shape = pg.shard_shape({"name": name, **catalog[name]}, 1)
    shard = pg.Shard(shape, "masked", moe=impl)
    budget_bytes = 0.25 * torch.cuda.mem_get_info()[0]
    for kind, prefill, prior, batch, ctx in pg.points(pg.GRIDS["quick"], shape, budget_bytes):
        if time.time() > deadline:
            break
        if kind not in kinds:
            continue
        ms = timed(shard.step(prefill, prior, batch, ctx), 200.0)
        yield dict(gpu=gpu, model=name, tp=1, kind=kind, prefill_lens="+".join(map(str, prefill)),
                   prior_ctx=prior, decode_batch=batch, decode_ctx=ctx, ms=round(ms, 4),
                   includes_comm=1, moe_kernels=impl)
        torch.cuda.empty_cache()
    del shard
    torch.cuda.empty_cache()


def write_rows(path: Path, fields: list[str], rows) -> int:
    n = 0
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
            f.flush()
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=75.0, help="stop measuring after this long")
    ap.add_argument("--layer-share", type=float, default=0.35, help="share of the budget for moe_layer")
    ap.add_argument("--iteration-model", default="qwen3-30b-a3b")
    args = ap.parse_args()
    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    catalog = yaml.safe_load(pg.CATALOG.read_text())
    gpu = torch.cuda.get_device_name(0)
    info = {"gpu": gpu, "torch": torch.__version__, "grouped_mm": pg.find_grouped_mm()}
    print(json.dumps(info), flush=True)
    (out / "device.json").write_text(json.dumps(info, indent=1))
    layer_end = t0 + args.budget_s * args.layer_share
    n = write_rows(out / "moe_layer.csv", LAYER_FIELDS, layer_rows(catalog, gpu, layer_end))
    print(f"moe_layer: {n} rows, {time.time() - t0:.0f} s", flush=True)
    end = t0 + args.budget_s
    name = args.iteration_model

    def iterations():
        if pg.GROUPED["fn"] is not None:
            kinds = ("prefill", "prefill_batch", "decode", "mixed")
            yield from iteration_rows(catalog, name, "fused", kinds, gpu, end)
            print(f"fused iterations done, {time.time() - t0:.0f} s", flush=True)
        yield from iteration_rows(catalog, name, "looped", ("decode",), gpu, end)

    n = write_rows(out / "iterations.csv", pg.FIELDS, iterations())
    print(f"iterations: {n} rows, {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
