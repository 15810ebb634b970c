"""Engine speed: simulated requests per wall-second, steps per second, peak memory.

Fixed scenario (issue 2): Llama-3-8B on one H100, Poisson arrivals near saturation, lognormal
lengths with means 1000 prompt / 250 output, 20,000 requests. Each repetition runs in a fresh
process so peak RSS is that run's own. Usage: python benchmarks/bench_engine.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

SCENARIO = {
    "seed": 1,
    "model": "llama3-8b",
    "hardware": "h100-sxm",
    "engine": {"scheduler": "fcfs"},
    "workload": {
        "num_requests": 20000,
        "arrival": {"process": "poisson", "rate": 21.0},
        "lengths": {
            "prompt": {"dist": "lognormal", "mean": 1000, "sigma": 1.0, "max": 7000},
            "output": {"dist": "lognormal", "mean": 250, "sigma": 1.0, "max": 1000},
        },
    },
}


def one_run(overrides: dict) -> dict:
    import servesim

    t0 = time.perf_counter()
    result = servesim.simulate(SCENARIO, **overrides)
    wall = time.perf_counter() - t0
    s = result.summary
    return {
        "wall_s": wall,
        "engine_wall_s": s["sim"]["wall_s"],
        "requests": s["requests"]["arrived"],
        "completed": s["requests"]["completed"],
        "steps": s["sim"]["iterations"],
        "simulated_s": s["sim"]["simulated_s"],
        "ttft_p50": s["latency"]["ttft"]["p50"],
        "kv_peak": s["kv"]["peak_usage_frac"],
        "preemptions": s["kv"]["preemptions"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--set", action="append", default=[], help="KEY=VALUE override (YAML value)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in args.set)}
    if args.child:
        print(json.dumps(one_run(overrides)))
        return
    runs = []
    for _ in range(args.repeats):
        cmd = [sys.executable, __file__, "--child"] + [f"--set={a}" for a in args.set]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}; {args.repeats} runs, medians")
    print(f"requests {med['requests']:.0f} (completed {med['completed']:.0f}), "
          f"simulated {med['simulated_s']:.0f} s, steps {med['steps']:.0f}, "
          f"kv peak {med['kv_peak']:.2f}, preemptions {med['preemptions']:.0f}, "
          f"ttft p50 {med['ttft_p50']:.3f} s")
    print(f"total wall {med['wall_s']:.2f} s (engine loop {med['engine_wall_s']:.2f} s)")
    print(f"simulated requests per wall-second: {med['requests'] / med['wall_s']:.0f}")
    print(f"steps per wall-second: {med['steps'] / med['wall_s']:.0f}")
    print(f"peak memory (RSS): {med['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
