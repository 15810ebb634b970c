"""Fit the accelerator-family profiles on published end-to-end results (MLPerf never among them).

    PYTHONPATH=src python tools/fit_published.py                 # every family, then engine versions
    PYTHONPATH=src python tools/fit_published.py cdna3 gaudi     # some of them
    PYTHONPATH=src python tools/fit_published.py vllm-rocm-2024  # one engine version (ENGINE_FIT)
    PYTHONPATH=src python tools/fit_published.py tensorrt-llm-pytorch  # its host time on Grace (HOST_CPU_FIT)
    PYTHONPATH=src python tools/fit_published.py vllm-cuda-v0    # single-step host time, then its scale

For each family, the `split=fit` rows of data/measurements/published/throughput.csv (none of them
MLPerf) are replayed in the simulator and the profile's efficiencies fitted to their tokens per
second, starting from the Hopper profile read through the family's spec sheet. The same as
`servesim costmodel calibrate --throughput ... --family F --start <the start below>`; this script also
writes the profile header that cites the sources. `servesim costmodel check --throughput ...` then
reports the error on every row, the held-out (`check`) ones included.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from servesim.catalog.specs import get_hardware
from servesim.cli.throughput import ROBUST_SCALE, THROUGHPUT_FIT, THROUGHPUT_PRIOR
from servesim.core.files import write_file
from servesim.cost.calibrate import fit
from servesim.cost.engines import ENGINE_DIR, _load, resolve_engine
from servesim.cost.host import EngineProfile
from servesim.cost.profile import PROFILE_DIR, family_profile, save_profile
from servesim.cost.published import read_published
from servesim.cost.roofline import RooflineCostModel
from servesim.studies.throughput import (
    ThroughputData,
    error_table,
    family_of,
    record_trace,
    summarize_errors,
    tie_efficiencies,
)

ROOT = Path(__file__).resolve().parents[1]
ROWS = ROOT / "data" / "measurements" / "published" / "throughput.csv"
FAMILIES = {
    "blackwell": "B200 and GB200 (TensorRT-LLM)",
    "cdna3": "MI300X, MI325X (and MI355X through its spec sheet) (vLLM on ROCm)",
    "gaudi": "Gaudi 3 (optimum-habana)",
    "gaudi2": "Gaudi 2 (optimum-habana, TGI-Gaudi)",
    "tpu": "TPU v5e, v5p, v6e (JetStream)",
    "ascend": "Ascend 910B, 910C (MindIE)",
}
HOST_FIT = {
    "ascend": ("mindie", {"host.eager.serial.chunks": 2e-3}),
    "blackwell": ("tensorrt-llm-pytorch", {"host.graph.serial.seqs": 2e-6, "host.eager.serial.seqs": 2e-6}),
}
"""Families whose fit rows are host-bound somewhere, with the engine whose host terms (`cost/host.py`)
are fitted with them, from these starts, and written to that engine's profile (`cost/engines/`), not
the device's. ascend: MindIE's serial time per request (one prefill chunk each), which the 910B's
server-bound row (1,000 requests of 128 tokens in, 4 out) isolates; from 0.1 ms the fit stays in a
worse minimum. blackwell: the PyTorch backend's per-sequence Python work in every step (graph-replayed
decodes and eager mixed steps), which Qwen3-30B-A3B (3B active) at 128/128 and batches of thousands
exposes."""
START_NOTE = (
    "start: the Hopper profile with the kernels of serving engines: decode attention that splits the "
    "context (no per-sequence parallelism limit) and fused MoE kernels (their grouped-GEMM efficiency "
    "fitted where MoE rows are fitted, else the H200's)"
)


def fit_family(family: str, rows) -> None:
    fit_rows = [r for r in rows if family_of(r) == family and r.split == "fit"]
    check_rows = [r for r in rows if family_of(r) == family and r.split == "check"]
    moe = any(r.spec.is_moe for r in fit_rows)
    engine, host = HOST_FIT.get(family, ("", {}))
    pinned = {k: v for k, (v, _) in KERNEL_RATES.get(family, {}).items()}
    start = family_profile("generic").with_values(
        attn_decode_blocks_per_core=0.0, moe_kernels="fused", **host, **pinned
    )
    params = THROUGHPUT_FIT + (("moe_grouped_eff",) if moe else ()) + tuple(host)
    params = tuple(p for p in params if p not in pinned)
    data = ThroughputData(fit_rows)
    data.robust_scale = ROBUST_SCALE
    result = fit([data], start, params, prior_weight=THROUGHPUT_PRIOR, max_iterations=40)
    profile = tie_efficiencies(result.profile).with_values(
        source=f"{family}: tools/fit_published.py on {len(fit_rows)} published rows of "
        f"data/measurements/published/throughput.csv (split=fit)",
    )
    summary = {"start": summarize_errors(error_table(fit_rows, data.predict(start)))["all"]}
    summary["fit"] = summarize_errors(error_table(fit_rows, data.predict(profile)))["all"]
    if check_rows:
        check = ThroughputData(check_rows)
        summary["held out"] = summarize_errors(error_table(check_rows, check.predict(profile)))["all"]
    if host:  # the host terms belong to the engine: the device profile keeps none
        write_engine_host(engine, {k[len("host."):]: profile.value(k) for k in host})
        profile = replace(profile, engine=EngineProfile())
    save_profile(profile, PROFILE_DIR / f"{family}.yaml", header(family, fit_rows, summary, result.fitted))
    family_profile.cache_clear()  # an engine fit in the same run starts from the new profile
    for name, s in summary.items():
        print(f"{family:10} {name:9} {s['rows']:4} rows  median |err| {s['median_abs_pct']:5.1f}%  "
              f"worst {s['max_abs_pct']:5.1f}%", flush=True)


KERNEL_RATES = {
    "cdna3": {"gemm_compute_eff": (1273 / 2615, "AMD's Max-Achievable FLOPs of the MI300X at FP8, "
              "1,273 of 2,615 TFLOP/s (hipBLASLt, ROCm blog 'Measuring Max-Achievable FLOPs - Part 2', "
              "2025, ROCm/rocm-blogs)")},
}
"""Kernel rates a vendor publishes, pinned instead of fitted: end-to-end rows that are mostly decode
cannot see the GEMM rate, and a fit left free carries the Hopper start's 77% of peak to a device whose
own vendor measures less than half of its FP8 peak on its best GEMM."""

SCALED_FIT = ("attn_decode_memory_eff", "comm_bw_eff")
"""What an engine-version fit scales by default: its rows (decode-heavy batches of up to 256 after
128-token prompts) see HBM streaming and collectives; they cannot tell a GEMM rate apart (fitted, it
drifts to an unphysical 98% of peak)."""
ENGINE_FIT = {
    "vllm-rocm-2024": ("vllm", "cdna3", SCALED_FIT),
    "vllm-cuda-v0": ("vllm", "hopper", SCALED_FIT),
    "sglang": ("tensorrt-llm", "hopper", SCALED_FIT),
}
"""Engines calibrated against another engine (or version) on the same device: the rows marked
split=engine run under `kind`; its efficiency scales (the third item) are fitted with the family
profile fixed, the rows priced as the base engine runs them. vllm-cuda-v0 and sglang: the vLLM v0.6.0
blog's H100 rows (ShareGPT, decode- and prefill-heavy sets; Llama 3 8B at TP 1, 70B at TP 4), against
the hopper profile; sglang's base is tensorrt-llm, whose profile has the same kernel behaviours and no
scale or host layer (sglang itself cannot be its base: its own fitted scale would compound)."""


SCHEDULER_STEPS_FIT = {
    "vllm-cuda-v0": ("vllmblog060-h100x4-llama3-70b-decode-heavy-vllm", 1, 1.28),
}
"""Engines whose serial host time per scheduled step is set by a published multi-step speed-up: one
per-sequence coefficient (`graph.serial.seqs` = `eager.serial.seqs`) such that the named split=engine
row, replayed with the given decode steps per scheduling instead of its own, runs that many times
slower (its engine scale fixed; the scale is then refitted with the host term, three rounds).
vllm-cuda-v0: the vLLM v0.6.0 blog, 'This improves the throughput of running Llama 70B models on
4xH100 by 28%' for multi-step scheduling (its benchmarks ran --num-scheduler-steps 10); the post does
not name that figure's dataset, so it is applied to its 70B decode-heavy row (462 in, 256 out, 500
prompts, up to 256 sequences), the set most made of decode steps that the post's figures give. The
sources say V0's time between steps grows with the batch (the post on output processing; vLLM issue
6801: about 20 ms at batch 200 in 0.5.x; issue 6854: a 5-13 ms GPU bubble per step), so the term is
per sequence; one published ratio cannot separate a fixed part."""


def fit_engine(kind: str, rows) -> None:
    if kind not in SCHEDULER_STEPS_FIT:
        return fit_engine_scale(kind, rows)
    for _ in range(3):  # the host term and the scale each move the other's fit a little
        fit_scheduler_host(kind, rows)
        fit_engine_scale(kind, rows)


def fit_scheduler_host(kind: str, rows) -> None:
    row_id, steps, speedup = SCHEDULER_STEPS_FIT[kind]
    row = next(r for r in rows if r.id == row_id)
    trace, engine, profile = record_trace(row), resolve_engine(kind), family_profile(ENGINE_FIT[kind][1])
    hw = get_hardware(row.device)

    def seconds(per_seq: float, scheduler_steps: int) -> float:
        host = replace(engine.host, host={"graph.serial.seqs": per_seq, "eager.serial.seqs": per_seq})
        priced = replace(engine, host=host).apply(profile, hw.host_cpu, scheduler_steps)
        return trace.seconds(RooflineCostModel(row.spec, hw, tp=row.tp, pp=row.pp, profile=priced))

    low, high = 0.0, 1e-3  # seconds per sequence per scheduled step
    for _ in range(50):
        mid = (low + high) / 2
        ratio = seconds(mid, steps) / seconds(mid, row.scheduler_steps)
        low, high = (mid, high) if ratio < speedup else (low, mid)
    per_seq = (low + high) / 2
    write_engine_host(kind, {"graph.serial.seqs": per_seq, "eager.serial.seqs": per_seq})
    print(f"{kind:14} serial host {per_seq * 1e6:.1f} us per sequence per scheduled step: {row_id} "
          f"at {steps} step(s) per scheduling runs {speedup:.2f}x slower than at {row.scheduler_steps}",
          flush=True)


def unscaled_engine(kind: str, folder: Path) -> str:
    """A copy of the shipped engine profile without its scale (a base that never compounds it)."""
    data = yaml.safe_load((ENGINE_DIR / f"{kind}.yaml").read_text())
    data.pop("scale", None)
    path = folder / f"{kind}-unscaled.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def fit_engine_scale(kind: str, rows) -> None:
    base, family, params = ENGINE_FIT[kind]
    own = [r for r in rows if r.engine == kind and r.split == "engine"]
    with tempfile.TemporaryDirectory() as folder:
        if resolve_engine(kind).host is not None and resolve_engine(kind).host.has_host:
            base = unscaled_engine(kind, Path(folder))  # its rows' host time priced with them
        _fit_engine_scale(kind, own, base, family, params)
    _load.cache_clear()  # the rewritten profile is read afresh


def _fit_engine_scale(kind: str, own, base: str, family: str, params) -> None:
    as_base = [replace(r, engine=base) for r in own]
    start = family_profile(family)
    # The steps are the engine's own (its batching: V0 vLLM prefills whole prompts), priced as the base.
    data = ThroughputData(as_base, [record_trace(r) for r in own])
    data.robust_scale = ROBUST_SCALE
    result = fit([data], start, params, prior_weight=THROUGHPUT_PRIOR, max_iterations=40)
    fitted = tie_efficiencies(result.profile)
    scale = {p: fitted.value(p) / start.value(p) for p in params}
    scale["gemm_memory_eff"] = scale["attn_decode_memory_eff"]  # one HBM, as in the family fits
    path = ENGINE_DIR / f"{kind}.yaml"
    data_yaml = yaml.safe_load(path.read_text())
    data_yaml["scale"] = {k: round(float(v), 4) for k, v in sorted(scale.items())}
    comments = [line for line in path.read_text().splitlines() if line.startswith("#")]
    errors = {
        "base engine": summarize_errors(error_table(own, data.predict(start)))["all"],
        "fitted": summarize_errors(error_table(own, data.predict(result.profile)))["all"],
    }
    comments = comments[:1] + [
        f"# {name}: {s['rows']} rows, |error| median {s['median_abs_pct']:.1f}% / worst "
        f"{s['max_abs_pct']:.1f}% (written by tools/fit_published.py)" for name, s in errors.items()
    ]
    text = "\n".join(comments) + "\n" + yaml.safe_dump(data_yaml, sort_keys=False)
    write_file(path, lambda p: p.write_text(text))
    for name, s in errors.items():
        print(f"{kind:14} {name:11} {s['rows']:4} rows  median |err| {s['median_abs_pct']:5.1f}%  "
              f"worst {s['max_abs_pct']:5.1f}%", flush=True)


HOST_CPU_FIT = {"tensorrt-llm-pytorch": ("grace", "blackwell")}
"""Engines whose host time is fitted again for another host CPU. The rows marked split=engine that run
under `kind` come in pairs: the same model, layout and lengths on a device with that `host_cpu` and on
an x86-hosted device of the same family. One factor on all of the engine's host terms is fitted to the
ratio of each pair's tokens per second, with the family profile (and the x86 host terms fitted with
it) fixed, so what the family profile gets wrong about the model itself cancels. tensorrt-llm-pytorch
on Grace: the performance overview's Llama 4 Scout rows on GB200 (one Grace CPU per two GPUs) and
DGX B200 (x86), whose 1:1 rows run 0.73-0.79x on GB200 and its long-output and long-prompt rows
0.98-1.06x."""


def host_cpu_pairs(kind: str, cpu: str, rows) -> list[tuple]:
    """(row on the `cpu` host, the same setup on an x86 host) for the split=engine rows of `kind`."""
    own = [r for r in rows if r.engine == kind and r.split == "engine"]
    setup = lambda r: (r.model, r.tp, r.pp, r.input_len, r.output_len)  # noqa: E731
    x86 = {setup(r): r for r in own if get_hardware(r.device).host_cpu == "x86"}
    return [(r, x86[setup(r)]) for r in own if get_hardware(r.device).host_cpu == cpu]


def fit_host_cpu(kind: str, rows) -> None:
    cpu, family = HOST_CPU_FIT[kind]
    pairs = host_cpu_pairs(kind, cpu, rows)
    traces = {r.id: record_trace(r) for pair in pairs for r in pair}
    profile, engine = family_profile(family), resolve_engine(kind)

    def tokens_per_s(row, factor: float) -> float:
        host = get_hardware(row.device).host_cpu
        priced = replace(engine, host_cpu_scale={cpu: factor}).apply(profile, host)
        cost = RooflineCostModel(row.spec, get_hardware(row.device), tp=row.tp, pp=row.pp, profile=priced)
        t = traces[row.id]
        return t.scale * t.tokens / t.seconds(cost)

    def residuals(factor: float) -> np.ndarray:  # log of measured over predicted pair ratios
        return np.array([np.log(g.tokens_per_s / x.tokens_per_s)
                         - np.log(tokens_per_s(g, factor) / tokens_per_s(x, factor)) for g, x in pairs])

    def loss(log_factor: float) -> float:  # the soft-L1 loss of the family fits (cost/calibrate.py)
        z = (residuals(np.exp(log_factor)) / ROBUST_SCALE) ** 2
        return float(np.sum(np.sqrt(1.0 + z) - 1.0))

    grid = np.linspace(0.0, np.log(20.0), 31)
    best = grid[int(np.argmin([loss(g) for g in grid]))]
    fine = np.linspace(best - 0.1, best + 0.1, 21)
    factor = float(np.exp(fine[int(np.argmin([loss(g) for g in fine]))]))
    errors = {name: 100 * np.abs(np.expm1(residuals(f)))
              for name, f in (("x86 host time", 1.0), (f"x{factor:.2f}", factor))}
    path = ENGINE_DIR / f"{kind}.yaml"
    data_yaml = yaml.safe_load(path.read_text())
    data_yaml["host_cpu_scale"] = {cpu: round(factor, 3)}
    comments = [line for line in path.read_text().splitlines()
                if line.startswith("#") and "host_cpu_scale" not in line]
    comments += [f"# host_cpu_scale.{cpu}, {name}: {len(e)} {cpu}/x86 pairs, |error| of the ratio median "
                 f"{np.median(e):.1f}% / worst {np.max(e):.1f}% (written by tools/fit_published.py)"
                 for name, e in errors.items()]
    text = "\n".join(comments) + "\n" + yaml.safe_dump(data_yaml, sort_keys=False)
    write_file(path, lambda p: p.write_text(text))
    for name, e in errors.items():
        print(f"{kind:14} {cpu} {name:14} {len(e):4} pairs  median |err| {np.median(e):5.1f}%  "
              f"worst {np.max(e):5.1f}%", flush=True)


def write_engine_host(kind: str, host: dict[str, float]) -> None:
    """Put fitted host coefficients into a shipped engine profile, keeping its other keys."""
    path = ENGINE_DIR / f"{kind}.yaml"
    lines = path.read_text().splitlines()
    comments = [line for line in lines if line.startswith("#")]
    data = yaml.safe_load(path.read_text())
    sizes = (data.get("engine") or {}).get("graph_batch_sizes", [])
    data["engine"] = {"graph_batch_sizes": sizes, "host": {k: float(v) for k, v in host.items()}}
    if "host_cpu_scale" in data:  # keep it after the engine section, where fit_host_cpu writes it
        data["host_cpu_scale"] = data.pop("host_cpu_scale")
    text = "\n".join(comments) + "\n" + yaml.safe_dump(data, sort_keys=False)
    write_file(path, lambda p: p.write_text(text))
    _load.cache_clear()


def header(family: str, fit_rows, summary: dict, fitted) -> str:
    devices = sorted({r.device for r in fit_rows})
    lines = [
        f"{family} cost profile ({FAMILIES[family]}), written by tools/fit_published.py "
        "(do not edit by hand)",
        f"fitted: {', '.join(fitted)}",
        "tied: attn_prefix_eff = attn_prefill_eff, gemm_memory_eff = attn_decode_memory_eff (one HBM)",
        f"on {len(fit_rows)} published end-to-end rows on {', '.join(devices)}: "
        + ", ".join(sorted(r.id for r in fit_rows)),
        START_NOTE,
        *(f"pinned: {name} = {value:.4f}: {why}"
          for name, (value, why) in KERNEL_RATES.get(family, {}).items()),
        *(
            f"{name} (host time of the engine, cost/host.py) started at {value:g} s; written to "
            f"cost/engines/{HOST_FIT[family][0]}.yaml"
            for name, value in HOST_FIT.get(family, ("", {}))[1].items()
        ),
        "|error| of tokens/s, median / worst (MLPerf rows are never fitted; see docs/cost-model.md):",
    ]
    for name, s in summary.items():
        lines.append(f"  {name}: {s['rows']} rows, {s['median_abs_pct']:.1f}% / {s['max_abs_pct']:.1f}%")
    lines.append("sources of the fitted rows:")
    lines += [f"  {s}" for s in sorted({r.source for r in fit_rows})]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    rows = read_published(ROWS)
    for name in argv or [*FAMILIES, *ENGINE_FIT, *HOST_CPU_FIT]:
        if name in ENGINE_FIT:  # after its family: the scale is relative to the fitted device profile
            fit_engine(name, rows)
        elif name in HOST_CPU_FIT:  # after its family, whose fit sets the engine's x86 host terms
            fit_host_cpu(name, rows)
        else:
            fit_family(name, rows)


if __name__ == "__main__":
    main(sys.argv[1:])
