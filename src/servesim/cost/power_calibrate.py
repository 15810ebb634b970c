"""Fit a power profile to measured board power over steady step loops, and report its error.

The measurements (`tools/measure_power.py`, data/measurements/h200-power/power.csv) hold, per loop, the
step's shape, its measured duration, the board's average power and its average SM clock. With the
step's FLOPs and bytes (`cost.work`) the board power is linear in the profile's fractions at a known
clock and voltage curve:

    P - idle = TDP · [ active · g(φ) + compute · v(φ)² · F / (T · peak) + memory · B / (T · BW) ]

`active_frac` comes from the launch-only loop (kernels that do nothing), `compute_frac` and
`memory_frac` from a non-negative least-squares fit of relative error over the model-step loops at
their measured clocks; `voltage_floor` is chosen on the clocks the board picked under its own power
limit. Micro loops other than the launch loop (a copy, a large GEMM) are reported, not fitted.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from servesim.catalog.specs import HardwareSpec, get_model
from servesim.core.errors import ConfigError, InputFileError
from servesim.core.files import read_text
from servesim.cost.base import StepShape
from servesim.cost.layout import Layout
from servesim.cost.power import PowerProfile, board_idle_w, board_watts
from servesim.cost.profile import CostProfile
from servesim.cost.work import WorkModel

MICRO_WORK = {
    "launch_floor": (0.0, 0.0),
    "copy_1gib": (0.0, 2.0 * 2**30),
    "gemm_8192": (2.0 * 8192**3, 3.0 * 8192**2 * 2),
}
"""FLOPs and HBM bytes of one replay of each micro loop (measure_power.py)."""
STEP_KINDS = ("prefill", "prefill_batch", "decode", "mixed")
REQUIRED = ("point", "kind", "step_ms", "power_w", "sm_clock_mhz")

@dataclass(frozen=True)
class PowerPoint:
    point: str
    kind: str
    watts: float
    clock_frac: float
    seconds: float = math.nan
    flops: float = 0.0
    hbm_bytes: float = 0.0
    shape: StepShape | None = None
    model: str = ""
    sleep_s: float = 0.0
    throttled: bool = False

    @property
    def is_step(self) -> bool:
        return self.kind in STEP_KINDS

def read_power_points(
    path: str | Path, hardware: HardwareSpec, cost_profile: CostProfile
) -> list[PowerPoint]:
    """Rows of a power measurement CSV with their work; a malformed row exits naming file and line."""
    p = Path(path)
    text = read_text(p, "power measurements")
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise InputFileError(p, f"missing column(s) {', '.join(missing)}", 1)
    max_clock = hardware.max_clock_mhz or math.nan
    points = []
    for line, row in enumerate(reader, start=2):
        try:
            points.append(_point(row, max_clock, hardware, cost_profile))
        except (ValueError, ConfigError) as exc:
            raise InputFileError(p, str(exc), line) from None
    return points

def _number(row: dict, key: str, default: float | None = None) -> float:
    raw = (row.get(key) or "").strip()
    if not raw:
        if default is None:
            raise ValueError(f"{key}: expected a number, got ''")
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{key}: expected a number, got {raw!r}") from None

def _point(row: dict, max_clock: float, hardware: HardwareSpec, cost_profile: CostProfile) -> PowerPoint:
    kind, name = row["kind"].strip(), row["point"].strip()
    watts = _number(row, "power_w")
    clock = _number(row, "sm_clock_mhz") / max_clock
    throttled = (row.get("throttle_reasons") or "0x0").strip() not in ("", "0x0")
    base = dict(point=name, kind=kind, watts=watts, clock_frac=clock, throttled=throttled)
    if kind == "idle":
        return PowerPoint(**base)
    seconds = _number(row, "step_ms") / 1e3
    sleep_s = _number(row, "sleep_ms", 0.0) / 1e3
    if kind == "micro":
        if name not in MICRO_WORK:
            raise ValueError(f"point: unknown micro loop {name!r}; known: {', '.join(MICRO_WORK)}")
        flops, nbytes = MICRO_WORK[name]
        return PowerPoint(**base, seconds=seconds, flops=flops, hbm_bytes=nbytes)
    if kind not in (*STEP_KINDS, "decode_duty"):
        kinds = ", ".join(("idle", "micro", "decode_duty", *STEP_KINDS))
        raise ValueError(f"kind: expected one of {kinds}, got {kind!r}")
    model = get_model(row["model"].strip(), "model")
    lens = [int(c) for c in (row.get("prefill_lens") or "").split("+") if c.strip()]
    prior = int(_number(row, "prior_ctx", 0))
    batch, ctx = int(_number(row, "decode_batch", 0)), int(_number(row, "decode_ctx", 0))
    shape = StepShape([(c, prior) for c in lens], batch, batch * ctx, len(lens) + batch)
    work = WorkModel(Layout(model), cost_profile).work(shape)
    # A duty-cycle row's step_ms includes the host's sleep; keep the step's own time for the model.
    return PowerPoint(**base, seconds=seconds - sleep_s, flops=work.flops, hbm_bytes=work.hbm_bytes,
                      shape=shape, model=model.name, sleep_s=sleep_s)

def fit_power_profile(
    points: list[PowerPoint], hardware: HardwareSpec, voltage_floor: float = 0.3,
    memory_clock_knee: float = 0.3, source: str = "", memory_core_share: float = 0.0,
) -> PowerProfile:
    """The profile's fractions from measured points (see the module doc)."""

    tdp = float(hardware.tdp_w)
    idle = _idle_w(points, hardware)
    start = PowerProfile(
        idle_frac=idle / tdp, active_frac=0.0, compute_frac=0.0, memory_frac=0.0,
        voltage_floor=voltage_floor, memory_clock_knee=memory_clock_knee,
        memory_core_share=memory_core_share,
    )
    launch = [p for p in points if p.point == "launch_floor"]
    active = max(0.0, (launch[0].watts - idle) / tdp / start.g(launch[0].clock_frac)) if launch else 0.0
    steps = [p for p in points if p.is_step]
    if len(steps) < 2:
        raise ConfigError("measurements", "need two or more model-step loops to fit compute and memory power")
    phi = np.array([p.clock_frac for p in steps])
    fu = np.array([p.flops / p.seconds for p in steps]) / hardware.peak_flops("bf16")
    bu = np.array([p.hbm_bytes / p.seconds for p in steps]) / hardware.hbm_bytes_per_s
    watts = np.array([p.watts for p in steps])
    y = watts - idle - tdp * active * start.g(phi)
    design = tdp * np.c_[start.v(phi) ** 2 * fu, start.byte_scale(phi) * bu]
    (compute, memory), _ = nnls(design / watts[:, None], y / watts)
    return replace(start, active_frac=active, compute_frac=float(compute), memory_frac=float(memory),
                   source=source)

