"""Figure: predicted against measured step time with the shipped profiles.

    PYTHONPATH=src python tools/plot_costmodel.py [--out docs/img/cost-model-validation.png]

Panels: the shared H100 iterations (the rows the Hopper profile was fitted on); the held-out H200 rows
(data/measurements/h200, other GPU, other models, MoE, a TP-4 shard; never fitted); Vidur's A100
linear-layer timings predicted from the A100 spec sheet with the Hopper profile (no A100 data used) and
with the Ampere profile. More measurement CSVs (say, from tools/profile_gpu.py) go in with --extra.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from servesim.cost.calibrate import predict, resolve_hardware  # noqa: E402
from servesim.cost.measurements import read_measurements  # noqa: E402
from servesim.cost.microbench import GemmData  # noqa: E402
from servesim.cost.profile import family_profile  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "measurements"
COLORS = {"prefill": "tab:blue", "prefill_batch": "tab:purple", "decode": "tab:orange", "mixed": "tab:green"}


def iterations_panel(ax, csv: Path, title: str, marker_by_model: dict) -> None:
    rows = read_measurements(csv)
    hws = resolve_hardware(rows, None, str(csv))
    pred = np.concatenate([predict([r], [h], family_profile(h.family)) for r, h in zip(rows, hws)])
    meas = np.array([r.seconds for r in rows])
    ape = np.abs(pred / meas - 1) * 100
    for r, p, m in zip(rows, pred, meas):
        marker = marker_by_model.setdefault(r.model, "osD^vP*X"[len(marker_by_model) % 8])
        ax.scatter(m * 1e3, p * 1e3, s=18, c=COLORS[r.kind], marker=marker, alpha=0.8, linewidths=0)
    lo, hi = meas.min() * 1e3 / 1.3, meas.max() * 1e3 * 1.3
    x = np.array([lo, hi])
    ax.plot(x, x, "k-", lw=0.8)
    ax.fill_between(x, x / 1.1, x * 1.1, color="grey", alpha=0.15, label="±10%")
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel="measured step time (ms)",
        ylabel="predicted (ms)",
    )
    ax.set_title(
        f"{title}\n{len(rows)} rows: MAPE {ape.mean():.1f}%, p90 {np.percentile(ape, 90):.1f}%, "
        f"max {ape.max():.1f}%",
        fontsize=9,
    )
    for kind, c in COLORS.items():
        ax.scatter([], [], c=c, label=kind, s=18)
    for model, mk in marker_by_model.items():
        ax.scatter([], [], c="k", marker=mk, label=model, s=18)
    ax.legend(fontsize=7, loc="upper left")


def gemm_panel(ax) -> None:
    data = GemmData(DATA / "vidur" / "a100_linear.csv", name="vidur")
    meas = np.exp(data.log_measured) * 1e3
    for family, color in (("hopper", "tab:red"), ("ampere", "tab:blue")):
        pred = data.predict(family_profile(family), 5e-6) * 1e3
        ape = np.abs(pred / meas - 1) * 100
        idx = np.arange(0, len(meas), 7)
        ax.scatter(
            meas[idx],
            pred[idx],
            s=4,
            alpha=0.35,
            c=color,
            linewidths=0,
            label=f"{family} profile: MAPE {ape.mean():.1f}%, p90 {np.percentile(ape, 90):.1f}%",
        )
    x = np.array([meas.min() / 1.3, meas.max() * 1.3])
    ax.plot(x, x, "k-", lw=0.8)
    ax.fill_between(x, x / 1.1, x * 1.1, color="grey", alpha=0.15)
    ax.set(xscale="log", yscale="log", xlabel="measured GEMM time (ms)", ylabel="predicted (ms)")
    ax.set_title(
        f"A100 linear layers (Vidur, {len(meas)} GEMMs, 8 models, TP 1-8)\n"
        "hopper: H100-fitted, from the A100 spec sheet alone",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", markerscale=3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "cost-model-validation.png"))
    ap.add_argument("--extra", action="append", default=[], metavar="CSV", help="more measurement CSVs")
    args = ap.parse_args()
    held_out = DATA / "h200" / "iterations.csv"
    extras = ([held_out] if held_out.exists() else []) + [Path(p) for p in args.extra]
    panels = 2 + len(extras)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 5.0))
    markers: dict = {}
    fitted = DATA / "h100" / "iterations.csv"
    iterations_panel(axes[0], fitted, "H100 (fitted on), shipped Hopper profile", markers)
    for ax, csv in zip(axes[1:], extras):
        label = "H200, held out" if csv == held_out else f"{csv.name}, held out"
        iterations_panel(ax, csv, f"{label}, shipped Hopper profile", markers)
    gemm_panel(axes[-1])
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
