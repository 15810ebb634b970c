"""Replay published throughput results in the simulator, and fit cost profiles to them.

A row (`servesim.cost.published`) becomes one simulation of one instance: all its requests arrive at
once (an offline run or an unbounded client), the engine batches them under the row's limits, and the
throughput is tokens over simulated seconds, times the number of instances. With every arrival at time
zero no scheduling decision depends on a step's duration, so the sequence of steps does not depend on
the cost profile: it is simulated once (`StepTrace`) and re-priced for any profile, which is what
makes fitting a profile to many rows cheap.

Pipeline parallelism: a `pp`-stage instance keeps `pp` micro-batches in flight (TensorRT-LLM), so it
is simulated as `pp` instances of its whole-model step, sharing its KV memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from servesim.build import build, kv_capacity_tokens
from servesim.catalog.specs import get_hardware, get_model
from servesim.config import load_config
from servesim.cost.base import StepShape
from servesim.cost.calibrate import Dataset
from servesim.cost.engines import apply_engine, resolve_engine
from servesim.cost.profile import CostProfile, family_profile
from servesim.cost.published import AUTO, PublishedRow, trtllm_bench_settings
from servesim.cost.roofline import RooflineCostModel
from servesim.simulation import run
from servesim.workload import RequestTable
from servesim.workload.readers import read_trace

ENGINE_DEFAULT_TOKENS = 8192
STATIC_RESERVE_TOKENS = 8192
"""Static batches prefill every prompt in one step; activation memory is reserved as for this many
tokens (engines prefill such batches layer by layer, not all activations at once)."""
NVIDIA_FAMILIES = ("ampere", "hopper", "ada", "blackwell")


@dataclass
class StepTrace:
    """The steps one simulated instance ran for a row: mixed steps one by one, pure-decode runs grouped
    by batch size (their cost is linear in the context sum, so a run prices in one vectorised call)."""

    mixed: list[StepShape] = field(default_factory=list)
    decode_runs: dict[int, list[tuple[np.ndarray, np.ndarray | None]]] = field(default_factory=dict)
    """Per batch size, the (context sums, longest contexts) of each run of decode steps."""
    tokens: float = 0.0
    """Tokens the row's metric counts (output, or input + output) for one simulated instance."""
    scale: int = 1
    """Simulated instances the row stands for (instances x pipeline micro-batches)."""

    def seconds(self, cost_model) -> float:
        total = sum(cost_model.step_time(shape) for shape in self.mixed)
        for n, runs in self.decode_runs.items():
            ctx = np.concatenate([c for c, _ in runs])
            longest = None if any(m is None for _, m in runs) else np.concatenate([m for _, m in runs])
            total += float(cost_model.decode_step_times(n, ctx, longest).sum())
        return total

    @property
    def num_steps(self) -> int:
        return len(self.mixed) + sum(sum(len(c) for c, _ in runs) for runs in self.decode_runs.values())


class _Recorder:
    """Wraps the instance's cost model and keeps every shape it prices."""

    def __init__(self, inner, trace: StepTrace):
        self.inner, self.trace = inner, trace

    def step_time(self, shape: StepShape) -> float:
        self.trace.mixed.append(replace(shape, prefill_chunks=list(shape.prefill_chunks)))
        return self.inner.step_time(shape)

    def decode_step_times(self, num_decodes: int, ctx_sums, max_ctxs=None) -> np.ndarray:
        longest = None if max_ctxs is None else np.array(max_ctxs, dtype=np.float64)
        run = (np.array(ctx_sums, dtype=np.float64), longest)
        self.trace.decode_runs.setdefault(num_decodes, []).append(run)
        return self.inner.decode_step_times(num_decodes, ctx_sums, max_ctxs)

    def breakdown(self, shape):
        return self.inner.breakdown(shape)


