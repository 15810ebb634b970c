"""Summary statistics of a request table (what `servesim trace info` prints)."""

from __future__ import annotations

import math

import numpy as np

from servesim.workload.table import RequestTable


def length_stats(values: np.ndarray) -> dict[str, float]:
    """Mean and percentiles (numpy's default linear interpolation) of token counts."""
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "mean": float(values.mean()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "min": int(values.min()),
        "max": int(values.max()),
    }


def interarrival_cv(arrival_s: np.ndarray) -> float:
    """Standard deviation over mean of the gaps between consecutive arrivals (1 for Poisson)."""
    gaps = np.diff(np.sort(arrival_s))
    if len(gaps) < 2 or gaps.mean() == 0:
        return math.nan
    return float(gaps.std() / gaps.mean())


def prefix_block_reuse(hashes: list[tuple[int, ...]]) -> float:
    """Fraction of prompt blocks that an unbounded prefix cache would already hold: for each request,
    in arrival order, the leading blocks up to the first block not seen in any earlier request."""
    seen: set[int] = set()
    total = hits = 0
    for ids in hashes:
        k = 0
        for h in ids:
            if h not in seen:
                break
            k += 1
        hits += k
        total += len(ids)
        seen.update(ids[k:])
    return hits / total if total else math.nan


def trace_stats(table: RequestTable) -> dict:
    """rows, span_s, rate_per_s, interarrival_cv, prompt_tokens{...}, output_tokens{...}, and
    prefix_block_reuse / sessions when the table has them. Times are NaN for untimed tables."""
    t = table.arrival_s
    span = float(t.max() - t.min()) if table.timed else math.nan
    stats = {
        "rows": len(table),
        "span_s": span,
        "rate_per_s": len(table) / span if table.timed and span > 0 else math.nan,
        "interarrival_cv": interarrival_cv(t) if table.timed else math.nan,
        "prompt_tokens": length_stats(table.prompt_tokens),
        "output_tokens": length_stats(table.output_tokens),
    }
    if table.prefix_hashes is not None:
        stats["prefix_block_reuse"] = prefix_block_reuse(table.prefix_hashes)
        stats["hash_block_size"] = table.hash_block_size
    if table.session_id is not None:
        stats["sessions"] = int(len(np.unique(table.session_id[table.session_id >= 0])))
    if table.class_name is not None:
        names, counts = np.unique(table.class_name.astype(str), return_counts=True)
        stats["classes"] = {str(n): int(c) for n, c in zip(names, counts)}
    return stats
