"""The two KV studies (docs/kv.md), as functions over `simulate()`:

- `prefix_ceiling`: the hit rate an unbounded cache would reach on a trace (every prompt block
  whose whole prefix was seen before, whole hash blocks, at least one token left to compute).
- `cache_sweep`: hit rate and TTFT as the total cache grows (a pool of each size).
- `routing_comparison`: one row per config (least-load, local cache-aware, global pool).
- `retention_comparison`: agentic task completion per retention mode / TTL.
- `plot_kv_studies`: the figure of docs/kv.md from those tables.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from servesim.build import build
from servesim.config import load_config
from servesim.core.files import save_figure
from servesim.kv.block_pool import chain_hashes
from servesim.simulation import simulate


def prefix_ceiling(config, **overrides) -> float:
    """Share of prompt tokens an infinite prefix cache would serve on the config's workload."""
    built = build(load_config(config, overrides))
    block = built.table.hash_block_size
    seen: set[int] = set()
    hit = total = 0
    for r in built.requests:
        total += r.num_prompt_tokens
        chain = chain_hashes(r.prefix_hashes)
        n = 0
        while n < len(chain) and chain[n] in seen and (n + 1) * block <= r.num_prompt_tokens - 1:
            n += 1
        hit += n * block
        seen.update(chain[: r.num_prompt_tokens // block])
    return hit / total if total else 0.0


def _row(result) -> dict:
    s = result.summary
    kv = s["kv"]
    row = {
        "ttft_mean_s": s["latency"]["ttft"]["mean"],
        "ttft_p90_s": s["latency"]["ttft"]["p90"],
        "hit_rate": kv["prefix_hit_rate"],
        "sim_wall_s": s["sim"]["wall_s"],
    }
    for tier, v in kv.get("tiers", {}).items():
        row[f"hit_{tier}"] = v["hit_rate"]
    return row


def cache_sweep(config, pool_gb: list[float], **overrides) -> pd.DataFrame:
    """Total cache = the GPUs' prefix caches + a pool of each size (0: none)."""
    rows = []
    for gb in pool_gb:
        extra = {"kv.pool": {"capacity_gb": gb}} if gb else {"kv.pool": None}
        result = simulate(config, **overrides, **extra)
        gpu_gb = result.summary["kv"]["capacity_tokens"] * result.summary["cluster"]["instances"]
        rows.append({"pool_gb": gb, "gpu_cache_tokens": gpu_gb, **_row(result)})
    return pd.DataFrame(rows)


def routing_comparison(configs: dict[str, Path | str], **overrides) -> pd.DataFrame:
    rows = [{"setup": name, **_row(simulate(path, **overrides))} for name, path in configs.items()]
    return pd.DataFrame(rows)


def retention_comparison(config, variants: dict[str, dict], **overrides) -> pd.DataFrame:
    """One agentic run per variant (dotted overrides, e.g. `{"kv.retention.mode": "ttl"}`)."""
    rows = []
    for name, changes in variants.items():
        s = simulate(config, **overrides, **changes).summary
        p = s["programs"]
        retention = s["kv"].get("retention", {})
        rows.append({
            "retention": name,
            "task_mean_s": p["task_time"]["mean"],
            "task_p90_s": p["task_time"]["p90"],
            "programs_completed": p["completed"],
            "call_ttft_mean_s": s["latency"]["ttft"]["mean"],
            "hit_rate": s["kv"]["prefix_hit_rate"],
            "peak_pinned_tokens": retention.get("peak_pinned_tokens", 0),
            "fairness": p["fairness"],
        })
    return pd.DataFrame(rows)


def plot_kv_studies(sweep: pd.DataFrame, ceiling: float, routing: pd.DataFrame,
                    retention: pd.DataFrame, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    x = range(len(sweep))
    ax.plot(x, sweep["hit_rate"], "o-", label="simulated")
    ax.axhline(ceiling, ls="--", color="gray", label=f"infinite cache ({ceiling:.1%})")
    ax.set_xticks(list(x), [f"{gb:g}" for gb in sweep["pool_gb"]], fontsize=8)
    ax.set_xlabel("KV pool (GB) on top of the GPUs' prefix caches")
    ax.set_ylabel("prefix hit rate")
    ax.set_ylim(0, max(ceiling, sweep["hit_rate"].max()) * 1.15)
    ax.legend(fontsize=8)
    ax.set_title("Mooncake trace: hit rate vs cache", fontsize=9)
    ax = axes[1]
    ax.bar(routing["setup"], routing["ttft_mean_s"], color=["C7", "C0", "C2"][: len(routing)])
    ax.set_ylabel("mean TTFT (s)")
    ax.set_title("same GPUs: routing and KV pool", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    ax = axes[2]
    ax.bar(retention["retention"], retention["task_mean_s"], color="C1")
    ax.set_yscale("log")
    ax.set_ylabel("mean task completion (s)")
    ax.set_title("agentic programs: KV retention", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
