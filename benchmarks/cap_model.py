"""The cap model against every published power-cap point: the error table of docs/energy.md §3.

    PYTHONPATH=src python benchmarks/cap_model.py [--points CSV] [--tolerance 15] [--profile YAML]

Reads data/measurements/published/cap_points.csv (sources in the README there), predicts each point's
latency ratio with the power model (`servesim.cost.cap_check`) and prints one markdown table of the
scored points (the setup the publication measured), one of the points shown but not scored (with the
reason in the README), and the error summary per phase. Exit code 1 when a scored point is off by
more than --tolerance percent; 2 on a malformed points file. A few seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from servesim.core.errors import ServesimError
from servesim.cost.cap_check import compare, read_cap_points

ROOT = Path(__file__).resolve().parents[1]
POINTS = ROOT / "data" / "measurements" / "published" / "cap_points.csv"


def table(rows, title: str) -> None:
    print(f"\n{title}\n")
    print("| point | TP | phase | step | cap W/GPU | uncapped W/GPU (model) | model clock | model ratio | "
          "published | error |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        p = r.point
        step = f"{p.batch} x {p.prompt_tokens} tokens" if p.phase == "prompt" else \
            f"{p.batch} x {p.context} context"
        limit = f"{p.cap_w:.0f}" if p.cap_w else f"{p.clock_mhz:.0f} MHz"
        print(f"| {p.point} | {p.tp} | {p.phase} | {step} | {limit} | {r.uncapped_w:.0f} | "
              f"{r.clock_frac:.2f} | {r.ratio:.2f} | {p.latency_ratio:.2f} | {r.error_pct:+.1f}% |")


def summary(rows, label: str) -> list[float]:
    worst = []
    for phase in ("prompt", "token"):
        errs = np.abs([r.error_pct for r in rows if r.point.phase == phase])
        if len(errs):
            print(f"{label} {phase}: {len(errs)} points, MAPE {errs.mean():.1f}%, max {errs.max():.1f}%")
            worst.append(float(errs.max()))
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default=str(POINTS), help="published points CSV")
    ap.add_argument("--tolerance", type=float, default=15.0,
                    help="largest error allowed on a scored point, %%")
    ap.add_argument("--profile", default=None, help="power profile YAML (default: the family's shipped one)")
    args = ap.parse_args()
    try:
        rows = compare(read_cap_points(args.points), args.profile)
    except ServesimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scored = [r for r in rows if r.point.scored]
    shown = [r for r in rows if not r.point.scored]
    table(scored, "Scored points (the publication's own setup)")
    if shown:
        table(shown, "Shown, not scored (see data/measurements/published/README.md)")
    print()
    worst = summary(scored, "scored")
    summary(shown, "not scored")
    if worst and max(worst) > args.tolerance:
        print(f"FAIL: a scored point is off by {max(worst):.1f}% (> {args.tolerance:g}%)")
        return 1
    print(f"all {len(scored)} scored points within {args.tolerance:g}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
