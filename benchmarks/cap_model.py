"""The cap model against every published power-cap point: the error table of docs/energy.md §3.

    PYTHONPATH=src python benchmarks/cap_model.py [--points CSV] [--tolerance 15] [--profile YAML]

Reads data/measurements/published/cap_points.csv (sources in the README there), predicts each point's
latency ratio (and power ratio, where published) with the power model (`servesim.cost.cap_check`)
and prints one markdown table of the scored points (the setup the publication measured), one of the
points shown but not scored (with the reason in the README), and the error summaries per phase, per
source and for the held-out points (the `fit` rows chose the profile's core-rail byte share). Exit
code 1 when a scored latency or power ratio is off by more than --tolerance percent; 2 on a malformed
points file. A few seconds.
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
    print("| point | TP | phase | step | limit | reference | reference W/GPU (model) | model clock | "
          "model ratio | published | error | model power ratio | published | error |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        p = r.point
        step = f"{p.batch} x {p.prompt_tokens} tokens" if p.phase == "prompt" else \
            f"{p.batch} x {p.context} context"
        power = (f"{r.power_ratio:.2f} | {p.power_ratio:.2f} | {r.power_error_pct:+.1f}%"
                 + ("" if p.power_scored else " (not scored)") if p.power_ratio is not None else " | | ")
        print(f"| {p.point} | {p.tp} | {p.phase} | {step} | {_limit(p.cap_w, p.clock_mhz)} | "
              f"{_limit(p.base_cap_w, p.base_clock_mhz)} | {r.uncapped_w:.0f} | {r.clock_frac:.2f} | "
              f"{r.ratio:.2f} | {p.latency_ratio:.2f} | {r.error_pct:+.1f}% | {power} |")


def _limit(cap_w, clock_mhz) -> str:
    parts = ([f"{cap_w:.0f} W"] if cap_w else []) + ([f"{clock_mhz:.0f} MHz"] if clock_mhz else [])
    return ", ".join(parts) or "none"


def summary(rows, label: str) -> list[float]:
    """Error lines per phase, per source and for the held-out rows; returns the worst errors."""
    groups = [(f"{label} {phase}", [r for r in rows if r.point.phase == phase])
              for phase in ("prompt", "token")]
    groups += [(f"{label} {source}", [r for r in rows if r.point.source == source])
               for source in sorted({r.point.source for r in rows})]
    groups.append((f"{label} held out (not fit)", [r for r in rows if r.point.split != "fit"]))
    worst = []
    for name, group in groups:
        if not group:
            continue
        errs = np.abs([r.error_pct for r in group])
        line = f"{name}: {len(errs)} points, latency MAPE {errs.mean():.1f}%, max {errs.max():.1f}%"
        with_power = [r for r in group if r.power_error_pct is not None]
        for held, what in ((True, "power"), (False, "power shown, not scored")):
            errs_w = np.abs([r.power_error_pct for r in with_power if r.point.power_scored == held])
            if len(errs_w):
                line += f"; {what}: MAPE {errs_w.mean():.1f}%, max {errs_w.max():.1f}% ({len(errs_w)} points)"
                if held:
                    worst.append(float(errs_w.max()))
        print(line)
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
        print(f"FAIL: a scored ratio is off by {max(worst):.1f}% (> {args.tolerance:g}%)")
        return 1
    print(f"all {len(scored)} scored points within {args.tolerance:g}% (latency and, where published, power)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
