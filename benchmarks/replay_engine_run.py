"""End-to-end check against a real serving run: replay its workload through the simulator.

    PYTHONPATH=src python benchmarks/replay_engine_run.py [--json]

data/measurements/h100-engine-run/ holds one real continuous-batching run on an H100 (Llama-3-8B
shape, FCFS without chunked prefill, 500 requests at 6/s; see its README). This script
1. prices every real step's shape with the shipped cost model and compares with the measured GPU and
   wall time per step kind (the engine's step shapes are known exactly, so this isolates the cost
   model from scheduling), and
2. calibrates a profile for this engine on the steps of the run's first half (those not bound by
   host time) and checks it on the second half, and
3. replays workload.csv through the simulator (same policy, limits and KV pool) and compares TTFT,
   TPOT and E2E percentiles with the real run's requests.csv: shipped profile GPU time only; plus the
   run's median host time for eager prefill steps (`cost.prefill_host_overhead_s`); and with the
   profile calibrated on the first half.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from servesim.build import build, make_requests
from servesim.catalog import get_hardware, get_model
from servesim.config import load_config
from servesim.cost import RooflineCostModel
from servesim.cost.calibrate import IterationData, fit
from servesim.cost.measurements import Measurement
from servesim.cost.profile import CostProfile, family_profile, save_profile
from servesim.engine import run_cluster
from servesim.metrics import StepLog, request_frame
from servesim.workload import RequestTable

RUN = Path(__file__).resolve().parents[1] / "data" / "measurements" / "h100-engine-run"
CONFIG = {
    "model": "llama3-8b",
    "hardware": "h100-sxm",
    "engine": {
        "scheduler": "fcfs",
        "max_num_seqs": 256,
        "max_num_batched_tokens": 8192,
        "block_size": 16,
        "kv_capacity_tokens": 442_272,
    },
    "workload": {"num_requests": 1},  # replaced by the run's workload below
}
PERCENTILES = (50, 90, 99)


def step_measurements(steps: pd.DataFrame) -> list[Measurement]:
    """The run's steps as measured iterations (wall time; decode contexts as their mean)."""
    rows = []
    for s in steps.itertuples():
        if s.kind == "prefill":
            lens, batch, ctx = tuple(int(x) for x in str(s.prefill_lens).split("+")), 0, 0
        else:
            lens, batch = (), int(s.num_decode_seqs)
            ctx = round(s.sum_decode_ctx / batch)
        rows.append(
            Measurement(
                line=s.step + 2,
                gpu="NVIDIA H100 80GB HBM3",
                hardware="h100-sxm",
                model="llama3-8b",
                tp=1,
                kind=s.kind if batch else "prefill",
                prefill_lens=lens,
                prior_ctx=0,
                decode_batch=batch,
                decode_ctx=ctx,
                seconds=s.wall_ms / 1e3,
                includes_comm=True,
            )
        )
    return rows


def step_errors(rows: list[Measurement], profile: CostProfile) -> dict:
    """Per step kind: MAPE and median signed error of the cost model against the measured wall time."""
    cm = RooflineCostModel(get_model("llama3-8b"), get_hardware("h100-sxm"), profile=profile)
    out = {}
    for kind in ("prefill", "decode"):
        sub = [r for r in rows if r.kind == kind]
        err = np.array([(cm.step_time(r.shape()) / r.seconds - 1) * 100 for r in sub])
        out[kind] = {
            "steps": len(sub),
            "mape": float(np.abs(err).mean()),
            "median_err": float(np.median(err)),
        }
    return out


def calibrate_on_first_half(steps: pd.DataFrame, rows: list[Measurement]) -> CostProfile:
    """Fit on the first half of the run; eager prefills bound by host time are left out."""
    half = steps["start_s"] < steps["start_s"].median()
    gpu_bound = (steps["kind"] == "decode") | (steps["host_enqueue_ms"] < 0.8 * steps["gpu_ms"])
    chosen = [r for r, h, g in zip(rows, half, gpu_bound) if h and g][::3]
    h100 = get_hardware("h100-sxm")
    return fit([IterationData(chosen, [h100] * len(chosen))], family_profile("hopper")).profile


def replay(prefill_host_s: float, profile_path: str | None = None) -> pd.DataFrame:
    cost = {"prefill_host_overhead_s": prefill_host_s, "profile": profile_path}
    config = load_config({**CONFIG, "cost": cost})
    built = build(config)
    w = pd.read_csv(RUN / "workload.csv")
    table = RequestTable(w["arrival_s"], w["prompt_tokens"], w["output_tokens"])
    requests = make_requests(table, config)
    run_cluster(requests, built.parts, built.router, StepLog())
    return request_frame(requests)


def percentiles(frame: pd.DataFrame, real: bool) -> dict:
    cols = {"ttft": "ttft_s", "tpot": "tpot_s", "e2e": "e2e_s"}
    out = {}
    for name, col in cols.items():
        v = frame[col].dropna().to_numpy()
        if not real and name == "tpot":
            v = v[frame.loc[frame[col].notna(), "output_tokens"].to_numpy() > 1]
        out[name] = {f"p{p}": float(np.percentile(v, p)) for p in PERCENTILES}
        out[name]["mean"] = float(v.mean())
    return out


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    steps = pd.read_csv(RUN / "steps.csv")
    rows = step_measurements(steps)
    host = float(steps.loc[steps["kind"] == "prefill", "host_enqueue_ms"].median()) / 1e3
    engine_profile = calibrate_on_first_half(steps, rows)
    second = [r for r, h in zip(rows, steps["start_s"] >= steps["start_s"].median()) if h]
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "engine.yaml")
        save_profile(engine_profile, path)
        result = {
            "steps_shipped_profile": step_errors(rows, family_profile("hopper")),
            "steps_second_half_engine_profile": step_errors(second, engine_profile),
            "median_prefill_host_s": host,
            "real": percentiles(pd.read_csv(RUN / "requests.csv"), True),
            "sim shipped, GPU only": percentiles(replay(0.0), False),
            "sim shipped + host": percentiles(replay(host), False),
            "sim engine profile + host": percentiles(replay(host, path), False),
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("per-step error against the real engine's wall time (step shapes replayed exactly):")
    for label in ("steps_shipped_profile", "steps_second_half_engine_profile"):
        for kind, row in result[label].items():
            print(
                f"  {label:34} {kind:8} {row['steps']:5} steps: MAPE {row['mape']:5.1f}%, "
                f"median error {row['median_err']:+.1f}%"
            )
    print(f"request latency percentiles, ms (prefill host time {host * 1e3:.1f} ms = the run's median):")
    heads = "".join(f"{m + ' ' + p:>11}" for m in ("ttft", "tpot", "e2e") for p in ("p50", "p90", "p99"))
    print(f"  {'':28}{heads}")
    for label in ("real", "sim shipped, GPU only", "sim shipped + host", "sim engine profile + host"):
        r = result[label]
        vals = [r[m][f"p{p}"] * 1e3 for m in ("ttft", "tpot", "e2e") for p in PERCENTILES]
        print(f"  {label:28}" + "".join(f"{v:11.1f}" for v in vals))


if __name__ == "__main__":
    main()
