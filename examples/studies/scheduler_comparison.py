"""Scheduling policies compared on one H100 with Llama-3-8B and ShareGPT lengths.

    PYTHONPATH=src python examples/studies/scheduler_comparison.py [--seeds 1,2,3] [--workers 2]
        [--backend local|ray] [--json out.json]

Prints, as means over the seeds (each seed: its own Poisson arrivals and its own (prompt, output)
pairs resampled from the ShareGPT length file, shared by every policy at that seed, so comparisons
are paired):

1. SRTF (oracle predictor) vs FCFS: mean end-to-end latency near and above saturation;
2. the same gain as the predictor gets worse (noisy oracle sigma, bucket classifier, class mean);
3. chunked prefill vs FCFS at the same load: p99 of each request's longest inter-token gap, mean TTFT;
4. EDF with admission control vs FCFS (and EDF without it) under overload: SLO attainment;
5. any order with any batching: SRTF with chunked batching against SRTF and FCFS.

Every run is configs/sched_sharegpt.yaml with the overrides shown in the tables, so any row is one
`servesim run configs/sched_sharegpt.yaml --seed N --set KEY=VALUE ...` (from the repository root).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from servesim.build import build
from servesim.config import load_config
from servesim.simulation import run
from servesim.studies.executor import run_tasks

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "sched_sharegpt.yaml"

SRTF_RATES = [6.0, 6.5, 7.0, 7.5, 8.0, 10.0]
SRTF_SEQS = [128, 256]
LONG = {"workload.num_requests": 5000}  # SRTF runs: long enough for the queue to settle near saturation
SATURATE = 20.0  # req/s, far above saturation: throughput then is the server's capacity
WINDOW_RATE = 7.0
WINDOWS = [2000, 5000, 20000]
NOISE_RATE = 8.0
PREDICTORS = [
    ("oracle", "oracle"),
    ("noisy sigma=0.25", {"name": "noisy_oracle", "sigma": 0.25}),
    ("noisy sigma=0.5", {"name": "noisy_oracle", "sigma": 0.5}),
    ("noisy sigma=1.0", {"name": "noisy_oracle", "sigma": 1.0}),
    ("noisy sigma=2.0", {"name": "noisy_oracle", "sigma": 2.0}),
    ("bucket acc=0.8", {"name": "bucket", "accuracy": 0.8}),
    ("bucket acc=0.5", {"name": "bucket", "accuracy": 0.5}),
    ("mean (history)", "mean"),
]
CHUNK_RATES = [6.0, 7.0]
CHUNK_SIZES = [512, 1024, 2048]
OVERLOAD_RATES = [8.0, 10.0, 12.0]
MIX_RATES = [7.0, 7.5]


# -- one simulation ---------------------------------------------------------------------------------
def simulate(overrides: dict) -> dict:
    """Run the config with `overrides` (paths in it resolve from the repository root); the summary
    gains `batch_full_share`: the fraction of busy time with all `max_num_seqs` slots taken."""
    result = run(build(load_config(CONFIG, overrides)))
    steps = result.steps
    busy = steps.end_s - steps.start_s
    full = busy[steps.num_running >= result.config.engine.max_num_seqs].sum()
    return {**result.summary, "batch_full_share": float(full / busy.sum())}


class Runner:
    """Runs each distinct (overrides, seed) once, on the studies executor (local worker processes
    or Ray), and averages over seeds."""

    def __init__(self, seeds: list[int], workers: int, backend: str = "local"):
        self.seeds, self.workers, self.backend = seeds, workers, backend
        self.results: dict[str, dict] = {}

    def run_all(self, points: list[dict]) -> None:
        todo = {}
        for overrides in points:
            for seed in self.seeds:
                key = _key(overrides, seed)
                if key not in self.results:
                    todo[key] = {**overrides, "seed": seed}
        keys, tasks = list(todo), list(todo.values())
        for i, summary in run_tasks(simulate, tasks, self.workers, self.backend):
            self.results[keys[i]] = summary

    def mean(self, overrides: dict, path: str) -> float:
        values = [_get(self.results[_key(overrides, s)], path) for s in self.seeds]
        return float(np.mean(values))


def _key(overrides: dict, seed: int) -> str:
    return json.dumps({**overrides, "seed": seed}, sort_keys=True)


def _get(summary: dict, path: str):
    for part in path.split("."):
        summary = summary[part]
    return summary


# -- the four comparisons -------------------------------------------------------------------------
def at(rate: float, **overrides) -> dict:
    return {"workload.arrival.rate": rate, **overrides}


def srtf_run(rate: float, policy: str, seqs: int = 128, **overrides) -> dict:
    return at(rate, **{"engine.scheduler": policy, "engine.max_num_seqs": seqs, **LONG, **overrides})


def srtf_points() -> list[dict]:
    points = [srtf_run(SATURATE, "fcfs", seqs) for seqs in SRTF_SEQS]
    for seqs in SRTF_SEQS:
        for rate in SRTF_RATES:
            points += [srtf_run(rate, "fcfs", seqs), srtf_run(rate, "srtf", seqs)]
    for n in WINDOWS:
        points += [srtf_run(WINDOW_RATE, p, **{"workload.num_requests": n}) for p in ("fcfs", "srtf")]
    return points


def srtf_table(r: Runner) -> list[str]:
    lines = []
    capacity = {}
    for seqs in SRTF_SEQS:
        capacity[seqs] = r.mean(srtf_run(SATURATE, "fcfs", seqs), "throughput.requests_per_s")
        lines.append(
            f"FCFS capacity, max_num_seqs {seqs}: {capacity[seqs]:.2f} req/s "
            f"(completed per second at {SATURATE:g} req/s offered)"
        )
    lines += [
        "",
        (
            "| max_num_seqs | rate (req/s) | load | FCFS e2e mean (s) | SRTF e2e mean (s) | change | "
            "FCFS TTFT mean (s) | SRTF TTFT mean (s) | FCFS waiting share | FCFS batch full |"
        ),
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for seqs in SRTF_SEQS:
        for rate in SRTF_RATES:
            f, s = srtf_run(rate, "fcfs", seqs), srtf_run(rate, "srtf", seqs)
            fe, se = r.mean(f, "latency.e2e.mean"), r.mean(s, "latency.e2e.mean")
            ft = r.mean(f, "latency.ttft.mean")
            lines.append(
                f"| {seqs} | {rate:g} | {rate / capacity[seqs]:.2f} | {fe:.2f} | {se:.2f} | {_pct(se, fe)} | "
                f"{ft:.2f} | {r.mean(s, 'latency.ttft.mean'):.2f} | {ft / fe:.1%} | "
                f"{r.mean(f, 'batch_full_share'):.1%} |"
            )
    lines += [
        "",
        f"Run length at {WINDOW_RATE:g} req/s (max_num_seqs 128), each run starting from an empty server:",
        "",
        "| requests | FCFS e2e mean (s) | SRTF e2e mean (s) | change | FCFS TTFT mean (s) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in WINDOWS:
        f, s = (srtf_run(WINDOW_RATE, p, **{"workload.num_requests": n}) for p in ("fcfs", "srtf"))
        fe, se = r.mean(f, "latency.e2e.mean"), r.mean(s, "latency.e2e.mean")
        lines.append(f"| {n} | {fe:.2f} | {se:.2f} | {_pct(se, fe)} | {r.mean(f, 'latency.ttft.mean'):.2f} |")
    return lines


AGING = srtf_run(NOISE_RATE, "srtf", **{"engine.scheduler": {"name": "srtf", "aging_s": 30.0}})


def noise_points() -> list[dict]:
    return [srtf_run(NOISE_RATE, "fcfs"), AGING] + [
        srtf_run(NOISE_RATE, "srtf", **{"engine.predictor": p}) for _, p in PREDICTORS
    ]


def noise_table(r: Runner) -> list[str]:
    fcfs = srtf_run(NOISE_RATE, "fcfs")
    base = r.mean(fcfs, "latency.e2e.mean")
    lines = [
        (f"FCFS at {NOISE_RATE:g} req/s: e2e mean {base:.2f} s, p99 {r.mean(fcfs, 'latency.e2e.p99'):.1f} s"),
        "",
        "| SRTF predictor | e2e mean (s) | change vs FCFS | p99 e2e (s) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, predictor in PREDICTORS:
        p = srtf_run(NOISE_RATE, "srtf", **{"engine.predictor": predictor})
        e2e = r.mean(p, "latency.e2e.mean")
        lines.append(f"| {label} | {e2e:.2f} | {_pct(e2e, base)} | {r.mean(p, 'latency.e2e.p99'):.1f} |")
    e2e = r.mean(AGING, "latency.e2e.mean")
    lines.append(
        f"| oracle, aging_s=30 | {e2e:.2f} | {_pct(e2e, base)} | {r.mean(AGING, 'latency.e2e.p99'):.1f} |"
    )
    return lines


def chunk_points() -> list[dict]:
    points = []
    for rate in CHUNK_RATES:
        points.append(at(rate, **{"engine.scheduler": "fcfs"}))
        for size in CHUNK_SIZES:
            points.append(at(rate, **{"engine.batching": "chunked", "engine.chunk_size": size}))
    return points


def chunk_table(r: Runner) -> list[str]:
    lines = [
        "| rate (req/s) | policy | tbt_max p99 (s) | change | TTFT mean (s) | change | TPOT mean (s) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rate in CHUNK_RATES:
        f = at(rate, **{"engine.scheduler": "fcfs"})
        ft, fg = r.mean(f, "latency.ttft.mean"), r.mean(f, "latency.tbt_max.p99")
        lines.append(f"| {rate:g} | fcfs | {fg:.3f} | | {ft:.3f} | | {r.mean(f, 'latency.tpot.mean'):.4f} |")
        for size in CHUNK_SIZES:
            c = at(rate, **{"engine.batching": "chunked", "engine.chunk_size": size})
            ct, cg = r.mean(c, "latency.ttft.mean"), r.mean(c, "latency.tbt_max.p99")
            lines.append(
                f"| {rate:g} | chunked_prefill, chunk {size} | {cg:.3f} | {_pct(cg, fg)} | "
                f"{ct:.3f} | {_pct(ct, ft)} | {r.mean(c, 'latency.tpot.mean'):.4f} |"
            )
    return lines


def edf_variants(rate: float) -> list[tuple[str, dict]]:
    return [
        ("fcfs", at(rate, **{"engine.scheduler": "fcfs"})),
        ("edf", at(rate, **{"engine.scheduler": "edf", "engine.edf": {}})),
        ("edf + admission control", at(rate, **{"engine.scheduler": "edf"})),  # the config's block
    ]


def edf_points() -> list[dict]:
    return [p for rate in OVERLOAD_RATES for _, p in edf_variants(rate)]


def edf_table(r: Runner) -> list[str]:
    lines = [
        (
            "| rate (req/s) | policy | SLO attainment | goodput (req/s) | rejected | TTFT p99 (s) |"
            " TPOT mean (s) |"
        ),
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rate in OVERLOAD_RATES:
        for label, p in edf_variants(rate):
            rejected = r.mean(p, "requests.rejected") / r.mean(p, "requests.arrived")
            lines.append(
                f"| {rate:g} | {label} | {r.mean(p, 'slo.attainment'):.3f} | "
                f"{r.mean(p, 'slo.goodput_rps'):.2f} | {rejected:.1%} | "
                f"{r.mean(p, 'latency.ttft.p99'):.2f} | {r.mean(p, 'latency.tpot.mean'):.4f} |"
            )
    return lines


MIXES = [
    ("fcfs, whole prompts", {"engine.scheduler": "fcfs"}),
    ("srtf, whole prompts", {"engine.scheduler": "srtf"}),
    ("srtf, chunked", {"engine.scheduler": "srtf", "engine.batching": "chunked"}),
    ("fcfs, chunked", {"engine.scheduler": "fcfs", "engine.batching": "chunked"}),
]


def mix_points() -> list[dict]:
    return [at(rate, **LONG, **over) for rate in MIX_RATES for _, over in MIXES]


def mix_table(r: Runner) -> list[str]:
    lines = [
        "| rate (req/s) | order, batching | e2e mean (s) | vs fcfs | tbt_max p99 (s) | TTFT mean (s) |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for rate in MIX_RATES:
        base = r.mean(at(rate, **LONG, **MIXES[0][1]), "latency.e2e.mean")
        for label, over in MIXES:
            p = at(rate, **LONG, **over)
            e2e = r.mean(p, "latency.e2e.mean")
            lines.append(
                f"| {rate:g} | {label} | {e2e:.2f} | {_pct(e2e, base)} | "
                f"{r.mean(p, 'latency.tbt_max.p99'):.3f} | {r.mean(p, 'latency.ttft.mean'):.2f} |"
            )
    return lines


def _pct(new: float, old: float) -> str:
    return f"{(new - old) / old:+.1%}"


# -- main ---------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--backend", default="local", choices=["local", "ray"])
    parser.add_argument("--json", help="also write every run's summary here")
    args = parser.parse_args()
    os.chdir(ROOT)  # the config names its length file relative to the repository root
    seeds = [int(s) for s in args.seeds.split(",")]
    runner = Runner(seeds, args.workers, args.backend)
    wall0 = time.perf_counter()
    runner.run_all(srtf_points() + noise_points() + chunk_points() + edf_points() + mix_points())
    wall = time.perf_counter() - wall0

    print(f"# Scheduler comparison: {CONFIG.relative_to(ROOT)}")
    print(
        f"seeds {seeds}; {len(runner.results)} simulations in {wall:.0f} s on {args.workers} "
        f"worker(s); {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    sections = [
        ("1. SRTF (oracle) vs FCFS: mean end-to-end latency (5000 requests per run)", srtf_table),
        ("2. SRTF gain vs predictor quality (max_num_seqs 128, 5000 requests)", noise_table),
        ("3. Chunked prefill vs FCFS: longest inter-token gap and TTFT", chunk_table),
        ("4. EDF with admission control vs FCFS under overload", edf_table),
        ("5. Any order with any batching: SRTF + chunked (5000 requests per run)", mix_table),
    ]
    for title, table in sections:
        print(f"\n## {title}\n")
        print("\n".join(table(runner)))
    if args.json:
        Path(args.json).write_text(json.dumps(runner.results, indent=1, default=float))


if __name__ == "__main__":
    main()
