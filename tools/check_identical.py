"""Check that a change leaves results byte-identical: run the example configs, hash their outputs.

`python tools/check_identical.py --save ref.json` before a change, `--compare ref.json` after it:
summary.json (less `sim.wall_s` and `sim.events`, the engine's own work), requests.csv and
timeseries.csv of every case must hash the same.
Cases cover the schedulers, routers, disaggregation, prefix caching and energy; long runs are cut to
a few hundred requests so the check takes a minute. Exit 1 and one line per difference if any.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHORT = {"workload.num_requests": 400}
CASES = {
    "quickstart": ("configs/quickstart.yaml", {}),
    "sharegpt_poisson": ("configs/sharegpt_poisson.yaml", {}),
    "disagg_arxiv": ("configs/cluster_disagg_arxiv.yaml", SHORT),
    "colocated_least_loaded": ("configs/cluster_disagg_arxiv.yaml", {
        **SHORT, "cluster.disaggregation": None, "cluster.instances": 4, "cluster.router": "least_loaded",
        "engine.scheduler": "chunked_prefill"}),
    "multiclass_sessions": ("configs/multiclass_sessions.yaml", {}),
    "power_budget": ("configs/energy/power_budget.yaml", {"workload.num_requests": 300}),
    "srtf": ("configs/sched_sharegpt.yaml", {**SHORT, "engine.scheduler": "srtf"}),
    "edf": ("configs/sched_sharegpt.yaml", {**SHORT, "engine.scheduler": "edf"}),
    "chunked": ("configs/sched_sharegpt.yaml", {**SHORT, "engine.scheduler": "chunked_prefill"}),
    "swap": ("configs/quickstart.yaml", {"engine.preemption": "swap", "engine.kv_capacity_tokens": 20000}),
    "prefix": ("configs/cluster_mooncake_prefix.yaml", {"max_sim_time_s": 20}),
}


def digests(name: str, folder: Path) -> dict[str, str]:
    import servesim

    path, overrides = CASES[name]
    result = servesim.simulate(ROOT / path, **overrides)
    out = result.save(folder / name)
    summary = json.loads((out / "summary.json").read_text())
    summary["sim"].pop("wall_s")
    summary["sim"].pop("events")  # the engine's SimPy events: fewer when steps run as one event
    hashes = {"summary.json": json.dumps(summary, sort_keys=True)}
    for csv in ("requests.csv", "timeseries.csv"):
        if (out / csv).exists():
            hashes[csv] = (out / csv).read_bytes()
    return {
        k: hashlib.sha256(v if isinstance(v, bytes) else v.encode()).hexdigest() for k, v in hashes.items()
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", type=Path)
    mode.add_argument("--compare", type=Path)
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        now = {name: digests(name, Path(tmp)) for name in args.cases.split(",")}
    if args.save:
        args.save.write_text(json.dumps(now, indent=1))
        return 0
    ref = json.loads(args.compare.read_text())
    diffs = [f"{case}: {file} differs" for case, files in now.items()
             for file, digest in files.items() if ref.get(case, {}).get(file) != digest]
    print("\n".join(diffs) or f"identical: {len(now)} cases")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
