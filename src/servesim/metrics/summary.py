"""Per-request records and the summary.json of the public contract."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from servesim.core.request import Request, RequestStatus
from servesim.metrics.columns import Columns
from servesim.metrics.gaps import TokenGaps
from servesim.metrics.percentiles import linear_percentiles
from servesim.metrics.slo import objective_blocks

if TYPE_CHECKING:
    import pandas as pd

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


_FIELDS = (  # request attribute per plain column, in REQUEST_COLUMNS order
    ("request_id", "request_id", np.int64),
    ("arrival_s", "arrival_time", np.float64),
    ("prompt_tokens", "num_prompt_tokens", np.int64),
    ("output_tokens", "num_output_tokens", np.int64),
    ("instance", "instance", np.int64),
    ("first_token_s", "first_token_time", np.float64),
    ("finish_s", "finish_time", np.float64),
    ("preemptions", "num_preemptions", np.int64),
    ("rejected_reason", "rejected_reason", object),
    ("class", "class_name", object),
    ("cached_tokens", "num_cached_tokens", np.int64),
    ("generated_tokens", "num_generated_tokens", np.int64),
    ("ttft_slo_s", "ttft_slo", np.float64),
    ("tpot_slo_s", "tpot_slo", np.float64),
    ("prefill_instance", "prefill_instance", np.int64),
    ("handoff_s", "handoff_time", np.float64),
    ("first_scheduled_s", "first_scheduled_time", np.float64),
    ("retries", "num_retries", np.int64),
    ("migrations", "num_migrations", np.int64),
)


def request_frame(requests: Iterable[Request]) -> pd.DataFrame:
    """One row per request, in request-id order (`request_columns` as a DataFrame)."""
    import pandas as pd

    cols = request_columns(requests)
    if not len(cols):
        return pd.DataFrame([], columns=REQUEST_COLUMNS)
    return cols.to_frame()


def request_columns(requests: Iterable[Request]) -> Columns:
    """One row per request, in request-id order. Latencies are NaN unless defined.

    Built column by column into numpy arrays: no per-request row objects, a fraction of the memory.
    """
    requests = list(requests)
    if not requests:
        return Columns({c: np.empty(0, dtype=dtype) for c, dtype in _EMPTY_DTYPES.items()})
    cols = {}
    for column, attr, dtype in _FIELDS:
        values = [getattr(r, attr) for r in requests]
        cols[column] = np.array(values, dtype=dtype) if dtype is object else np.fromiter(values, dtype)
    status = np.array([_STATUS.get(r.status, "unfinished") for r in requests], dtype=object)
    multi = (status == "completed") & (cols["output_tokens"] > 1)
    gaps = np.fromiter((r.max_token_gap if m else 0.0 for r, m in zip(requests, multi)), np.float64)
    add_latencies(cols, status, gaps)
    order = np.argsort(cols["request_id"], kind="stable")
    return Columns({c: cols[c][order] for c in REQUEST_COLUMNS})


def status_names(codes: np.ndarray) -> np.ndarray:
    """requests.csv's status of each `RequestStatus` value (an object array)."""
    names = np.array([_STATUS.get(s, "unfinished") for s in RequestStatus], dtype=object)
    return names[codes]


