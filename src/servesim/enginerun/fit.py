"""Fitting a profile to an engine's step log: GPU efficiencies and the host model together.

Each step is priced as `serial + max(gpu, enqueue + tail)` (cost/host.py). What the log holds decides
what each step is compared with:
- `gpu_ms`: the device span (launch to last kernel, host-bound waits included) against
  `max(gpu, enqueue + tail)`, and the rest of the step plus the loop's gap to the next step against
  `serial`;
- `host_enqueue_ms`: the host's launch time against `enqueue`;
- neither: the step's wall time plus the gap against the whole.
Host terms with a timing column are solved by non-negative least squares on it (a coefficient it leaves
at zero stays out of the model); the GPU parameters, each mode's tail and any host term without a column
are then fitted together on the step times.
"""

from __future__ import annotations

import numpy as np

from servesim.catalog.specs import HardwareSpec, ModelSpec
from servesim.cost.calibrate import Dataset
from servesim.cost.host import FEATURES, MODES, EngineProfile
from servesim.cost.profile import FIT_PARAMETERS, CostProfile
from servesim.cost.roofline import RooflineCostModel
from servesim.enginerun.steps import EngineSteps

MAX_STEPS_PER_KIND = 800
"""Steps of one kind used in a fit (evenly spaced over the run): plenty, and keeps a fit to seconds."""
BUSY_GAP_S = 0.005
"""A gap to the next step longer than this means the engine went idle: not loop time."""


def sample(steps: EngineSteps, max_per_kind: int = MAX_STEPS_PER_KIND) -> np.ndarray:
    """Indices of an evenly spaced subset of each step kind."""
    keep = []
    for kind in np.unique(steps.kind):
        idx = np.flatnonzero(steps.kind == kind)
        if len(idx) > max_per_kind:
            idx = idx[np.linspace(0, len(idx) - 1, max_per_kind).round().astype(int)]
        keep.append(idx)
    return np.sort(np.concatenate(keep))


def graph_sizes_from_log(bucket: np.ndarray | None, max_num_seqs: int) -> tuple[int, ...]:
    """Captured batch sizes seen in a `decode_bucket` column; powers of two continue up to the
    engine's `max_num_seqs` (a run at low load never shows its large graphs)."""
    if bucket is None:
        return ()
    seen = sorted({int(b) for b in bucket if b > 0})
    if not seen:
        return ()
    if all(b & (b - 1) == 0 for b in seen):
        sizes, top = [1], max(seen[-1], max_num_seqs)
        while sizes[-1] < top:
            sizes.append(2 * sizes[-1])
        return tuple(sizes)
    return tuple(seen)


class StepFeatures:
    """What the host model and the targets need of the sampled steps, as arrays."""

    def __init__(self, steps: EngineSteps, idx: np.ndarray, engine: EngineProfile):
        self.shapes = [steps.shapes[i] for i in idx]
        self.seqs = np.array([len(s.prefill_chunks) + s.num_decodes for s in self.shapes], float)
        self.chunks = np.array([engine.attention_calls(len(s.prefill_chunks)) for s in self.shapes], float)
        self.tokens = np.array([s.num_tokens for s in self.shapes], float)
        self.kv = np.array([s.kv_tokens for s in self.shapes], float)
        self.graph = np.array(
            [not s.prefill_chunks and bool(engine.graph_batch(s.num_decodes)) for s in self.shapes]
        )
        gap = steps.gap_s[idx]
        self.gap = np.where(np.isfinite(gap) & (gap < BUSY_GAP_S), gap, np.nan)
        self.wall = steps.wall_s[idx]
        self.gpu = steps.gpu_s[idx] if steps.gpu_s is not None else None
        self.enqueue = steps.enqueue_s[idx] if steps.enqueue_s is not None else None

    def matrix(self, mask: np.ndarray) -> np.ndarray:
        cols = {"const": np.ones(len(self.seqs)), "seqs": self.seqs, "chunks": self.chunks}
        cols.update(tokens=self.tokens, kv_tokens=self.kv)
        return np.column_stack([cols[f][mask] for f in FEATURES])

    def serial_target(self) -> np.ndarray | None:
        """Host time outside the device span: the step's own rest plus the loop gap after it."""
        if self.gpu is None:
            return None
        return np.clip(self.wall - self.gpu, 0.0, None) + self.gap

    def modes(self):
        for mode in MODES:
            mask = self.graph if mode == "graph" else ~self.graph
            if mask.any():
                yield mode, mask


DEFAULT_HOST_S = {"graph": (1e-4, 1e-4), "eager": (2e-4, 1e-3)}
"""(serial, enqueue) seconds a host term starts from when the log has no column to measure it."""


