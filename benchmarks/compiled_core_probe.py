"""Does a compiled core pay? Cython or mypyc over the unchanged hot-path modules, timed against
pure Python.

Issue 17 item 5 allows an optional compiled core only if it pays. This probe measures it on the
tree it is given, without changing `src/servesim`: it copies the package to a build folder, compiles
the hot modules there with Cython in pure-Python mode (the `.py` files as they are; optionally with
augmenting `.pxd` declarations from `benchmarks/compiled_core/`) or with mypyc (the same `.py`
files, type-checked: annotated classes become native classes), and runs the `vidur20k` scenario
(`bench_vidur_scenario.scenario`, fewer requests) with the pure-Python tree and each compiled tree
in turn, each run in a fresh process. Reported per variant, median of --repeats runs: the CPU
seconds of the simulation alone (`time.process_time` around `simulation.run`, start-up and file
writing excluded), the speedup over pure Python, and whether summary.json (less `sim.wall_s`),
requests.csv, timeseries.csv and every step-log column are byte-identical to pure Python's.

Variants (--variants, comma-separated):
- `py`: the reference, `src/servesim` as it is;
- `hot`: the hot modules compiled with Cython's defaults (annotations type arguments: a `float`
  parameter becomes a C double, an `int` one must be exactly int);
- `hot_noann`: the same with `annotation_typing=False` (annotations ignored: Python semantics);
- `hot_simpy`: `hot_noann` plus SimPy's `core.py` and `events.py` (a copy of the installed SimPy);
- `hot_simpy_pxd`: `hot_simpy` plus the `.pxd` files under `benchmarks/compiled_core/`;
- `one:<module>` (or --per-module, all of them): one hot module alone, as in `hot_noann`;
- `mypyc`: the hot modules (less `schedulers/batching`, whose pydantic models mypyc cannot
  compile) plus `cost/work` and `core/step`, compiled together by mypyc into one extension;
- `mypyc:<module>+<module>` (paths under `servesim/`): those modules alone, compiled by mypyc.
Hot modules are the ones py-spy shows in the loop (HOT below). A module Cython rejects is left as
Python and named in the output. Each module's extension is cached under --build-dir by a hash of
its source, its `.pxd`, the directives and Cython's version: a module is compiled once for every
variant and run that needs it, and a second run of the probe on the same tree compiles nothing.

--examples also runs `tools/check_identical.py` (11 example configs: every scheduler family, swap,
disaggregation, prefix caching, power budget, routing) on the pure tree and on each compiled tree.

Usage: python benchmarks/compiled_core_probe.py [--requests 5000] [--repeats 3]
       [--variants py,hot,hot_noann,hot_simpy,hot_simpy_pxd,mypyc] [--examples]
Needs a C compiler and Cython (`pip install cython`) or mypy (`pip install mypy`, for mypyc); the
package itself needs neither.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PXD = Path(__file__).resolve().parent / "compiled_core"
HOT = (
    "servesim/engine/instance.py", "servesim/engine/decode_run.py", "servesim/engine/mixed_run.py",
    "servesim/core/cohort.py", "servesim/core/sums.py",
    "servesim/kv/manager.py", "servesim/schedulers/core.py", "servesim/schedulers/batching.py",
    "servesim/schedulers/chunk_runs.py", "servesim/cost/roofline.py", "servesim/cost/power.py",
    "servesim/engine/power.py", "servesim/metrics/steps.py", "servesim/metrics/gaps.py",
    "servesim/core/request.py",
)
SIMPY = ("simpy/core.py", "simpy/events.py")
MYPYC = tuple(m for m in HOT if m != "servesim/schedulers/batching.py") + (
    "servesim/cost/work.py", "servesim/core/step.py",
)
VARIANTS = {  # name: (modules, Cython directives, with .pxd files)
    "py": ((), {}, False),
    "hot": (HOT, {}, False),
    "hot_noann": (HOT, {"annotation_typing": False}, False),
    "hot_simpy": (HOT + SIMPY, {"annotation_typing": False}, False),
    "hot_simpy_pxd": (HOT + SIMPY, {"annotation_typing": False}, True),
}


def variant_spec(name: str) -> tuple[tuple[str, ...], dict, bool]:
    """A named variant, or `one:<module>` (that module alone, as in `hot_noann`)."""
    if name == "mypyc" or name.startswith("mypyc:"):
        return mypyc_modules(name), {}, False
    if name.startswith("one:") and name[4:] in HOT + SIMPY:
        return (name[4:],), {"annotation_typing": False}, False
    return VARIANTS[name]


def mypyc_modules(name: str) -> tuple[str, ...]:
    """`mypyc`: the MYPYC modules; `mypyc:a.py+b.py`: those (paths under `servesim/`)."""
    if name == "mypyc":
        return MYPYC
    return tuple(f"servesim/{m}" for m in name[len("mypyc:"):].split("+"))


def module_key(folder: Path, module: str, directives: dict) -> str:
    """What one module's extension depends on: its source, its .pxd, the directives, Cython and Python."""
    import Cython

    source = folder / module
    pxd = source.with_suffix(".pxd")
    settings = f"{module} {sorted(directives.items())} {Cython.__version__} {sys.version}"
    digest = hashlib.sha256(settings.encode())
    digest.update(source.read_bytes() + (pxd.read_bytes() if pxd.exists() else b""))
    return digest.hexdigest()[:20]


