"""Fit a `CostProfile` to measured iterations, and report how well a profile predicts them.

The fit minimises the squared log ratio of predicted to measured time over all rows (relative error,
so a 5 ms decode counts as much as a 500 ms prefill) with a damped Gauss-Newton (Levenberg-Marquardt)
in log-parameter space, which keeps every parameter positive. A weak pull towards the starting profile
keeps parameters that the rows cannot see (say, communication when no row includes it) where they were.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from servesim.catalog.specs import HardwareSpec, get_hardware, get_model
from servesim.core.errors import InputFileError
from servesim.cost.measurements import Measurement
from servesim.cost.profile import DEFAULT_FIT, CostProfile
from servesim.cost.roofline import RooflineCostModel

BOUNDS = {
    "gemm_compute_eff": (0.05, 1.0),
    "gemm_memory_eff": (0.05, 1.0),
    "attn_prefill_eff": (0.02, 1.0),
    "attn_prefix_eff": (0.02, 1.0),
    "attn_decode_memory_eff": (0.05, 1.0),
    "elementwise_memory_eff": (0.05, 1.0),
    "comm_bw_eff": (0.05, 1.0),
    "gemm_pad_rows": (1e-3, 1e5),
    "attn_prefill_pad_tokens": (1e-3, 1e5),
    "attn_decode_blocks_per_core": (1e-3, 16.0),
    "elementwise_hidden_passes": (1e-3, 200.0),
    "elementwise_mlp_passes": (1e-3, 200.0),
    "elementwise_kernels_per_layer": (1e-3, 200.0),
    "moe_route_passes": (1e-3, 100.0),
    "moe_kernels_per_expert": (1e-3, 100.0),
    "kernel_overhead_s": (1e-9, 1e-3),
    "gemm_latency_s": (1e-9, 1e-3),
    "step_overhead_s": (1e-8, 0.1),
    "comm_latency_s": (1e-8, 1e-2),
}
"""Physical ranges: efficiencies are fractions of the spec sheet, overheads seconds."""


def resolve_hardware(rows: Sequence[Measurement], hardware: str | None, path: str) -> list[HardwareSpec]:
    """The device of every row: `--hardware` for all, else the row's `gpu` column via the catalog."""
    if hardware is not None:
        spec = get_hardware(hardware, key="--hardware")
        return [spec] * len(rows)
    specs, cache = [], {}
    for r in rows:
        if r.hardware is None:
            raise InputFileError(path, f"gpu: unknown device {r.gpu!r}; pass --hardware NAME", r.line)
        if r.hardware not in cache:
            cache[r.hardware] = get_hardware(r.hardware)
        specs.append(cache[r.hardware])
    return specs


def predict(
    rows: Sequence[Measurement],
    hardware: Sequence[HardwareSpec],
    profile: CostProfile,
    expert_parallel: bool = False,
) -> np.ndarray:
    """Predicted seconds per row (the collective terms only where the row includes them)."""
    models: dict[tuple, RooflineCostModel] = {}
    out = np.empty(len(rows))
    for i, (r, hw) in enumerate(zip(rows, hardware)):
        moe = r.moe_kernels or profile.moe_kernels  # priced as the row's MoE layers ran
        key = (r.model, r.tp, r.includes_comm, hw.name, moe)
        cm = models.get(key)
        if cm is None:
            cm = RooflineCostModel(
                get_model(r.model),
                hw,
                tp=r.tp,
                expert_parallel=expert_parallel,
                profile=profile if moe == profile.moe_kernels else profile.with_values(moe_kernels=moe),
                include_comm=r.includes_comm,
            )
            models[key] = cm
        out[i] = cm.step_time(r.shape(cm.model.sliding_window))
    return out


@dataclass
class ErrorReport:
    rows: int
    mape: float
    p90_ape: float
    max_ape: float
    worst: list[dict]
    by_kind: dict[str, dict]
    """{"<model> <kind>": {rows, mape, max_ape}} plus per-kind totals."""

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "mape": self.mape,
            "p90_ape": self.p90_ape,
            "max_ape": self.max_ape,
            "worst": self.worst,
            "by_kind": self.by_kind,
        }


def error_report(rows: Sequence[Measurement], predicted: np.ndarray, worst: int = 5) -> ErrorReport:
    measured = np.array([r.seconds for r in rows])
    ape = np.abs(predicted / measured - 1.0) * 100.0
    order = np.argsort(-ape, kind="stable")[:worst]
    worst_rows = [
        {
            "line": rows[i].line,
            "row": rows[i].label,
            "measured_ms": round(float(measured[i]) * 1e3, 4),
            "predicted_ms": round(float(predicted[i]) * 1e3, 4),
            "error_pct": round(float((predicted[i] / measured[i] - 1) * 100), 2),
        }
        for i in order
    ]
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(f"{r.model} tp{r.tp} {r.kind}", []).append(i)
        groups.setdefault(f"all {r.kind}", []).append(i)
    by_kind = {
        key: {"rows": len(ix), "mape": float(ape[ix].mean()), "max_ape": float(ape[ix].max())}
        for key, ix in sorted(groups.items())
    }
    return ErrorReport(
        rows=len(rows),
        mape=float(ape.mean()),
        p90_ape=float(np.percentile(ape, 90)),
        max_ape=float(ape.max()),
        worst=worst_rows,
        by_kind=by_kind,
    )


