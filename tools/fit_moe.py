"""Fit the fused-MoE parameters of the cost profile to measured MoE layers, and check them on whole
iterations that the fit never saw.

    python tools/fit_moe.py [--layers data/measurements/h200-moe/moe_layer.csv]
                            [--iterations data/measurements/h200-moe/iterations.csv]

Fits `moe_grouped_eff` and `moe_fused_kernels_per_layer` (the other parameters are the shipped Hopper
profile's) by least squares on log(predicted / measured) over the `fused` rows of moe_layer.csv; prints
the values, the layer errors for both implementations, and `costmodel validate`'s errors on the
iterations with the shipped profile and with the fitted values. DeepSeek-V3 layers were measured in
bf16, so they are priced as a bf16 variant of the catalog model.
"""

from __future__ import annotations

import argparse
import csv

import numpy as np
from scipy.optimize import least_squares

from servesim.catalog.specs import get_hardware, get_model
from servesim.cost import RooflineCostModel
from servesim.cost.calibrate import error_report, predict, resolve_hardware
from servesim.cost.measurements import read_measurements
from servesim.cost.profile import family_profile

FITTED = ("moe_grouped_eff", "moe_fused_kernels_per_layer")


def layer_seconds(model, hw, tp: int, tokens: int, profile) -> float:
    """One MoE layer as the harness runs it: router and shared-expert GEMMs, then the routed experts."""
    cm = RooflineCostModel(model, hw, tp=tp, profile=profile, include_comm=False)
    moe = cm.layout.moe
    compute, memory, dispatch, launch = cm._moe_parts(tokens)
    dense = sum(
        count * (max(row_s * (tokens + cm._pad), w_s + act_s * tokens) + cm._t_gemm)
        for row_s, w_s, act_s, _src, count, group in cm._gemms
        if group == "moe"
    )
    return (max(compute, memory) + dispatch + launch + dense) / moe.count


def measured_model(name: str):
    if name == "deepseek-v3":  # measured with bf16 weights and activations
        return get_model({"base": name, "weight_dtype": "bf16", "act_dtype": "bf16"})
    return get_model(name)


def layer_errors(rows, hw, profile) -> np.ndarray:
    out = []
    for r in rows:
        pred = layer_seconds(measured_model(r["model"]), hw, int(r["tp"]), int(r["tokens"]),
                             profile.with_values(moe_kernels=r["impl"]))
        out.append(np.log(pred / (float(r["ms"]) / 1e3)))
    return np.array(out)


def mape(log_err: np.ndarray) -> float:
    return float(np.mean(np.abs(np.exp(log_err) - 1)) * 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", default="data/measurements/h200-moe/moe_layer.csv")
    ap.add_argument("--iterations", default="data/measurements/h200-moe/iterations.csv")
    args = ap.parse_args()
    hw = get_hardware("h200-sxm")
    shipped = family_profile(hw.family)
    rows = list(csv.DictReader(open(args.layers, newline="")))
    fused = [r for r in rows if r["impl"] == "fused"]

    def residuals(x):
        return layer_errors(fused, hw, shipped.with_values(**dict(zip(FITTED, x))))

    fit = least_squares(residuals, x0=[1.0, 8.0], bounds=([0.05, 0.0], [1.0, 64.0]))
    fitted = shipped.with_values(**dict(zip(FITTED, fit.x)))
    print("fitted:", ", ".join(f"{k} {v:.4g}" for k, v in zip(FITTED, fit.x)))
    for impl in ("fused", "looped"):
        subset = [r for r in rows if r["impl"] == impl]
        before, after = mape(layer_errors(subset, hw, shipped)), mape(layer_errors(subset, hw, fitted))
        print(f"layers {impl:6} ({len(subset)} rows): MAPE shipped {before:.1f}%, fitted {after:.1f}%")
    meas = read_measurements(args.iterations)
    hws = resolve_hardware(meas, None, args.iterations)
    fused_rows = [m for m in meas if m.moe_kernels == "fused"]
    as_looped = [m.__class__(**{**m.__dict__, "moe_kernels": "looped"}) for m in fused_rows]
    rep = error_report(fused_rows, predict(as_looped, hws[: len(as_looped)], shipped))
    print(f"iterations fused  ({rep.rows} rows) priced as looped (the old default): MAPE {rep.mape:.1f}%, "
          f"max {rep.max_ape:.1f}%")
    for label, prof in (("shipped", shipped), ("fitted", fitted)):
        for impl in ("fused", "looped"):
            subset = [m for m in meas if m.moe_kernels == impl]
            rep = error_report(subset, predict(subset, hws[: len(subset)], prof))
            print(f"iterations {impl:6} ({rep.rows} rows), {label}: MAPE {rep.mape:.1f}%, "
                  f"max {rep.max_ape:.1f}%")


if __name__ == "__main__":
    main()
