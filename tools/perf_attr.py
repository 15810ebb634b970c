"""Charge `perf` samples of a compiled-core run to the innermost compiled (mypyc) function.

With the compiled core built in place (`SERVESIM_COMPILE=1 python setup.py build_ext --inplace`):

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=$PWD/src perf record -F 250 --call-graph dwarf,32768 \\
        -o /tmp/p.data python benchmarks/bench_run_cpu.py --requests 20000 --repeats 1
    perf script -i /tmp/p.data -F ip,sym,dso > /tmp/p.txt
    python tools/perf_attr.py /tmp/p.txt [TOP]

Prints, for the samples inside the instance loop, each compiled function's share and where its
samples' leaf frame was: `libpython` (generic object work the function triggers: attribute lookups
by name, boxed arithmetic, tuple unpacking), `numpy`, `compiled` (its own C code) or `(inlined)`.
A compiled function whose samples land in libpython is one whose types mypyc could not see.
"""

from __future__ import annotations

import collections
import re
import sys

LOOP = "run_process_Instance"  # the instance loop's generator: samples outside it are start-up and summary


def read_samples(path: str) -> list[list[tuple[str, str]]]:
    """`perf script -F ip,sym,dso` output as samples, each a list of (symbol, object) leaf first."""
    samples, frames = [], []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                if frames:
                    samples.append(frames)
                frames = []
            elif len(parts) >= 2:
                frames.append((" ".join(parts[1:-1]), parts[-1]))
    if frames:
        samples.append(frames)
    return samples


def leaf_kind(dso: str) -> str:
    known = (("servesim_compiled", "compiled"), ("multiarray", "numpy"), ("libpython", "libpython"))
    for needle, kind in known:
        if needle in dso:
            return kind
    return dso.rsplit("/", 1)[-1]


def main() -> None:
    samples = [s for s in read_samples(sys.argv[1]) if any(LOOP in sym for sym, _ in s)]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    share, kinds = collections.Counter(), collections.defaultdict(collections.Counter)
    for frames in samples:
        owner = next((re.sub(r"\+0x.*", "", sym) for sym, dso in frames if "servesim_compiled" in dso),
                     "<no compiled frame>")
        share[owner] += 1
        kinds[owner][leaf_kind(frames[0][1])] += 1
    print(f"{len(samples)} samples in the instance loop")
    for name, n in share.most_common(top):
        print(f"{100 * n / max(len(samples), 1):5.1f}% {name} {dict(kinds[name])}")


if __name__ == "__main__":
    main()