def host_start(features: StepFeatures) -> tuple[dict[str, float], list[str]]:
    """Host coefficients to start from, and those the fit refines.

    A part with a timing column (serial: `gpu_ms` against the wall time; enqueue:
    `host_enqueue_ms`) is solved by non-negative least squares on it, per mode, and kept. A part
    without one starts as a constant and is fitted with the GPU terms, as is each mode's tail."""
    host: dict[str, float] = {}
    refine: list[str] = []
    targets = {"serial": features.serial_target(), "enqueue": features.enqueue}
    for mode, mask in features.modes():
        x = features.matrix(mask)
        for i, (part, y) in enumerate(targets.items()):
            ok = np.isfinite(y[mask]) if y is not None else np.zeros(mask.sum(), bool)
            if ok.sum() >= len(FEATURES):
                cols = identifiable(x[ok])
                coef = nonnegative_lstsq(x[ok][:, cols], y[mask][ok])
                host.update({f"{mode}.{part}.{FEATURES[j]}": float(c) for j, c in zip(cols, coef) if c > 0})
            else:
                host[f"{mode}.{part}.const"] = DEFAULT_HOST_S[mode][i]
                refine.append(f"{mode}.{part}.const")
        host[f"{mode}.tail"] = _tail(features, mask)
        refine.append(f"{mode}.tail")
    return host, refine


def _tail(features: StepFeatures, mask: np.ndarray) -> float:
    """GPU time left after the last launch of host-bound steps: device span minus enqueue time."""
    if features.enqueue is not None and features.gpu is not None:
        bound = mask & (features.gpu < features.enqueue * 1.25)
        if bound.sum() >= 3:
            tail = float(np.median(features.gpu[bound] - features.enqueue[bound]))
            if tail > 0:
                return tail
    return 1e-4


PREFERENCE = ("const", "chunks", "seqs", "tokens", "kv_tokens")
"""When the run cannot tell two features apart (equal columns: every eager step of an FCFS run has as
many sequences as chunks), the host time is put on the one listed first: per-chunk launches cost
milliseconds in eager engines, per-sequence bookkeeping microseconds."""


def identifiable(x: np.ndarray) -> list[int]:
    """Feature columns that vary independently in the data, in `FEATURES` order."""
    keep: list[int] = []
    for name in PREFERENCE:
        j = FEATURES.index(name)
        col = x[:, j]
        if not col.any() or (name != "const" and np.ptp(col) == 0):
            continue
        if any(np.allclose(col, x[:, k]) for k in keep):
            continue
        keep.append(j)
    return sorted(keep)


def nonnegative_lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """min |x c - y| with c >= 0: drop the most negative coefficient until none is left."""
    active = list(range(x.shape[1]))
    coef = np.zeros(x.shape[1])
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    while active:
        sol, *_ = np.linalg.lstsq(x[:, active] / scale[active], y, rcond=None)
        if (sol >= 0).all():
            coef[active] = sol / scale[active]
            break
        active.pop(int(np.argmin(sol)))
    return coef


class EngineStepData(Dataset):
    """Residuals of a profile (GPU and host layers) against an engine's sampled steps: the device
    span if the log has `gpu_ms`, else the wall time plus the loop gap."""

    def __init__(self, features: StepFeatures, model: ModelSpec, hardware: HardwareSpec, tp: int = 1):
        self.f, self.model, self.hardware, self.tp = features, model, hardware, tp
        self.extras = {}
        self._gpu_key, self._gpu = None, None
        gap = features.gap
        loop = np.nanmedian(gap) if np.isfinite(gap).any() else 0.0
        self.loop = np.nan_to_num(gap, nan=loop)

    def gpu_times(self, profile: CostProfile) -> np.ndarray:
        """GPU seconds of the sampled steps; cached on the GPU layer, so that varying a host
        coefficient does not price the steps again."""
        key = tuple(profile.value(p) for p in FIT_PARAMETERS) + (profile.decode_attention,)
        key += (profile.engine.graph_batch_sizes,)
        if key != self._gpu_key:
            cm = RooflineCostModel(self.model, self.hardware, tp=self.tp, profile=profile)
            self._gpu = np.array([cm.gpu_time(s) for s in self.f.shapes])
            self._gpu_key = key
        return self._gpu

    def predict(self, profile: CostProfile) -> dict[str, np.ndarray]:
        """Per sampled step: gpu (kernels alone), serial, enqueue, device and wall seconds."""
        f = self.f
        gpu = self.gpu_times(profile)
        serial, enqueue, tail = np.zeros(len(gpu)), np.zeros(len(gpu)), np.zeros(len(gpu))
        for mode, mask in f.modes():
            content = (f.seqs[mask], f.chunks[mask], f.tokens[mask], f.kv[mask])
            s, e, t = profile.engine.host_times(mode, *content)
            serial[mask], enqueue[mask], tail[mask] = s, e, t
        device = np.maximum(gpu, enqueue + tail)
        return {"gpu": gpu, "serial": serial, "enqueue": enqueue, "device": device, "wall": serial + device}

    def residuals(self, profile, extras):
        p, f = self.predict(profile), self.f
        if f.gpu is not None:
            return np.log(p["device"] / f.gpu)
        return np.log(p["wall"] / (f.wall + self.loop))
