"""Regenerate the example figures in docs/figures/ from configs/quickstart.yaml.

    python docs/make_figures.py            # about half a minute on a laptop core

Each figure comes from the public API (servesim.simulate and servesim.studies), so this script
doubles as an example of using it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import servesim
from servesim.studies import plan_sweep, plots, run_sweep

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "quickstart.yaml"
OUT = ROOT / "docs" / "figures"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    small = {"workload.num_requests": 400}

    runs = {
        f"max_num_seqs={n}": servesim.simulate(CONFIG, **small, **{
            "engine.max_num_seqs": n, "workload.arrival.rate": 12.0})
        for n in (256, 32)
    }
    first = next(iter(runs.values()))
    slo = {"ttft": first.config.slo.ttft_s, "tpot": first.config.slo.tpot_s}
    save(plots.latency_cdfs(runs, slo=slo), "latency_cdfs.png")

    plan = plan_sweep(
        CONFIG,
        {"workload.arrival.rate": [4, 8, 16, 24, 32, 40, 48], "engine.max_num_seqs": [32, 256]},
        seeds=3,
        overrides=small,
    )
    with tempfile.TemporaryDirectory() as tmp:
        sweep = run_sweep(plan, tmp, progress=False)
    save(plots.attainment_vs_rate(sweep, hue="engine.max_num_seqs", target=0.9),
         "attainment_vs_rate.png")
    save(plots.latency_vs_throughput(sweep, hue="engine.max_num_seqs"), "latency_vs_throughput.png")

    busy = servesim.simulate(CONFIG, **small, **{"cluster.instances": 2, "workload.arrival.rate": 20.0})
    save(plots.instance_timeline(busy), "instance_timeline.png")
    save(plots.cost_breakdown(busy.config), "cost_breakdown.png")
    return 0


def save(fig, name: str) -> None:
    path = OUT / name
    fig.savefig(path, dpi=100)
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