def add_latencies(cols: dict, status: np.ndarray, max_gaps: np.ndarray) -> None:
    """The status, ttft/e2e/tpot/tbt_max columns from the request's times (NaN unless defined);
    `max_gaps` is each request's longest gap between tokens (read where it has two or more)."""
    done = status == "completed"
    multi = done & (cols["output_tokens"] > 1)
    arrival, first, finish = cols["arrival_s"], cols["first_token_s"], cols["finish_s"]
    cols["ttft_s"] = first - arrival
    cols["e2e_s"] = np.where(done, finish - arrival, math.nan)
    single = np.where(done, 0.0, math.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["tpot_s"] = np.where(multi, (finish - first) / (cols["output_tokens"] - 1), single)
    cols["tbt_max_s"] = np.where(multi, max_gaps, single)
    cols["status"] = status


_EMPTY_DTYPES = {c: object for c in REQUEST_COLUMNS}  # what an empty pandas frame holds


def _stats(values: np.ndarray) -> dict[str, float]:
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return {"mean": math.nan, "p50": math.nan, "p90": math.nan, "p99": math.nan}
    p50, p90, p99 = linear_percentiles(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def _limits(frame: pd.DataFrame, column: str, default: float):
    """Per-request objectives where the frame has finite ones, else the global one."""
    if column not in frame:
        return default
    values = np.asarray(frame[column], dtype=float)
    return np.where(np.isfinite(values), values, default)


def summarize(
    frame: pd.DataFrame,
    ttft_slo: float,
    tpot_slo: float,
    simulated_s: float,
    extra: dict | None = None,
    gaps: TokenGaps | None = None,
    objectives: Mapping[str, Mapping] | None = None,
) -> dict:
    """The summary.json dict. Attainment counts every arrived request in the denominator.

    Per-request SLOs (multi-class workloads) take precedence where the frame has them. `gaps` adds
    the pooled inter-token gaps (`latency.itl`); `objectives` the named objectives
    (`slo.objectives`); a workload with classes gets a `classes.<name>` block of each.
    """
    arrived = len(frame)
    horizon = simulated_s if simulated_s > 0 else math.nan
    first_arrival = float(np.min(frame["arrival_s"])) if arrived else 0.0
    span = max(horizon - first_arrival, 1e-12) if arrived else math.nan
    summary = _block(frame, ttft_slo, tpot_slo, span, gaps.stats() if gaps else None, objectives)
    names = class_names(frame)
    if names:
        summary["classes"] = {
            name: _block(frame[np.asarray(frame["class"]) == name], ttft_slo, tpot_slo, span,
                         gaps.stats(name) if gaps else None, objectives, echo=False)
            for name in names
        }
    if extra:
        for key, value in extra.items():
            summary.setdefault(key, {}).update(value)
    return summary


def class_names(frame: pd.DataFrame) -> list[str]:
    """The request classes of a multi-class workload (none for a single default class)."""
    if "class" not in frame or not len(frame):
        return []
    names = sorted(map(str, set(np.asarray(frame["class"]).tolist())))
    return [] if names == ["default"] else names


def _block(frame, ttft_slo, tpot_slo, span, itl, objectives, echo: bool = True) -> dict:
    """requests, latency, throughput and slo of a set of requests (`echo`: repeat the global
    objectives, which a class with its own SLO does not follow)."""
    status = np.asarray(frame["status"])
    done = status == "completed"
    arrived = len(frame)
    completed = int(done.sum())
    rejected = int((status == "rejected").sum())
    failed = int((status == "failed").sum())
    col = lambda name: np.asarray(frame[name], dtype=float)  # noqa: E731
    ttft, tpot, e2e = col("ttft_s"), col("tpot_s"), col("e2e_s")
    ttft_lim = _limits(frame, "ttft_slo_s", ttft_slo)
    tpot_lim = _limits(frame, "tpot_slo_s", tpot_slo)
    met = done & (ttft <= ttft_lim) & (tpot <= tpot_lim)
    latency = {
        "ttft": _stats(ttft[done]),
        "tpot": _stats(tpot[done]),
        "e2e": _stats(e2e[done]),
        "tbt_max": _stats(col("tbt_max_s")[done]),
        "queue": _stats((col("first_scheduled_s") - col("arrival_s"))[done]),
        "norm_e2e": _stats((e2e / np.maximum(col("output_tokens"), 1))[done]),
    }
    tail = None
    if itl is not None:
        latency["itl"] = {k: itl[k] for k in ("mean", "p50", "p90", "p99")}
        tail = {"gaps": itl["count"], "worst10_mean": itl["worst10_mean"], "max": itl["max"]}
    slo = {"ttft_s": ttft_slo, "tpot_s": tpot_slo} if echo else {}
    slo |= {
        "attainment": float(met.sum() / arrived) if arrived else math.nan,
        "goodput_rps": float(met.sum()) / span,
    }
    if objectives:
        slo["objectives"] = objective_blocks(frame, objectives, span)
    block = {
        "requests": {
            "arrived": arrived,
            "completed": completed,
            "rejected": rejected,
            "unfinished": arrived - completed - rejected - failed,
            **({"failed": failed} if failed else {}),
        },
        "latency": latency,
        "throughput": {
            "requests_per_s": completed / span,
            "input_tokens_per_s": float(np.asarray(frame["prompt_tokens"])[done].sum()) / span,
            "output_tokens_per_s": float(np.asarray(frame["output_tokens"])[done].sum()) / span,
        },
        "slo": slo,
    }
    if tail is not None:
        block["itl"] = tail  # beside latency, whose blocks keep mean/p50/p90/p99
    return block