def build_tree(variant: str, cache: Path) -> tuple[Path, list[str]]:
    """The variant's package folder: a fresh copy of `src/servesim` (and SimPy), with each of the
    variant's modules' extension beside its .py (the extension is what Python imports). Extensions
    are cached by `module_key`, so an unchanged module is compiled once for all variants and runs.
    Returns the folder and the modules Cython rejected (they stay Python)."""
    if variant == "py":
        return ROOT / "src", []
    modules, directives, with_pxd = variant_spec(variant)
    folder = cache / variant.replace(":", "_").replace("/", "_")[:100]
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ROOT / "src" / "servesim", folder / "servesim",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    if variant.startswith("mypyc"):
        return folder, mypyc_build(folder, modules, cache)
    if any(m.startswith("simpy/") for m in modules):
        import simpy

        shutil.copytree(Path(simpy.__file__).parent, folder / "simpy",
                        ignore=shutil.ignore_patterns("__pycache__"))
    if with_pxd:
        for pxd in PXD.rglob("*.pxd"):
            target = folder / pxd.relative_to(PXD)
            if target.with_suffix(".py").exists():
                shutil.copy(pxd, target)
    rejected = []
    for module in modules:
        stored = cache / "extensions" / module_key(folder, module, directives)
        if not stored.exists():
            compile_module(folder, module, directives, stored)
        built = list(stored.glob("*.so")) + list(stored.glob("*.pyd"))
        if built:
            shutil.copy(built[0], (folder / module).parent)
        else:
            rejected.append(module)
    return folder, rejected


