"""The calibration workflow: one profile fitted to whatever measurements there are.

Used by `servesim costmodel calibrate` and by `tools/fit_profiles.py` (the shipped profiles). Data:
- isolated iterations (`IterationData`) and operator timings (`GemmData`): the GPU layer;
- collective timings (`AllReduceData`): fitted last, on the communication terms alone;
- an engine run's step log (`EngineRunInput`): the engine layer (host model, graph capture, the
  decode-attention behaviour) together with the GPU efficiencies one run can identify.
Everything in one stage is one Levenberg-Marquardt fit (cost/calibrate.py), so a parameter that one
source cannot see is pinned by another instead of being extrapolated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from servesim.catalog.specs import HardwareSpec, ModelSpec
from servesim.cost.calibrate import Dataset, fit
from servesim.cost.host import EngineProfile
from servesim.cost.profile import DECODE_ATTENTION, DEFAULT_FIT, CostProfile
from servesim.enginerun.fit import (
    EngineStepData,
    StepFeatures,
    graph_sizes_from_log,
    host_start,
    sample,
)
from servesim.enginerun.folder import EngineRun

COMM_PARAMS = ("comm_bw_eff", "comm_latency_s")
ENGINE_RUN_PARAMS = (
    "gemm_compute_eff",
    "gemm_memory_eff",
    "attn_prefill_eff",
    "attn_decode_memory_eff",
    "attn_decode_blocks_per_core",
    "step_overhead_s",
)
"""GPU parameters one engine run identifies: its steps are whole iterations of one model at a few
shapes, so tile padding, latencies and elementwise passes stay as isolated kernels measured them."""
SCREEN_PARAMS = (
    "gemm_memory_eff",
    "attn_prefill_eff",
    "attn_decode_memory_eff",
    "attn_decode_blocks_per_core",
)
"""Fitted for each decode-attention behaviour before choosing one: the terms the behaviours trade."""


@dataclass
class EngineRunInput:
    run: EngineRun
    model: ModelSpec
    hardware: HardwareSpec
    tp: int = 1
    decode_attention: str | None = None
    """The engine's decode-attention behaviour; None: the one that fits the steps best."""
    graph_batch_sizes: tuple[int, ...] | None = None
    """Captured CUDA-graph batch sizes; None: from the log's `decode_bucket` column."""
    max_num_seqs: int = 256
    """The engine's largest batch: graph sizes seen in the log extend up to it."""
    prefill_attention: str | None = None
    """How the run's engine called prefill attention (`cost.prefill_attention` of its engine.yaml);
    None: the start profile's. It decides the `chunks` feature the host terms are fitted on."""


@dataclass
class Calibration:
    profile: CostProfile
    fitted: list[str]
    extras: dict[str, float]
    screening: dict[str, float] = field(default_factory=dict)
    """Engine runs: RMS log error of each decode-attention behaviour in the screening fit."""


def calibrate(
    start: CostProfile,
    *,
    iterations: Dataset | None = None,
    micro: Sequence[Dataset] = (),
    comm: Sequence[Dataset] = (),
    engine: EngineRunInput | None = None,
    params: Sequence[str] | None = None,
    prior_weight: float = 1e-3,
) -> Calibration:
    """Fit `start` to the data: everything but the collectives in one fit (`params`, default: what
    the data can identify), then the collective terms on the collective timings."""
    datasets = [d for d in (iterations, *micro) if d is not None]
    screening: dict[str, float] = {}
    host_names: list[str] = []
    solved: list[str] = []  # host terms solved from the timing columns, kept as they are
    if engine is not None:
        start, data, host_names, solved, screening = _engine_setup(start, engine)
        datasets.append(data)
    names = list(params) if params is not None else _default_params(iterations, micro, engine)
    if comm:
        names = [p for p in names if p not in COMM_PARAMS]  # the collectives come from their own data
    fitted: list[str] = []
    extras: dict[str, float] = {}
    profile = start
    if datasets:
        tolerance = 1e-6 if engine is not None else 1e-10
        core = fit(datasets, start, names + host_names, prior_weight=prior_weight, tolerance=tolerance)
        profile, fitted, extras = core.profile, core.fitted + solved, core.extras
    if comm:
        stage = fit(list(comm), profile, COMM_PARAMS)
        profile, fitted = stage.profile, fitted + stage.fitted
    measured_prefix = iterations is not None and any(r.prior_ctx for r in iterations.rows)
    if engine is not None and not _has_prefix_chunks(engine) and not measured_prefix:
        # No chunk after cached context in the data: keep the start's prefix/fresh attention ratio.
        ratio = start.attn_prefix_eff / start.attn_prefill_eff
        profile = profile.with_values(attn_prefix_eff=profile.attn_prefill_eff * ratio)
    return Calibration(profile, fitted, extras, screening)


def _default_params(iterations, micro, engine) -> list[str]:
    if iterations is None and not micro and engine is not None:
        names = list(ENGINE_RUN_PARAMS)
        if _has_prefix_chunks(engine):
            names.append("attn_prefix_eff")
        return names
    return list(DEFAULT_FIT)


def _has_prefix_chunks(engine: EngineRunInput) -> bool:
    return any(p for s in engine.run.steps.shapes for _, p in s.prefill_chunks)


def _engine_setup(start: CostProfile, engine: EngineRunInput):
    """The engine layer's starting point: graph sizes, host terms from the timing columns, and the
    decode-attention behaviour (given, or the best of a quick fit of each)."""
    steps = engine.run.steps
    sizes = engine.graph_batch_sizes
    if sizes is None:
        sizes = graph_sizes_from_log(steps.decode_bucket, engine.max_num_seqs)
    attention = engine.prefill_attention or start.engine.prefill_attention
    profile = replace(start, engine=EngineProfile(tuple(sizes), prefill_attention=attention))
    features = StepFeatures(steps, sample(steps), profile.engine)
    host, refine = host_start(features)
    profile = profile.with_values(**{f"host.{k}": v for k, v in host.items()})
    data = EngineStepData(features, engine.model, engine.hardware, engine.tp)
    screening = {}
    if engine.decode_attention is None:
        for mode in DECODE_ATTENTION:
            trial = profile.with_values(decode_attention=mode)
            screening[mode] = fit([data], trial, SCREEN_PARAMS, max_iterations=15).rms_log_error
        mode = min(screening, key=screening.get)
    else:
        mode = engine.decode_attention
    profile = profile.with_values(decode_attention=mode)
    solved = [f"host.{k}" for k in host if k not in refine]
    return profile, data, [f"host.{k}" for k in refine], solved, screening

