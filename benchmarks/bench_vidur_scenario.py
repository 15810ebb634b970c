"""Speed and memory on Vidur's scenario and the scaling cases (issue 17).

Cases (each repetition a fresh process, so peak RSS is that run's own):
- `vidur20k`: Llama-2-7B on one H100, arXiv-summarization lengths, Poisson 3 req/s, chunked prefill
  with a 512-token budget, at most 128 running, 20,000 requests (the scenario Vidur was timed on);
- `one100k`, `one1m`: the same with 100,000 and 1,000,000 requests on one instance;
- `fleet64`: 64 instances, 320,000 requests, least_loaded routing, 192 req/s; `fleet64s` the same
  with 20,000 requests (a scaled-down fleet: ~13 s CPU instead of ~3 minutes);
- `cli10`: `servesim run` of a 10-request config, the whole command (start-up included).

Reported per case, median of --repeats runs: wall and CPU seconds of the child process (user +
system, from the parent's getrusage), its peak RSS (ru_maxrss of the child) and the engine's step
cycles (`sim.iterations` is simulated steps; cycles the plan/price/sleep/apply cycles the loop
made, counted by the `after_step` hook, which the engine calls once per cycle).
The machine's own speed is printed before and after the cases as `probe`: CPU seconds of a fixed
workload without servesim (`probe_workload`, median of 3 fresh processes), so figures taken on
different machines, or in a shared VM's fast and slow spells, can be compared.
Usage: python benchmarks/bench_vidur_scenario.py [--cases vidur20k,cli10] [--repeats 3]

The package's bytecode is compiled first (`compileall`, as `pip install` does), so start-up is
measured as an installed servesim starts, not with every module compiled from source (~0.2 s CPU).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# (the harness's own modules, argparse, subprocess and the like, are imported where the parent uses
# them: a case's child process imports only what a run needs, so its figures are servesim's)

ROOT = Path(__file__).resolve().parent.parent
ARXIV = ROOT / "traces/arxiv-summarization/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"


def scenario(num_requests: int, rate: float = 3.0, instances: int = 1, router: str = "round_robin"):
    return {
        "seed": 1,
        "model": "llama2-7b",
        "hardware": "h100-sxm",
        "cluster": {"instances": instances, "router": router},
        "engine": {"scheduler": "chunked_prefill", "chunk_size": 512, "max_num_seqs": 128},
        "workload": {
            "num_requests": num_requests,
            "arrival": {"process": "poisson", "rate": rate},
            "lengths": {"empirical": str(ARXIV)},
        },
        "output": {"requests_csv": False, "timeseries_csv": False},
    }


CASES = {
    "vidur20k": scenario(20_000),
    "one100k": scenario(100_000),
    "one1m": scenario(1_000_000),
    "fleet64": scenario(320_000, rate=192.0, instances=64, router="least_loaded"),
    "fleet64s": scenario(20_000, rate=192.0, instances=64, router="least_loaded"),  # for profiling
    "cli10": None,  # the command line, see cli_config()
}


def cli_config(folder: Path) -> Path:
    cfg = scenario(10)
    cfg["output"] = {}
    path = folder / "cli10.json"  # YAML is a superset of JSON
    path.write_text(json.dumps(cfg))
    return path


def child(case: str) -> None:
    """Run one simulation in this process and print its engine counts as one JSON line."""
    from servesim.build import build
    from servesim.config import load_config
    from servesim.simulation import run

    cycles = [0]

    def count(_instance) -> None:  # called once per cycle (a step, or a run of steps)
        cycles[0] += 1

    result = run(build(load_config(CASES[case])), after_step=count)
    sim = result.summary["sim"]
    print(json.dumps({
        "iterations": sim["iterations"],
        "records": cycles[0],
        "completed": result.summary["requests"]["completed"],
        "ttft_p50": result.summary["latency"]["ttft"]["p50"],
    }))


def probe_workload() -> None:
    """A fixed CPU workload of what the engine's loop is made of (a heap of event tuples, objects'
    attributes, lists, floats, small numpy calls), without servesim: its time is the machine's
    speed, for comparing figures taken on different machines or in different spells of one
    (a shared VM's speed drifts; every case's figures scale with it)."""
    import heapq
    import random

    import numpy as np

    class Item:
        __slots__ = ("at", "count")

        def __init__(self, at: float):
            self.at, self.count = at, 0

    rng = random.Random(0)
    queue: list = []
    items = [Item(rng.random()) for _ in range(128)]
    ends: list[float] = []
    for i in range(300_000):
        item = items[i & 127]
        item.at += rng.random()
        item.count += 1
        heapq.heappush(queue, (item.at, 1, i, item))
        if len(queue) > 96:
            heapq.heappop(queue)
        ends.append(item.at * 0.5 + 1.0)
        if len(ends) >= 64:
            np.add.accumulate(np.asarray(ends))
            ends.clear()


def measure(cmd: list[str]) -> tuple[dict, str]:
    """Run `cmd` as a child: its wall, CPU (user + system) and peak RSS, from wait4's rusage."""
    import subprocess
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err.read()}")
        figures = {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                   "peak_rss_mib": usage.ru_maxrss / 1024}
        return figures, out.read()


def run_case(case: str, repeats: int, folder: Path) -> dict:
    import statistics

    runs = []
    for _ in range(repeats):
        if case == "cli10":
            cmd = [sys.executable, "-m", "servesim", "run", str(cli_config(folder)),
                   "--out", str(folder / "cli10-out")]
        else:
            cmd = [sys.executable, __file__, "--child", case]
        figures, out = measure(cmd)
        if case != "cli10":
            figures.update(json.loads(out.strip().splitlines()[-1]))
        runs.append(figures)
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def machine_probe(repeats: int = 3) -> float:
    """CPU seconds of `probe_workload` in a fresh process, median of `repeats`."""
    import statistics

    return statistics.median(measure([sys.executable, __file__, "--probe"])[0]["cpu_s"]
                             for _ in range(repeats))


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cpus"


def main() -> None:
    import argparse
    import compileall
    import platform
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="cli10,vidur20k", help=f"comma-separated, of {','.join(CASES)}")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"--cases: unknown {unknown}, expected some of {list(CASES)}")
    compileall.compile_dir(ROOT / "src", quiet=1)  # as installed: modules load from bytecode
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"{args.repeats} runs per case, medians; before: {load_note()}, probe {machine_probe():.3f} s")
    print(f"{'case':<10}{'wall s':>9}{'cpu s':>9}{'rss MiB':>9}{'steps':>10}{'cycles':>9}{'done':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            m = run_case(case, args.repeats, Path(tmp))
            print(f"{case:<10}{m['wall_s']:>9.2f}{m['cpu_s']:>9.2f}{m['peak_rss_mib']:>9.0f}"
                  f"{m.get('iterations', 0):>10.0f}{m.get('records', 0):>9.0f}{m.get('completed', 0):>9.0f}",
                  flush=True)
    print(f"after: {load_note()}, probe {machine_probe():.3f} s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"] and len(sys.argv) == 3:  # a case's run, without the harness
        child(sys.argv[2])
    elif sys.argv[1:] == ["--probe"]:
        probe_workload()
    else:
        main()