def mypyc_build(folder: Path, modules: tuple[str, ...], cache: Path) -> list[str]:
    """Compile `modules` together with mypyc (one shared extension plus a small one per module),
    cached by the whole package's source (mypy reads every module they import) and mypy's
    version. Returns the modules not compiled: all of them if mypyc refused (its message shown)."""
    import mypy.version

    digest = hashlib.sha256(f"{modules} {mypy.version.__version__} {sys.version}".encode())
    for path in sorted((folder / "servesim").rglob("*.py")):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    stored = cache / "extensions" / f"mypyc-{digest.hexdigest()[:20]}"
    if not stored.exists():
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mypyc", "--ignore-missing-imports", *modules],
                              cwd=folder, capture_output=True, text=True)
        if proc.returncode:
            lines = [ln for ln in (proc.stdout + proc.stderr).splitlines()
                     if not ln.startswith(("gcc", "creating", "copying", "building", "running"))]
            print("  mypyc refused, nothing compiled:\n" + "\n".join(lines[-20:]))
            return list(modules)
        for ext in [*folder.glob("*.so"), *(folder / m for m in modules)]:
            for built in ext.parent.glob(ext.stem.split(".")[0] + ".*.so"):
                target = stored / built.relative_to(folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(built, target)
        print(f"  mypyc: {len(modules)} modules compiled in {time.perf_counter() - t0:.0f} s", flush=True)
    for built in stored.rglob("*.so"):
        shutil.copy(built, folder / built.relative_to(stored))
    return []


def compile_module(folder: Path, module: str, directives: dict, stored: Path) -> None:
    """Cythonize one module in place and keep its extension in `stored` (nothing there if Cython
    rejects the module: its message is printed and kept beside it)."""
    flags = [f"-X{k}={v}" for k, v in directives.items()]
    cmd = [sys.executable, "-m", "Cython.Build.Cythonize", "-i", "-3", "-q", *flags, module]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    stored.mkdir(parents=True)
    if proc.returncode:
        (stored / "rejected.txt").write_text(proc.stdout + proc.stderr)
        print(f"  {module}: rejected by Cython, left as Python:\n{proc.stderr.strip()[-1500:]}")
        return
    source = folder / module
    for ext in source.parent.glob(source.stem + ".*"):
        if ext.suffix in (".so", ".pyd"):
            shutil.copy(ext, stored)
    print(f"  {module}: compiled in {time.perf_counter() - t0:.0f} s", flush=True)


def child(requests: int, out: Path) -> None:
    """One simulation in this process: print its CPU, its compiled modules and its output digests."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_vidur_scenario import scenario

    from servesim.build import build
    from servesim.config import load_config
    from servesim.simulation import run

    cfg = scenario(requests)
    cfg["output"] = {"requests_csv": True, "timeseries_csv": True}
    built = build(load_config(cfg))
    t0 = time.process_time()
    result = run(built)
    cpu = time.process_time() - t0
    result.save(out)
    compiled = sorted(name for name, mod in sys.modules.items()
                      if name.split(".")[0] in ("servesim", "simpy")
                      and str(getattr(mod, "__file__", "")).endswith((".so", ".pyd")))
    print(json.dumps({"cpu_s": cpu, "compiled": compiled, "digests": digests(result, out),
                      "steps": result.summary["sim"]["iterations"]}))


def digests(result, out: Path) -> dict[str, str]:
    summary = json.loads((out / "summary.json").read_text())
    summary["sim"].pop("wall_s")
    files = {"summary.json": json.dumps(summary, sort_keys=True).encode()}
    for name in ("requests.csv", "timeseries.csv"):
        files[name] = (out / name).read_bytes()
    steps = hashlib.sha256()
    for name in result.step_columns.columns:
        steps.update(name.encode() + result.step_columns[name].tobytes())
    found = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    return {**found, "step log": steps.hexdigest()}


def run_child(tree: Path, requests: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(tree), "OPENBLAS_NUM_THREADS": "1"}
        cmd = [sys.executable, __file__, "--child", tmp, "--requests", str(requests)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{tree}: the run failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def check_examples(trees: dict[str, Path]) -> None:
    """tools/check_identical.py's example cases on each compiled tree against the pure one."""
    script = ROOT / "tools" / "check_identical.py"
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "ref.json"
        for name, tree in trees.items():
            mode = ["--save", str(ref)] if name == "py" else ["--compare", str(ref)]
            proc = subprocess.run([sys.executable, str(script), *mode], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(tree)})
            if name != "py":
                print(f"examples, {name}: {(proc.stdout or proc.stderr).strip()[-800:]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--build-dir", type=Path, default=Path(tempfile.gettempdir()) / "servesim-cyprobe")
    ap.add_argument("--per-module", action="store_true", help="add `one:<module>` for every hot module")
    ap.add_argument("--examples", action="store_true", help="also run tools/check_identical.py")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.requests, args.child)
        return
    names = ["py", *(v for v in args.variants.split(",") if v != "py")]
    names += [f"one:{m}" for m in HOT + SIMPY] if args.per_module else []
    unknown = [v for v in names if v not in VARIANTS and v[4:] not in HOT + SIMPY
               and not v.startswith("mypyc")]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}, expected some of {list(VARIANTS)}")
    trees, rejected = {}, {}
    for name in names:
        print(f"build {name}", flush=True)
        trees[name], rejected[name] = build_tree(name, args.build_dir)
    runs = {name: [] for name in names}
    for _ in range(args.repeats):  # variants in turn, so load drifts hit them alike
        for name in names:
            runs[name].append(run_child(trees[name], args.requests))
    report(runs, rejected, args)
    if args.examples:
        check_examples(trees)


def report(runs: dict[str, list[dict]], rejected: dict[str, list[str]], args) -> None:
    one, five, _ = os.getloadavg()
    print(f"{args.requests} requests, {args.repeats} runs each, medians; python {sys.version.split()[0]}, "
          f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cpus")
    ref = runs["py"][0]
    base = statistics.median(r["cpu_s"] for r in runs["py"])
    print(f"{'variant':<40}{'cpu s':>8}{'range':>14}{'speedup':>9}  {'compiled':>8}  identical to py")
    for name, rs in runs.items():
        cpus = [r["cpu_s"] for r in rs]
        same = [k for k in ref["digests"] if all(r["digests"][k] == ref["digests"][k] for r in rs)]
        differ = [k for k in ref["digests"] if k not in same]
        verdict = "yes" if not differ else f"NO: {', '.join(differ)} differ"
        print(f"{name:<40}{statistics.median(cpus):>8.2f}{f'{min(cpus):.2f}-{max(cpus):.2f}':>14}"
              f"{base / statistics.median(cpus):>8.2f}x  {len(rs[0]['compiled']):>8}  {verdict}")
        if rejected.get(name):
            print(f"{'':<40}not compiled (rejected): {', '.join(rejected[name])}")


if __name__ == "__main__":
    main()