def _idle_w(points: list[PowerPoint], hardware: HardwareSpec) -> float:
    idle = [p.watts for p in points if p.kind == "idle"]
    if idle:
        return float(np.mean(idle))
    if hardware.idle_w is None:
        raise ConfigError("measurements", "no idle row and no idle_w for the hardware")
    return float(hardware.idle_w)

def predicted_watts(profile: PowerProfile, hardware: HardwareSpec, point: PowerPoint,
                    seconds: float | None = None, clock: float | None = None) -> float:
    """Board power of a point at a clock (default: its measured one) and a step time (default: its
    measured one); a duty-cycle point averages the step with the idle sleep after it."""
    if point.kind == "idle":
        return board_idle_w(hardware, profile)
    t = point.seconds if seconds is None else seconds
    phi = point.clock_frac if clock is None else clock
    busy = float(board_watts(profile, hardware, phi, point.flops / t, point.hbm_bytes / t))
    if not point.sleep_s:
        return busy
    return (busy * t + board_idle_w(hardware, profile) * point.sleep_s) / (t + point.sleep_s)

def default_state(profile: PowerProfile, hardware: HardwareSpec, point: PowerPoint,
                  seconds: float) -> tuple[float, float]:
    """(watts, relative clock) the model predicts with no cap: φ = 1, or the clock at which the
    board's limit (TDP) is met when the step would draw more."""
    tdp = float(hardware.tdp_w)
    watts = predicted_watts(profile, hardware, point, seconds=seconds, clock=1.0)
    if watts <= tdp:
        return watts, 1.0
    lo, hi = 0.05, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if predicted_watts(profile, hardware, point, seconds=seconds, clock=mid) <= tdp:
            lo = mid
        else:
            hi = mid
    return tdp, lo
