"""Operator-level measurements: isolated GEMM timings and all-reduce timings.

They pin the linear-layer and communication terms of the roofline over many more shapes than whole
iterations can. Files (CSV, one measurement a row):
- GEMMs: `gpu, M, K, N, ms` (more columns allowed): an (M x K) @ (K x N) product in 16-bit precision.
- All-reduce: `gpu, num_workers, bytes, ms`: one all-reduce of `bytes` over `num_workers` devices.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from servesim.catalog.specs import HardwareSpec, get_hardware, hardware_by_alias
from servesim.core.errors import InputFileError
from servesim.core.files import open_text
from servesim.cost.calibrate import Dataset
from servesim.cost.collectives import collective_latency
from servesim.cost.datatypes import tensor_flops
from servesim.cost.profile import CostProfile


def _read_numeric(path: str | Path, columns: tuple[str, ...], hardware: str | None):
    """(hardware spec, {column: array}, line numbers) of a CSV whose `columns` are positive numbers."""
    p = Path(path)
    handle = open_text(p, "measurements")
    values = {c: [] for c in columns}
    lines, device = [], None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("gpu", *columns) if c not in (reader.fieldnames or [])]
        if missing:
            raise InputFileError(p, f"missing column(s) {', '.join(missing)}", 1)
        for raw in reader:
            line = reader.line_num
            for c in columns:
                try:
                    v = float(raw[c])
                except (TypeError, ValueError):
                    raise InputFileError(p, f"{c}: expected a number, got {raw[c]!r}", line) from None
                if not v > 0 or v == float("inf"):
                    raise InputFileError(p, f"{c}: must be positive, got {raw[c]!r}", line)
                values[c].append(v)
            if hardware is None:
                name = hardware_by_alias((raw["gpu"] or "").strip())
                if name is None:
                    raise InputFileError(p, f"gpu: unknown device {raw['gpu']!r}; pass --hardware", line)
                if device not in (None, name):
                    raise InputFileError(p, f"gpu: {name} in a file of {device} rows", line)
                device = name
            lines.append(line)
    if not lines:
        raise InputFileError(p, "no rows")
    spec = get_hardware(hardware if hardware is not None else device, key="--hardware")
    return spec, {c: np.array(v) for c, v in values.items()}, np.array(lines)


class GemmData(Dataset):
    """Isolated GEMM timings. Each such benchmark pays a fixed timing overhead of its own (graph or
    eager launch, events) beyond the in-step kernel overhead: the nuisance `<name>_standalone_s`."""

    def __init__(self, path, hardware: str | None = None, name: str = "gemm", weight: float = 1.0):
        self.hardware, cols, self.lines = _read_numeric(path, ("M", "K", "N", "ms"), hardware)
        self.m, self.k, self.n = cols["M"], cols["K"], cols["N"]
        self.log_measured = np.log(cols["ms"] / 1e3)
        self.key = f"{name}_standalone_s"
        self.extras = {self.key: 5e-6}
        self.weight = weight

    def predict(self, profile: CostProfile, standalone_s: float = 0.0) -> np.ndarray:
        return gemm_seconds(self.hardware, profile, self.m, self.k, self.n) + standalone_s

    def residuals(self, profile, extras):
        return np.log(self.predict(profile, extras.get(self.key, 0.0))) - self.log_measured


def gemm_seconds(hw: HardwareSpec, profile: CostProfile, m, k, n, dtype_bytes: float = 2.0):
    """The roofline's GEMM term for 16-bit (M x K) @ (K x N), vectorised (same form as the model)."""
    peak = tensor_flops(hw, "bf16") * profile.gemm_compute_eff
    bw = hw.hbm_bytes_per_s * profile.gemm_memory_eff
    compute = 2.0 * k * n * (m + profile.gemm_pad_rows) / peak
    memory = (k * n + m * (k + n)) * dtype_bytes / bw
    return np.maximum(compute, memory) + profile.kernel_overhead_s + profile.gemm_latency_s


class AllReduceData(Dataset):
    def __init__(self, path, hardware: str | None = None, weight: float = 1.0):
        self.hardware, cols, self.lines = _read_numeric(path, ("num_workers", "bytes", "ms"), hardware)
        self.workers, self.bytes = cols["num_workers"], cols["bytes"]
        self.log_measured = np.log(cols["ms"] / 1e3)
        self.extras = {}
        self.weight = weight

    def predict(self, profile: CostProfile) -> np.ndarray:
        return all_reduce_seconds(self.hardware, profile, self.bytes, self.workers)

    def residuals(self, profile, extras):
        return np.log(self.predict(profile)) - self.log_measured


def all_reduce_seconds(hw: HardwareSpec, profile: CostProfile, nbytes, workers):
    """Ring all-reduce, alpha-beta: latency (library + 2 (p - 1) link hops) + 2 (p - 1) / p x bytes /
    (link x efficiency), exactly as the roofline prices one."""
    link = hw.group_link_bytes_per_s(workers) * profile.comm_bw_eff
    alpha = collective_latency(profile, hw, "all_reduce", workers)
    return alpha + 2.0 * (workers - 1) / workers * nbytes / link
