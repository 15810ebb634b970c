"""summary.json `programs`: task completion of agentic programs, their latency and fairness."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from servesim.core.request import Request, RequestStatus
from servesim.metrics.summary import _stats


def program_summary(requests: list[Request]) -> dict | None:
    """Per program: task time = last call's finish - first call's arrival (every call completed).

    `completed`: programs whose every call completed; `task_time`, `ttft` and `tpot` (each
    program's mean over its calls) and `calls_per_program` over completed programs; `fairness`:
    Jain's index of the completed programs' time per call (1 = every program progressed at the
    same pace)."""
    calls: dict[int, list[Request]] = defaultdict(list)
    for r in requests:
        if r.program_id >= 0:
            calls[r.program_id].append(r)
    if not calls:
        return None
    task, ttft, tpot, per_call, sizes = [], [], [], [], []
    for group in calls.values():
        if any(r.status != RequestStatus.FINISHED for r in group):
            continue
        start = min(r.arrival_time for r in group)
        span = max(r.finish_time for r in group) - start
        task.append(span)
        ttft.append(float(np.mean([r.first_token_time - r.arrival_time for r in group])))
        gaps = [(r.finish_time - r.first_token_time) / (r.num_output_tokens - 1)
                for r in group if r.num_output_tokens > 1]
        tpot.append(float(np.mean(gaps)) if gaps else 0.0)
        per_call.append(span / len(group))
        sizes.append(len(group))
    x = np.asarray(per_call)
    fairness = float(x.sum() ** 2 / (len(x) * (x**2).sum())) if len(x) and (x**2).sum() else math.nan
    return {
        "programs": len(calls),
        "completed": len(task),
        "task_time": _stats(np.asarray(task, dtype=float)),
        "ttft": _stats(np.asarray(ttft, dtype=float)),
        "tpot": _stats(np.asarray(tpot, dtype=float)),
        "calls_per_program": float(np.mean(sizes)) if sizes else math.nan,
        "fairness": fairness,
    }
