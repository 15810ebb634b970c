"""Elastic-cluster studies (issue 16): autoscaling on a diurnal day against a fleet sized for the
peak (and the cold-start trade-off), one instance failing mid-run, a straggler, and
migration-based rebalancing on a bursty workload.

Usage: python examples/studies/elastic_studies.py [--study diurnal|failure|straggler|migration|all]
                                            [--seeds 1 2 3] [--out DIR]
Each study prints a markdown table and writes a CSV into --out (default out/elastic_studies);
the diurnal study also writes fleet.png (instances and load over time). Metrics are simulated
(deterministic per seed); the migration table shows the median over seeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from servesim import simulate  # noqa: E402
from servesim.studies.tables import markdown_table  # noqa: E402

ELASTIC = ROOT / "configs" / "elastic"


def run(name: str, **overrides):
    t0 = time.perf_counter()
    result = simulate(ELASTIC / name, **overrides)
    return result, time.perf_counter() - t0


def latency_row(result) -> dict:
    s = result.summary
    lat = s["latency"]
    return {
        "attainment": s["slo"]["attainment"],
        "ttft_p50_s": lat["ttft"]["p50"],
        "ttft_p99_s": lat["ttft"]["p99"],
        "tpot_p99_ms": lat["tpot"]["p99"] * 1e3,
        "completed": s["requests"]["completed"],
        "arrived": s["requests"]["arrived"],
    }


def fleet_row(result) -> dict:
    c = result.summary["cluster"]
    return {
        "instance_hours": c["instance_hours"],
        "cold_starts": c["cold_starts"],
        "cold_start_hours": c.get("cold_start_seconds", 0.0) / 3600,
        "peak_instances": c.get("peak_instances", c["instances"]),
    }


def policy(cold_s: float, lookahead_s: float, window_s: float = 30) -> dict:
    return {
        "cluster.autoscaling.cold_start.fixed_s": cold_s,
        "cluster.autoscaling.policy": {"name": "predicted_load", "requests_per_instance": 18,
                                       "window_s": window_s, "lookahead_s": lookahead_s},
    }


def study_diurnal(out: Path) -> pd.DataFrame:
    variants = [
        ("fixed fleet, sized for the peak", "diurnal_fixed_peak.yaml", {}),
        ("autoscaled, cold start 28 s", "diurnal_autoscaled.yaml", {}),
        ("autoscaled, cold start 128 s", "diurnal_autoscaled.yaml", policy(120, 60)),
        ("autoscaled, cold start 308 s", "diurnal_autoscaled.yaml", policy(300, 60)),
        ("autoscaled, cold start 128 s, window 120 s, lookahead 160 s", "diurnal_autoscaled.yaml",
         policy(120, 160, 120)),
        ("autoscaled, cold start 308 s, window 120 s, lookahead 330 s", "diurnal_autoscaled.yaml",
         policy(300, 330, 120)),
    ]
    rows = []
    for label, config, overrides in variants:
        result, wall = run(config, **overrides)
        rows.append({"fleet": label, **latency_row(result), **fleet_row(result), "wall_s": wall})
        if label.startswith(("fixed", "autoscaled, cold start 28 s")):
            result.save(out / ("fixed" if label.startswith("fixed") else "autoscaled"))
    from servesim.studies.fleet_plot import fleet_figure

    fig = fleet_figure({"fixed (peak)": out / "fixed", "autoscaled": out / "autoscaled"})
    fig.savefig(out / "fleet.png", dpi=110)
    return pd.DataFrame(rows)


def study_failure(out: Path) -> pd.DataFrame:
    rows = []
    for label, overrides in [
        ("no failure", {"cluster.faults": None}),
        ("instance 1 fails at 120 s, retry", {}),
        ("instance 1 fails at 120 s, fail", {"cluster.faults.on_failure": "fail"}),
    ]:
        result, wall = run("instance_failure.yaml", **overrides)
        req = result.summary["requests"]
        conserved = req["arrived"] == (req["completed"] + req["rejected"] + req.get("failed", 0)
                                       + req["unfinished"])
        rows.append({"run": label, **latency_row(result), "rejected": req["rejected"],
                     "failed": req.get("failed", 0), "retried": req.get("retried", 0),
                     "unfinished": req["unfinished"], "conserved": conserved, "wall_s": wall})
    return pd.DataFrame(rows)


def study_straggler(out: Path) -> pd.DataFrame:
    straggle = {"cluster.faults.failures": [],
                "cluster.faults.stragglers": [{"at_s": 60, "instance": 2, "factor": 3.0,
                                               "duration_s": 120}]}
    base, _ = run("instance_failure.yaml", **{"cluster.faults": None})
    slow, _ = run("instance_failure.yaml", **straggle)
    frame, ref = slow.requests, base.requests.set_index("request_id")
    rows = []
    in_window = frame.arrival_s.between(60, 180)
    on_slow = frame.instance == 2
    for label, mask in [("on the straggler (instance 2), arrived 60-180 s", in_window & on_slow),
                        ("on other instances, arrived 60-180 s", in_window & ~on_slow)]:
        ids = frame[mask].request_id
        rows.append({
            "requests": label, "n": int(mask.sum()),
            "tpot_mean_ms": frame[mask].tpot_s.mean() * 1e3,
            "tpot_mean_ms_without_straggler": ref.loc[ids].tpot_s.mean() * 1e3,
            "ttft_p90_s": frame[mask].ttft_s.quantile(0.9),
            "ttft_p90_s_without_straggler": ref.loc[ids].ttft_s.quantile(0.9),
        })
    return pd.DataFrame(rows)


def study_migration(out: Path, seeds: list[int]) -> pd.DataFrame:
    rows = []
    for router in ("least_loaded", "round_robin"):
        for label, overrides in [("none", {"cluster.migration": None}), ("load", {})]:
            per_seed = []
            for seed in seeds:
                result, wall = run("migration_bursty.yaml", seed=seed, **{"cluster.router": router},
                                   **overrides)
                c = result.summary["cluster"]
                per_seed.append({**latency_row(result), "migrations": c.get("migrations", 0),
                                 "migrated_gb": c.get("migrated_bytes", 0.0) / 1e9,
                                 "preemptions": result.summary["kv"]["preemptions"],
                                 "wall_s": wall})
            med = {k: statistics.median(r[k] for r in per_seed) for k in per_seed[0]}
            rows.append({"router": router, "migration": label, "seeds": len(seeds), **med})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", default="all",
                    choices=["diurnal", "failure", "straggler", "migration", "all"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--out", default="out/elastic_studies")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    studies = {
        "diurnal": lambda: study_diurnal(out),
        "failure": lambda: study_failure(out),
        "straggler": lambda: study_straggler(out),
        "migration": lambda: study_migration(out, args.seeds),
    }
    for name, study in studies.items():
        if args.study in (name, "all"):
            table = study()
            table.to_csv(out / f"{name}.csv", index=False)
            print(f"\n## {name}\n")
            print(markdown_table(table))


if __name__ == "__main__":
    main()
