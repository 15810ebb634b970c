"""How long pricing a step takes: microseconds per `step_time` and per `decode_step_times` call.

    PYTHONPATH=src python benchmarks/bench_costmodel.py [--repeats 7]

Median of several runs of a fixed, deterministic mix of step shapes (the engine's calls), per model.
`step_time` is timed on fresh shapes (mixed prefill + decode, cache misses included) and on repeated
pure-decode shapes (the cached path); `decode_step_times` on a 64-step run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

from servesim.catalog import get_hardware, get_model
from servesim.cost import RooflineCostModel, StepShape

CASES = [("llama3-8b", 1), ("llama3-70b", 4), ("mixtral-8x7b", 2), ("deepseek-v3", 8)]


def shapes(n: int, seed: int = 0) -> list[StepShape]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        chunks = [(int(c), int(p)) for c, p in zip(rng.integers(1, 2048, 2), rng.integers(0, 4096, 2))]
        dec = int(rng.integers(0, 256))
        out.append(StepShape(chunks[: int(rng.integers(1, 3))], dec, dec * int(rng.integers(100, 4000))))
    return out


def per_call_us(fn, calls: int, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) / calls * 1e6)
    return statistics.median(runs)


def bench(name: str, tp: int, hw, repeats: int) -> tuple[float, float, float]:
    mixed = shapes(2000)
    decode = [StepShape([], n, n * 1500) for n in (8, 32, 64, 128, 256)] * 400
    ctx = np.arange(64, dtype=np.float64) * 100 + 50_000
    warm = RooflineCostModel(get_model(name), hw, tp=tp)

    def run_mixed():
        cm = RooflineCostModel(get_model(name), hw, tp=tp)  # fresh: no cache hits
        for s in mixed:
            cm.step_time(s)

    def run_decode():
        for s in decode:
            warm.step_time(s)

    def run_vec():
        for n in range(1, 1001):
            warm.decode_step_times(n % 256 + 1, ctx)

    return (
        per_call_us(run_mixed, len(mixed), repeats),
        per_call_us(run_decode, len(decode), repeats),
        per_call_us(run_vec, 1000, repeats),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    hw = get_hardware("h200-sxm")
    machine = f"{platform.machine()} ({platform.processor() or 'cpu'})"
    print(f"python {platform.python_version()} on {machine}, median of {args.repeats} runs")
    cols = ("step_time mixed", "step_time decode", "decode_step_times(64)")
    print(f"{'model':14}{'tp':>3}{cols[0]:>17}{cols[1]:>18}{cols[2]:>23}")
    for name, tp in CASES:
        a, b, c = bench(name, tp, hw, args.repeats)
        print(f"{name:14}{tp:>3}{a:>14.1f} us{b:>15.2f} us{c:>20.1f} us")


if __name__ == "__main__":
    main()
