"""Derive compact linear-layer and all-reduce tables from Vidur's raw profiles.

    python tools/import_vidur.py ../shared/groundtruth/vidur-profiles data/measurements/vidur

Reads `compute/<gpu>/<org>/<model>/mlp.csv` (per-operation latencies against tokens and TP degree) and
`network/<gpu>_dgx/all_reduce.csv`, and writes, per GPU:
- `<gpu>_linear.csv`: gpu, op, model, tp, M, K, N, ms - the four GEMMs of a decoder layer (QKV, output
  projection, MLP up incl. gate, MLP down) with their per-GPU shapes; median over repeated rows.
- `<gpu>_all_reduce.csv`: gpu, num_workers, bytes, ms - all GPUs in one node; median over repeats.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

GPU_NAMES = {"a100": "a100-80gb", "h100": "h100-sxm"}
OPS = {
    "attn_pre_proj": "qkv",
    "attn_post_proj": "o",
    "mlp_up_proj": "gate_up",
    "mlp_down_proj": "down",
}


def linear_rows(path: Path, gpu: str) -> pd.DataFrame:
    d = pd.read_csv(path)
    model = path.parent.name
    head_dim = d["n_embd"] // d["n_head"]
    tp = d["num_tensor_parallel_workers"]
    up = d["n_expanded_embd"] * d["use_gated_mlp"].map({True: 2, False: 1}) // tp
    shapes = {
        "qkv": (d["n_embd"], (d["n_head"] + 2 * d["n_kv_head"]) * head_dim // tp),
        "o": (d["n_embd"] // tp, d["n_embd"]),
        "gate_up": (d["n_embd"], up),
        "down": (d["n_expanded_embd"] // tp, d["n_embd"]),
    }
    parts = []
    for col, op in OPS.items():
        k, n = shapes[op]
        parts.append(
            pd.DataFrame(
                {
                    "gpu": GPU_NAMES[gpu],
                    "op": op,
                    "model": model,
                    "tp": tp,
                    "M": d["num_tokens"],
                    "K": k,
                    "N": n,
                    "ms": d[f"time_stats.{col}.median"],
                }
            )
        )
    out = pd.concat(parts)
    keys = ["gpu", "op", "model", "tp", "M", "K", "N"]
    return out.groupby(keys, as_index=False)["ms"].median()


def all_reduce_rows(path: Path, gpu: str) -> pd.DataFrame:
    d = pd.read_csv(path)
    d = d[d["devices_per_node"] == d["num_workers"]]
    out = d.groupby(["num_workers", "size"], as_index=False)["time_stats.all_reduce.median"].median()
    out = out.rename(columns={"size": "bytes", "time_stats.all_reduce.median": "ms"})
    out.insert(0, "gpu", GPU_NAMES[gpu])
    return out


def main(src: str, dst: str) -> None:
    src_dir, out_dir = Path(src), Path(dst)
    out_dir.mkdir(parents=True, exist_ok=True)
    for gpu in GPU_NAMES:
        files = sorted((src_dir / "compute" / gpu).glob("*/*/mlp.csv"))
        table = pd.concat([linear_rows(f, gpu) for f in files]).sort_values(["model", "tp", "op", "M"])
        table.to_csv(out_dir / f"{gpu}_linear.csv", index=False, float_format="%.6g")
        ar = all_reduce_rows(src_dir / "network" / f"{gpu}_dgx" / "all_reduce.csv", gpu)
        ar.to_csv(out_dir / f"{gpu}_all_reduce.csv", index=False, float_format="%.6g")
        print(f"{gpu}: {len(table)} linear rows from {len(files)} models, {len(ar)} all-reduce rows")


if __name__ == "__main__":
    main(*sys.argv[1:3])
