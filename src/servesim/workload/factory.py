"""Requests made from a `RequestTable` one row at a time, when they are needed.

A run of a million requests would otherwise hold a million `Request` objects (~0.5 KB each) from
the start to the end; made on arrival and dropped when they end (`engine.stream`), only those in
flight exist. `RequestFactory.make(i)` gives the same request as building them all up front.
"""

from __future__ import annotations

import numpy as np

from servesim.core.request import Request


class RequestFactory:
    """Row `i` of `table` as a `Request` with id `i`; per-request SLOs default to the global ones."""

    def __init__(self, table, ttft_s: float, tpot_s: float):
        self.table = table
        n = len(table)
        self.ttft_slo = _per_request(table.ttft_slo, ttft_s, n)
        self.tpot_slo = _per_request(table.tpot_slo, tpot_s, n)

    def __len__(self) -> int:
        return len(self.table)

    def make(self, i: int) -> Request:
        t = self.table
        r = Request(i, t.arrival_s.item(i), t.prompt_tokens.item(i), t.output_tokens.item(i),
                    ttft_slo=self.ttft_slo.item(i), tpot_slo=self.tpot_slo.item(i))
        if t.prefix_hashes is not None:
            r.prefix_hashes = t.prefix_hashes[i]
        if t.class_name is not None:
            r.class_name = str(t.class_name[i])
        if t.session_id is not None:
            r.session_id = int(t.session_id[i])
        if t.priority is not None:
            r.priority = int(t.priority[i])
        return r

    def class_names(self) -> np.ndarray:
        """Every row's class name (object array), as the requests carry it."""
        if self.table.class_name is None:
            return np.full(len(self), "default", dtype=object)
        return np.array([str(c) for c in self.table.class_name.tolist()], dtype=object)


def _per_request(values, default: float, n: int) -> np.ndarray:
    """Per-request SLOs (multi-class workloads); NaN, or no column, means the global objective."""
    return np.full(n, default) if values is None else np.where(np.isnan(values), default, values)
