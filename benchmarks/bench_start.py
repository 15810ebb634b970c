"""Where a short `servesim run` spends its CPU before, during and after the simulation (issue 17).

Each repetition is a fresh process that does what `servesim run CONFIG --out DIR` does (OpenBLAS
single-threaded, the collector paused until the run, as the executable does), one stage at a time,
and records the CPU seconds (`time.process_time`) each stage took. Reported per stage: the minimum
over --repeats processes (the least disturbed by other jobs on the machine), and their sum.

Usage: python benchmarks/bench_start.py [--repeats 7] [--config CONFIG]
(default config: the `cli10` case of bench_vidur_scenario.py). `--imports N` prints instead the N
modules with the most self time (`-X importtime`, minimum over the repeats).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import gc, os, sys, time
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
gc.disable()
config_path, out = sys.argv[1:3]
stages, last = {}, time.process_time()
def mark(name):
    global last
    now = time.process_time()
    stages[name] = now - last
    last = now
import numpy, numpy.random
mark("numpy")
import yaml, simpy
mark("PyYAML, SimPy")
import pydantic
class First(pydantic.BaseModel):
    x: int = 0
First(x=1)
mark("pydantic import, then a first model")
import servesim.config
mark("config modules")
from servesim.cli import build_parser
argv = ["run", config_path, "--out", out]
args = build_parser(argv).parse_args(argv)
mark("command-line parser")
import servesim.build, servesim.simulation
mark("importing build and simulation")
from servesim.cli.common import load_from_args
config = load_from_args(args)
mark("validating the config")
built = servesim.build.build(config)
mark("building the run")
from servesim.cli import resume_collection
resume_collection()
result = servesim.simulation.run(built)
result.save(out)
mark("the run, then writing its files")
import json
print(json.dumps(stages))
"""


def stages(config: Path, repeats: int, folder: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    runs = []
    for i in range(repeats):
        out = folder / f"out{i}"
        done = subprocess.run([sys.executable, "-c", CHILD, str(config), str(out)],
                              capture_output=True, text=True, env=env, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    best = {name: min(r[name] for r in runs) for name in runs[0]}
    width = max(map(len, best))
    for name, seconds in best.items():
        print(f"{name:<{width}}  {seconds:.3f}")
    print(f"{'sum':<{width}}  {sum(best.values()):.3f}")


def imports(config: Path, repeats: int, folder: Path, top: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    best: dict[str, int] = {}
    for i in range(repeats):
        cmd = [sys.executable, "-X", "importtime", "-m", "servesim", "run", str(config),
               "--out", str(folder / f"out{i}")]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        for line in done.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own, _, name = line[len("import time:"):].split("|")
            name = name.strip()
            best[name] = min(best.get(name, 1 << 60), int(own))
    print(f"{len(best)} modules, {sum(best.values()) / 1e6:.3f} s self time (minima)")
    for name, us in sorted(best.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{us / 1e3:8.2f} ms  {name}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--config", type=Path, help="default: the cli10 case of bench_vidur_scenario.py")
    ap.add_argument("--imports", type=int, metavar="N", help="list the N slowest modules instead")
    args = ap.parse_args()
    compileall.compile_dir(ROOT / "src", quiet=1)  # as installed: modules load from bytecode
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.config is None:
            from bench_vidur_scenario import cli_config

            args.config = cli_config(folder)
        if args.imports:
            imports(args.config, args.repeats, folder, args.imports)
        else:
            stages(args.config, args.repeats, folder)


if __name__ == "__main__":
    main()
