"""Cluster studies (issue 6): prefix-affinity routing and prefix caching on the Mooncake trace,
prefill/decode disaggregation against colocated instances on arXiv lengths, the KV link's cost,
and the crossover where disaggregation stops paying.

Usage: python examples/studies/cluster_studies.py [--study prefix|disagg|link|crossover|all]
                                            [--requests N] [--seeds 1 2 3] [--out DIR]
Each study prints a markdown table and writes a CSV into --out (default out/cluster_studies).
Metrics are simulated (deterministic per seed); where several seeds run, the table shows the
median over seeds. Wall time per simulation is printed for reference (median of the seeds).

Everything comes from two configs, varied by dotted overrides: configs/cluster_mooncake_prefix.yaml
(the Mooncake conversation trace replayed with its 512-token `hash_ids` as prefix hashes) and
configs/cluster_disagg_arxiv.yaml (Poisson arrivals with arXiv-summarization length pairs).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from servesim import simulate  # noqa: E402
from servesim.schedulers import POLICIES  # noqa: E402

CONFIGS = ROOT / "configs"


# -- running --------------------------------------------------------------------------------------
PROFILE: dict = {}
"""`cost.profile` override from --profile, applied to every simulation."""


def timed(config: Path, overrides: dict):
    t0 = time.perf_counter()
    result = simulate(config, **PROFILE, **overrides)
    return result, time.perf_counter() - t0


def attainment(frame: pd.DataFrame, ttft_s: float, tpot_s: float) -> float:
    done = frame["status"] == "completed"
    met = done & (frame["ttft_s"] <= ttft_s) & (frame["tpot_s"] <= tpot_s)
    return float(met.sum() / len(frame))


def row_of(result, wall: float) -> dict:
    s = result.summary
    lat = s["latency"]
    row = {
        "ttft_mean_s": lat["ttft"]["mean"],
        "ttft_p90_s": lat["ttft"]["p90"],
        "tpot_p50_ms": lat["tpot"]["p50"] * 1e3,
        "tpot_p90_ms": lat["tpot"]["p90"] * 1e3,
        "attainment": s["slo"]["attainment"],
        "prefix_hit_rate": s["kv"]["prefix_hit_rate"],
        "completed": s["requests"]["completed"],
        "unfinished": s["requests"]["unfinished"],
        "rejected": s["requests"]["rejected"],
        "wall_s": wall,
    }
    link = s.get("cluster", {}).get("kv_link")
    if link:
        row.update(link_wait_ms=link["mean_wait_s"] * 1e3, link_utilization=link["utilization"])
    return row


def median_rows(rows: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def print_table(title: str, frame: pd.DataFrame) -> None:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    print(f"\n### {title}\n")
    print("| " + " | ".join(frame.columns) + " |")
    print("|" + "---|" * len(frame.columns))
    for row in frame.itertuples(index=False):
        print("| " + " | ".join(cell(v) for v in row) + " |")


# -- studies --------------------------------------------------------------------------------------
def study_prefix(args) -> pd.DataFrame:
    """8 instances on the Mooncake conversation trace: hit rate and TTFT by router and caching."""
    config = CONFIGS / "cluster_mooncake_prefix.yaml"
    trace = {"workload.trace.time_scale": args.time_scale}
    if args.requests:
        trace["workload.num_requests"] = args.requests
    variants = [
        ("round_robin", False), ("round_robin", True), ("power_of_two", True),
        ("prefix_affinity", False), ("prefix_affinity", True),
    ]
    rows = []
    for hardware in ("h100-sxm", "h200-sxm"):
        for router, caching in variants:
            over = {"cluster.router": router, "engine.prefix_caching": caching, "hardware": hardware,
                    **trace}
            result, wall = timed(config, over)
            rows.append({"hardware": hardware, "router": router, "prefix_caching": caching,
                         **row_of(result, wall)})
    frame = pd.DataFrame(rows)
    cols = ["hardware", "router", "prefix_caching", "prefix_hit_rate", "ttft_mean_s", "ttft_p90_s",
            "tpot_p50_ms", "completed", "wall_s"]
    print_table(f"Mooncake conversation trace ({rows[0]['completed']} requests), time scale "
                f"{args.time_scale}, 8 instances", frame[cols])
    return frame


def topologies() -> dict[str, dict]:
    out = {
        "colocated 4 fcfs": {"cluster.disaggregation": None, "cluster.instances": 4},
        "2P+2D": {},
    }
    if "chunked_prefill" in POLICIES.names():
        out["colocated 4 chunked"] = {
            "cluster.disaggregation": None, "cluster.instances": 4,
            "engine.scheduler": "chunked_prefill",
        }
    return out


def run_arxiv(topology: dict, rate: float, args, extra: dict | None = None) -> tuple[dict, list]:
    """Median row over seeds, and the per-seed request frames."""
    config = CONFIGS / "cluster_disagg_arxiv.yaml"
    rows, frames = [], []
    for seed in args.seeds:
        over = {"seed": seed, "workload.arrival.rate": rate, **topology, **(extra or {})}
        if args.requests:
            over["workload.num_requests"] = args.requests
        result, wall = timed(config, over)
        rows.append(row_of(result, wall))
        frames.append(result.requests)
    return median_rows(rows), frames


def study_disagg(args) -> pd.DataFrame:
    """arXiv lengths, tight TPOT SLO: 4 colocated instances against 2 prefill + 2 decode."""
    rows = []
    for rate in args.rates or (24.0, 30.0, 36.0):
        for name, topo in topologies().items():
            row, _ = run_arxiv(topo, rate, args)
            rows.append({"rate": rate, "topology": name, **row})
    frame = pd.DataFrame(rows)
    cols = ["rate", "topology", "ttft_mean_s", "ttft_p90_s", "tpot_p50_ms", "tpot_p90_ms",
            "attainment", "wall_s"]
    print_table("arXiv lengths on 4 H100s, SLO TTFT 2 s / TPOT 25 ms (median over seeds)", frame[cols])
    return frame


def study_link(args) -> pd.DataFrame:
    """2P+2D at a fixed rate: TTFT as the KV link slows down (one shared link, FIFO)."""
    rows = []
    for bandwidth in (100.0, 50.0, 25.0, 12.5, 10.0, 8.0):
        extra = {"cluster.disaggregation.kv_link.bandwidth_gb_s": bandwidth}
        row, _ = run_arxiv({}, 24.0, args, extra)
        rows.append({"bandwidth_gb_s": bandwidth, **row})
    frame = pd.DataFrame(rows)
    cols = ["bandwidth_gb_s", "ttft_mean_s", "ttft_p90_s", "tpot_p90_ms", "link_wait_ms",
            "link_utilization", "attainment"]
    print_table("2P+2D, arXiv lengths at 24 req/s: KV link bandwidth (median over seeds)", frame[cols])
    return frame


def study_crossover(args) -> pd.DataFrame:
    """Attainment of each topology over rates and TPOT SLOs; where disaggregation stops paying."""
    splits = {
        "colocated": {"cluster.disaggregation": None, "cluster.instances": 4},
        **({"colocated chunked": {"cluster.disaggregation": None, "cluster.instances": 4,
                                  "engine.scheduler": "chunked_prefill"}}
           if "chunked_prefill" in POLICIES.names() else {}),
        "1P+3D": {"cluster.disaggregation.prefill_instances": 1,
                  "cluster.disaggregation.decode_instances": 3},
        "2P+2D": {},
        "3P+1D": {"cluster.disaggregation.prefill_instances": 3,
                  "cluster.disaggregation.decode_instances": 1},
    }
    slos_ms = (15, 20, 25, 35, 50, 100)
    rows = []
    for rate in args.rates or (8.0, 16.0, 24.0, 30.0, 36.0, 38.0, 40.0, 42.0, 48.0, 56.0):
        for name, topo in splits.items():
            row, frames = run_arxiv(topo, rate, args)
            att = {
                f"att@{slo}ms": statistics.median(attainment(f, 2.0, slo / 1e3) for f in frames)
                for slo in slos_ms
            }
            rows.append({"rate": rate, "topology": name, "ttft_p90_s": row["ttft_p90_s"],
                         "tpot_p90_ms": row["tpot_p90_ms"], **att})
    frame = pd.DataFrame(rows)
    print_table("Attainment (TTFT <= 2 s and TPOT <= SLO) by rate, topology and TPOT SLO", frame)
    print_table("Disaggregated (best split) against colocated (best policy): attainment gain per "
                "rate and TPOT SLO; '-' where disaggregation does not pay (gain <= 0.01)",
                crossover_map(frame, slos_ms))
    return frame


def crossover_map(frame: pd.DataFrame, slos_ms) -> pd.DataFrame:
    out = []
    for rate, g in frame.groupby("rate"):
        colocated = g["topology"].str.startswith("colocated")
        row = {"rate": rate}
        for slo in slos_ms:
            col = f"att@{slo}ms"
            colo = g[colocated].loc[g[colocated][col].idxmax()]
            dis = g[~colocated].loc[g[~colocated][col].idxmax()]
            gain = dis[col] - colo[col]
            row[f"{slo}ms"] = (f"{dis['topology']} +{gain:.2f}" if gain > 0.01
                               else f"- ({colo['topology']} {colo[col]:.2f})")
        out.append(row)
    return pd.DataFrame(out)


STUDIES = {"prefix": study_prefix, "disagg": study_disagg, "link": study_link,
           "crossover": study_crossover}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", choices=[*STUDIES, "all"], default="all")
    p.add_argument("--requests", type=int, help="requests per simulation (default per study)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--rates", type=float, nargs="+", help="arrival rates for disagg/crossover")
    p.add_argument("--time-scale", type=float, default=0.5,
                   help="prefix study: multiply the Mooncake clock (0.5 = twice the rate)")
    p.add_argument("--profile", help="cost profile (file or shipped name) for every run (default: the "
                   "hardware's shipped one); hopper-masked-prefix prices prefix attention as the "
                   "measuring harness's slower masked kernel")
    p.add_argument("--out", default="out/cluster_studies")
    args = p.parse_args(argv)
    if args.profile:
        path = Path(args.profile)
        PROFILE["cost.profile"] = str(path.resolve()) if path.exists() else args.profile
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}; cost profile: {args.profile or 'calibrated'}")
    for name in STUDIES if args.study == "all" else [args.study]:
        t0 = time.perf_counter()
        frame = STUDIES[name](args)
        frame.to_csv(out / f"{name}.csv", index=False)
        print(f"\n({name}: {time.perf_counter() - t0:.1f} s wall, wrote {out / f'{name}.csv'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
