"""KV studies (issue 14; docs/kv.md): the Mooncake conversation trace's hit rate as the total
cache grows and TTFT under least-load / local cache-aware / global-pool routing; agentic programs
under each KV retention mode. Prints markdown tables, writes CSVs into --out and the figure
docs/figures/kv_studies.png (with --quick, into --out).

Usage: python examples/studies/kv_studies.py [--out DIR] [--quick]
Everything is simulated (deterministic); `--quick` runs a 20-minute window of the trace and 60
programs instead of the whole trace and 200 programs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from servesim.studies.kv import (  # noqa: E402
    cache_sweep,
    plot_kv_studies,
    prefix_ceiling,
    retention_comparison,
    routing_comparison,
)
from servesim.studies.tables import markdown_table  # noqa: E402

KV = ROOT / "configs" / "kv"
AGENTIC = ROOT / "configs" / "agentic"
POOL_GB = [0, 64, 256, 1024, 4096, 16384]
RETENTION = {
    "none": {"kv.retention.mode": "none"},
    "lru": {"kv.retention.mode": "lru"},
    "ttl 10 s": {"kv.retention.mode": "ttl", "kv.retention.ttl_s": 10},
    "ttl 300 s": {"kv.retention.mode": "ttl", "kv.retention.ttl_s": 300},
    "program": {"kv.retention.mode": "program"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "kv_studies")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    trace = {"workload.trace.duration_s": 1200} if args.quick else {}
    programs = {"workload.programs.num_programs": 60} if args.quick else {}

    ceiling = prefix_ceiling(KV / "mooncake_global_pool.yaml", **trace)
    sweep = cache_sweep(KV / "mooncake_global_pool.yaml", POOL_GB, **trace)
    routing = routing_comparison({
        "least_tokens": KV / "mooncake_least_tokens.yaml",
        "local cache-aware": KV / "mooncake_local_cache_aware.yaml",
        "global pool + cache-aware": KV / "mooncake_global_pool.yaml",
    }, **trace)
    retention = retention_comparison(AGENTIC / "ttl.yaml", RETENTION, **programs)
    for name, frame in (("cache_sweep", sweep), ("routing", routing), ("retention", retention)):
        frame.to_csv(args.out / f"{name}.csv", index=False)
        print(f"\n### {name}\n")
        print(markdown_table(frame, ".3f"))
    print(f"\ninfinite-cache ceiling of the replayed trace: {ceiling:.3f}")
    # only the full run replaces the documented figure; a quick one draws next to its tables
    figure = args.out / "kv_studies.png" if args.quick else ROOT / "docs" / "figures" / "kv_studies.png"
    plot_kv_studies(sweep, ceiling, routing, retention, figure)
    print(f"figure: {figure}")


if __name__ == "__main__":
    main()