@dataclass
class FitResult:
    profile: CostProfile
    fitted: list[str]
    extras: dict[str, float]
    iterations: int
    rms_log_error: float


class Dataset:
    """Something to fit against: log(predicted/measured) per row, given a profile and nuisances.

    `extras` are nuisance parameters of the data source (say, the timing overhead of an isolated GEMM
    benchmark) fitted alongside the profile but not part of it. `weight` scales the residuals.
    """

    extras: dict[str, float] = {}
    weight: float = 1.0
    robust_scale: float = 0.0
    """If > 0, residuals beyond about this size count linearly, not quadratically (soft-L1 loss):
    noisy third-party tables then cannot drag the fit."""

    def weighted(self, profile: CostProfile, extras: dict[str, float]) -> np.ndarray:
        r = self.residuals(profile, extras)
        d = self.robust_scale
        if d > 0:
            z = (r / d) ** 2
            r = np.sign(r) * d * np.sqrt(2.0 * (np.sqrt(1.0 + z) - 1.0))
        return self.weight * r

    def residuals(self, profile: CostProfile, extras: dict[str, float]) -> np.ndarray:
        raise NotImplementedError


class IterationData(Dataset):
    def __init__(self, rows, hardware, expert_parallel=False, weight=1.0):
        self.rows, self.hardware, self.expert_parallel = rows, hardware, expert_parallel
        self.log_measured = np.log([r.seconds for r in rows])
        self.weight = weight

    def residuals(self, profile, extras):
        pred = predict(self.rows, self.hardware, profile, self.expert_parallel)
        return np.log(pred) - self.log_measured


def fit(
    datasets: Sequence[Dataset],
    start: CostProfile,
    parameters: Sequence[str] | None = None,
    prior_weight: float = 1e-3,
    max_iterations: int = 200,
    tolerance: float = 1e-10,
) -> FitResult:
    """Levenberg-Marquardt on log-parameters over the weighted residuals of all datasets.

    Profile parameters whose start value is 0 (a disabled feature) are not fitted; every dataset's
    nuisance parameters are. The fit stops when an iteration improves the cost by less than
    `tolerance` (relative).
    """
    names = [p for p in (parameters or DEFAULT_FIT) if start.value(p) > 0]
    extras0 = {k: v for d in datasets for k, v in d.extras.items()}
    all_names = names + list(extras0)
    bounds = [BOUNDS.get(p, (1e-9, 1.0)) for p in all_names]
    lo, hi = np.log([b[0] for b in bounds]), np.log([b[1] for b in bounds])
    start_values = [start.value(p) for p in names] + list(extras0.values())
    x0 = np.clip(np.log(start_values), lo, hi)
    w = math.sqrt(prior_weight)
    n_profile = len(names)

    def unpack(x):
        values = np.exp(x)
        profile = start.with_values(**{p: float(v) for p, v in zip(names, values)})
        return profile, dict(zip(extras0, map(float, values[n_profile:])))

    def data_residuals(x):
        profile, extras = unpack(x)
        return np.concatenate([d.weighted(profile, extras) for d in datasets])

    def full(x):
        return np.concatenate([data_residuals(x), w * (x - x0)])

    x, r = x0.copy(), full(x0)
    cost, lam, iterations = float(r @ r), 1e-2, 0
    while iterations < max_iterations:
        iterations += 1
        jac = np.empty((len(r), len(x)))
        for j in range(len(x)):
            step = 1e-4 * max(1.0, abs(x[j]))
            xj = x.copy()
            xj[j] += step
            jac[:, j] = (full(xj) - r) / step
        g, a = jac.T @ r, jac.T @ jac
        improved = False
        while lam < 1e10:
            delta = np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-12), -g)
            x_new = np.clip(x + delta, lo, hi)
            r_new = full(x_new)
            c_new = float(r_new @ r_new)
            if c_new < cost:
                improved = cost - c_new > tolerance * cost
                x, r, cost, lam = x_new, r_new, c_new, max(lam / 3, 1e-9)
                break
            lam *= 4
        if not improved:
            break
    profile, extras = unpack(x)
    data = data_residuals(x)
    return FitResult(profile, names, extras, iterations, float(np.sqrt(np.mean(data**2))))