def row_lengths(row: PublishedRow) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and output lengths of every request of the benchmark (a length file cycles)."""
    if row.lengths is None:
        n = row.num_requests
        return np.full(n, row.input_len), np.full(n, row.output_len)
    table = read_trace(row.lengths, "lengths").table
    index = np.arange(row.num_requests) % len(table)
    return table.prompt_tokens[index], table.output_tokens[index]


def engine_limits(row: PublishedRow, prompts: np.ndarray, outputs: np.ndarray) -> tuple[int, int]:
    """(max sequences, token budget per step) of one simulated instance."""
    if row.mode == "static":
        return int(row.batch), int(row.batch * prompts.max())
    batch, tokens = row.batch, row.max_tokens or engine_default_tokens(row)
    if AUTO in (batch, tokens):
        auto_batch, auto_tokens = trtllm_bench_settings(row, float(prompts.mean()), float(outputs.mean()))
        batch = auto_batch if batch == AUTO else batch
        tokens = auto_tokens if tokens == AUTO else tokens
    return int(batch), int(tokens)


def engine_default_tokens(row: PublishedRow) -> int:
    """The step token budget of the row's engine when the row does not state one."""
    if not row.engine:
        return ENGINE_DEFAULT_TOKENS
    return int(resolve_engine(row.engine).batching.get("max_num_batched_tokens", ENGINE_DEFAULT_TOKENS))


def whole_prompts(row: PublishedRow) -> bool:
    """Whether the row's engine prefills whole prompts in steps of their own: static batches, and
    continuous batching under an engine whose profile turns chunked prefill off (vLLM's V0 engine)."""
    if row.mode == "static":
        return True
    return bool(row.engine) and resolve_engine(row.engine).batching.get("chunked_prefill") is False


