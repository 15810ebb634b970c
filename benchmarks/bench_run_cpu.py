"""In-process CPU seconds of `run()` alone on the vidur20k scenario (no start-up, no build).

On a shared machine whole-process figures move by 5-10% with the load; the simulation's own CPU,
the minimum of several runs in one process, is steadier, and is what a change to the engine's
hot path moves. Prints one JSON line: the minimum CPU seconds and the engine counts.

Usage: python benchmarks/bench_run_cpu.py [--requests 5000] [--instances 1] [--repeats 3] [--case fleet64s]
(`--instances K`: K such instances, 3 req/s each, `least_loaded` routing where K > 1.)
(`--case`: a case of bench_vidur_scenario.py instead; for fleets run `--repeats 1` in fresh
processes: cost models share caches across builds in one process, `cost/shared_cache.py`.)
For a count that does not depend on the load at all, run it under cachegrind twice, with
--repeats 1 and --repeats 2, and subtract (the second run's instructions; OpenBLAS single-threaded,
or its idle threads' spinning moves the count by ~1% from one run to the next):
OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=0 setarch -R valgrind --tool=cachegrind --cache-sim=no \\
    --cachegrind-out-file=/dev/null python benchmarks/bench_run_cpu.py --requests 1000 --repeats 2
The second run finds the linear-layer caches that cost models share warm; a fresh process (as
bench_vidur_scenario.py runs each case) does not.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vidur_scenario import CASES, scenario  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--case", choices=[c for c in CASES if c != "cli10"])
    args = ap.parse_args()
    from servesim.build import build
    from servesim.config import load_config
    from servesim.simulation import run

    best, cycles = float("inf"), [0]

    def count(_instance) -> None:
        cycles[0] += 1

    for _ in range(args.repeats):
        built = build(load_config(CASES[args.case] if args.case else _scenario(args)))
        gc.collect()
        cycles[0] = 0
        t0 = time.process_time()
        result = run(built, after_step=count)
        best = min(best, time.process_time() - t0)
    case = args.case or f"vidur scenario, {args.requests} requests, {args.instances} instance(s)"
    print(json.dumps({"case": case, "cpu_s": round(best, 3),
                      "steps": result.summary["sim"]["iterations"], "cycles": cycles[0]}))


def _scenario(args) -> dict:
    k = args.instances
    router = "least_loaded" if k > 1 else "round_robin"
    return scenario(args.requests, rate=3.0 * k, instances=k, router=router)


if __name__ == "__main__":
    main()
