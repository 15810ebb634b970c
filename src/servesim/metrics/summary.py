"""Per-request records and the summary.json of the public contract."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from servesim.core.request import Request, RequestStatus

REQUEST_COLUMNS = [
    "request_id",
    "arrival_s",
    "prompt_tokens",
    "output_tokens",
    "instance",
    "first_token_s",
    "finish_s",
    "ttft_s",
    "tpot_s",
    "e2e_s",
    "tbt_max_s",
    "preemptions",
    "status",
    "rejected_reason",
    "class",
    "cached_tokens",
    "generated_tokens",
    "ttft_slo_s",
    "tpot_slo_s",
    "prefill_instance",
    "handoff_s",
    "first_scheduled_s",
    "retries",
    "migrations",
]

_STATUS = {
    RequestStatus.FINISHED: "completed",
    RequestStatus.REJECTED: "rejected",
    RequestStatus.FAILED: "failed",
}


def request_frame(requests: Iterable[Request]) -> pd.DataFrame:
    """One row per request, in request-id order. Latencies are NaN unless defined."""
    rows = []
    for r in requests:
        status = _STATUS.get(r.status, "unfinished")
        first, finish = r.first_token_time, r.finish_time
        generated = r.num_generated_tokens
        ttft = first - r.arrival_time
        e2e = finish - r.arrival_time
        if status == "completed" and r.num_output_tokens > 1:
            tpot = (finish - first) / (r.num_output_tokens - 1)
            tbt = r.max_token_gap
        else:
            tpot = 0.0 if status == "completed" else math.nan
            tbt = 0.0 if status == "completed" else math.nan
        rows.append(
            (
                r.request_id,
                r.arrival_time,
                r.num_prompt_tokens,
                r.num_output_tokens,
                r.instance,
                first,
                finish,
                ttft,
                tpot,
                e2e if status == "completed" else math.nan,
                tbt,
                r.num_preemptions,
                status,
                r.rejected_reason,
                r.class_name,
                r.num_cached_tokens,
                generated,
                r.ttft_slo,
                r.tpot_slo,
                r.prefill_instance,
                r.handoff_time,
                r.first_scheduled_time,
                r.num_retries,
                r.num_migrations,
            )
        )
    frame = pd.DataFrame(rows, columns=REQUEST_COLUMNS)
    return frame.sort_values("request_id", kind="stable").reset_index(drop=True)


def _stats(values: np.ndarray) -> dict[str, float]:
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return {"mean": math.nan, "p50": math.nan, "p90": math.nan, "p99": math.nan}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def _limits(frame: pd.DataFrame, column: str, default: float):
    """Per-request objectives where the frame has finite ones, else the global one."""
    if column not in frame:
        return default
    values = frame[column].to_numpy(dtype=float)
    return np.where(np.isfinite(values), values, default)


def summarize(
    frame: pd.DataFrame,
    ttft_slo: float,
    tpot_slo: float,
    simulated_s: float,
    extra: dict | None = None,
) -> dict:
    """The summary.json dict. Attainment counts every arrived request in the denominator.

    Per-request SLOs (multi-class workloads) take precedence where the frame has them.
    """
    status = frame["status"].to_numpy()
    done = status == "completed"
    arrived = len(frame)
    completed = int(done.sum())
    rejected = int((status == "rejected").sum())
    failed = int((status == "failed").sum())
    ttft = frame["ttft_s"].to_numpy(dtype=float)
    tpot = frame["tpot_s"].to_numpy(dtype=float)
    ttft_lim = _limits(frame, "ttft_slo_s", ttft_slo)
    tpot_lim = _limits(frame, "tpot_slo_s", tpot_slo)
    met = done & (ttft <= ttft_lim) & (tpot <= tpot_lim)
    horizon = simulated_s if simulated_s > 0 else math.nan
    first_arrival = float(frame["arrival_s"].min()) if arrived else 0.0
    span = max(horizon - first_arrival, 1e-12) if arrived else math.nan
    summary = {
        "requests": {
            "arrived": arrived,
            "completed": completed,
            "rejected": rejected,
            "unfinished": arrived - completed - rejected - failed,
            **({"failed": failed} if failed else {}),
        },
        "latency": {
            "ttft": _stats(ttft[done]),
            "tpot": _stats(tpot[done]),
            "e2e": _stats(frame["e2e_s"].to_numpy(dtype=float)[done]),
            "tbt_max": _stats(frame["tbt_max_s"].to_numpy(dtype=float)[done]),
        },
        "throughput": {
            "requests_per_s": completed / span,
            "input_tokens_per_s": float(frame["prompt_tokens"].to_numpy()[done].sum()) / span,
            "output_tokens_per_s": float(frame["output_tokens"].to_numpy()[done].sum()) / span,
        },
        "slo": {
            "ttft_s": ttft_slo,
            "tpot_s": tpot_slo,
            "attainment": float(met.sum() / arrived) if arrived else math.nan,
            "goodput_rps": float(met.sum()) / span,
        },
    }
    if extra:
        for key, value in extra.items():
            summary.setdefault(key, {}).update(value)
    return summary
