"""Step log: one flat row per executed step (or run of identical decode steps) per instance."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

COLUMNS = (
    "instance",
    "start_s",
    "end_s",
    "num_steps",
    "num_prefill_tokens",
    "num_decodes",
    "num_running",
    "num_waiting",
    "kv_usage",
    "energy_j",
)


@dataclass
class StepLog:
    """Columns as lists: appending a row is a handful of list appends on the hot path."""

    enabled: bool = True
    rows: dict[str, list] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    num_steps: int = 0
    num_records: int = 0

    def record(
        self, instance, start, end, num_steps, prefill_tokens, decodes, running, waiting, kv, joules=0.0
    ):
        self.num_steps += num_steps
        self.num_records += 1
        if not self.enabled:
            return
        r = self.rows
        r["instance"].append(instance)
        r["start_s"].append(start)
        r["end_s"].append(end)
        r["num_steps"].append(num_steps)
        r["num_prefill_tokens"].append(prefill_tokens)
        r["num_decodes"].append(decodes)
        r["num_running"].append(running)
        r["num_waiting"].append(waiting)
        r["kv_usage"].append(kv)
        r["energy_j"].append(joules)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=list(COLUMNS))