def row_config(row: PublishedRow, batch: int, tokens: int):
    """The simulator config of one simulated instance of the row."""
    static = row.mode == "static"
    data = {
        "model": {"base": row.model, "weight_dtype": row.weight_dtype, "act_dtype": row.act_dtype,
                  "kv_dtype": row.kv_dtype},
        "hardware": row.device,
        "cluster": {"instances": 1, "tp": row.tp, "pp": row.pp},
        "engine": {
            "scheduler": "fcfs" if whole_prompts(row) else "chunked_prefill",
            "max_num_seqs": batch,
            "max_num_batched_tokens": min(tokens, STATIC_RESERVE_TOKENS) if static else tokens,
            "chunk_size": tokens,
            "gpu_memory_utilization": row.memory_fraction,
        },
        "workload": {"num_requests": 1},
        "output": {"requests_csv": False, "timeseries_csv": False},
    }
    config = load_config(data)
    capacity = kv_capacity_tokens(config, get_model(config.model), get_hardware(row.device), row.tp, row.pp)
    data["engine"]["kv_capacity_tokens"] = max(1, capacity // row.pp)
    data["engine"]["max_num_batched_tokens"] = tokens
    return load_config(data)


def record_trace(row: PublishedRow) -> StepTrace:
    """Simulate one instance of the row and keep the shapes of all its steps."""
    prompts, outputs = row_lengths(row)
    batch, tokens = engine_limits(row, prompts, outputs)
    scale = row.instances * row.pp
    share = np.arange(len(prompts)) % scale == 0  # every scale-th request: one instance's share
    table = RequestTable(np.zeros(int(share.sum())), prompts[share], outputs[share])
    built = build(row_config(row, batch, tokens), table)
    trace = StepTrace(scale=scale)
    for part in built.parts:
        recorder = _Recorder(part.cost_model, trace)
        part.cost_model = recorder
        part.scheduler.cost_model = recorder
    result = run(built)
    executed = int(result.steps["num_steps"].sum())
    if executed != trace.num_steps:  # a decode run cut short would be priced in full
        raise RuntimeError(f"{row.id}: recorded {trace.num_steps} steps, the engine ran {executed}")
    trace.tokens = float(table.output_tokens.sum())
    if row.metric == "total":
        trace.tokens += float(table.prompt_tokens.sum())
    return trace


def row_profile(row: PublishedRow, profile: CostProfile) -> CostProfile:
    """The profile as this row's engine runs it (`cost/engines/`) on the row's host CPU and with its
    decode steps per scheduling, with the static KV cache length the row states."""
    profile = apply_engine(profile, row.engine or None, host_cpu=get_hardware(row.device).host_cpu,
                           scheduler_steps=row.scheduler_steps)
    if row.padded_cache:
        return profile.with_values(decode_attention="padded_cache", decode_padded_tokens=row.padded_cache)
    return profile


def predicted_throughput(row: PublishedRow, trace: StepTrace, profile: CostProfile) -> float:
    """Tokens per second of the whole row (all instances) under `profile`."""
    cost = RooflineCostModel(
        row.spec, get_hardware(row.device), tp=row.tp, pp=row.pp, profile=row_profile(row, profile)
    )
    return trace.scale * trace.tokens / trace.seconds(cost)


def tie_efficiencies(profile: CostProfile) -> CostProfile:
    """What end-to-end rows cannot tell apart moves together: chunks after cached context run the same
    kernels as fresh prompts in serving engines (as in the shipped Hopper profile), and weights and KV
    cache stream from the same HBM (one streaming efficiency, fitted as the decode attention's)."""
    return profile.with_values(
        attn_prefix_eff=profile.attn_prefill_eff, gemm_memory_eff=profile.attn_decode_memory_eff
    )


def family_of(row: PublishedRow) -> str:
    return get_hardware(row.device).family


class ThroughputData(Dataset):
    """Published rows as a calibration dataset: log(predicted / measured tokens per second)."""

    def __init__(self, rows: list[PublishedRow], traces: list[StepTrace] | None = None, weight=1.0):
        self.rows = rows
        self.traces = traces if traces is not None else [record_trace(r) for r in rows]
        self.log_measured = np.log([r.tokens_per_s for r in rows])
        self.weight = weight

    def predict(self, profile: CostProfile) -> np.ndarray:
        profile = tie_efficiencies(profile)
        return np.array([predicted_throughput(r, t, profile) for r, t in zip(self.rows, self.traces)])

    def residuals(self, profile, extras):
        # More tokens per second means less time: the sign follows the time residuals of the fit.
        return self.log_measured - np.log(self.predict(profile))


def default_profiles(rows: list[PublishedRow]) -> dict[str, CostProfile]:
    return {f: family_profile(f) for f in sorted({family_of(r) for r in rows})}


def error_table(rows, predicted: np.ndarray) -> list[dict]:
    """One dict per row: id, device, model, measured and predicted tokens/s, signed error %."""
    out = []
    for r, p in zip(rows, predicted):
        out.append({
            "id": r.id, "line": r.line, "device": r.device, "family": family_of(r), "model": r.model,
            "split": r.split, "engine": r.engine, "measured": r.tokens_per_s, "predicted": float(p),
            "error_pct": float((p / r.tokens_per_s - 1) * 100), "source": r.source,
            "mlperf": r.is_mlperf,
        })
    return out


def summarize_errors(table: list[dict]) -> dict[str, dict]:
    """Median and worst absolute error, overall, NVIDIA, non-NVIDIA, MLPerf and per family."""
    groups: dict[str, list[float]] = {"all": []}
    for row in table:
        err = abs(row["error_pct"])
        vendor = "nvidia" if row["family"] in NVIDIA_FAMILIES else "non-nvidia"
        for key in ("all", vendor, *(("mlperf",) if row.get("mlperf") else ()), row["family"]):
            groups.setdefault(key, []).append(err)
    return {
        k: {"rows": len(v), "median_abs_pct": float(np.median(v)), "max_abs_pct": float(np.max(v))}
        for k, v in groups.items()
    }
