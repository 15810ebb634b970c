"""Requests made from a `RequestTable` one row at a time, when they are needed.

A run of a million requests would otherwise hold a million `Request` objects (~0.5 KB each) from
the start to the end; made on arrival and dropped when they end (`engine.stream`), only those in
flight exist. `RequestFactory.make(i)` gives the same request as building them all up front.
"""

from __future__ import annotations

from itertools import repeat

import numpy as np

from servesim.core.request import Request

Row = tuple[float, int, int, str, int, tuple, int, float, float]
"""`Request`'s arguments after the id, in its order."""

BLOCK_ROWS = 4096
"""Rows read from the table at a time: a few numpy calls a block instead of several a request."""


class RequestFactory:
    """Row `i` of `table` as a `Request` with id `i`; per-request SLOs default to the global ones."""

    def __init__(self, table, ttft_s: float, tpot_s: float, block_rows: int = BLOCK_ROWS):
        self.table = table
        n = len(table)
        self.ttft_slo = _per_request(table.ttft_slo, ttft_s, n)
        self.tpot_slo = _per_request(table.tpot_slo, tpot_s, n)
        self.block_rows = block_rows
        self._start = 0
        self._rows: list[Row] = []
        """Rows `_start`, `_start + 1`, ... as `Request`'s arguments after the id (Python values)."""

    def __len__(self) -> int:
        return len(self.table)

    def make(self, i: int) -> Request:
        j = i - self._start
        if not 0 <= j < len(self._rows):
            self._read_block(i)
            j = i - self._start
        # unpacked, not `*row`: compiled, the constructor is then called directly
        arrival, prompt, output, class_name, session, hashes, priority, ttft, tpot = self._rows[j]
        return Request(i, arrival, prompt, output, class_name, session, hashes, priority, ttft, tpot)

    def _read_block(self, i: int) -> None:
        """The block of rows holding row `i`. `tolist` gives the Python floats and ints `item`
        would (a numpy call per value cost more than the request itself)."""
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} of a table of {len(self)}")
        start = i - i % self.block_rows
        self._start, self._rows = start, self._block(start, min(start + self.block_rows, len(self)))

    def _block(self, start: int, stop: int) -> list[Row]:
        t, rows = self.table, slice(start, stop)
        classes = repeat("default") if t.class_name is None else [str(c) for c in t.class_name[rows].tolist()]
        hashes = repeat(()) if t.prefix_hashes is None else t.prefix_hashes[rows]
        return list(zip(  # an absent column: `Request`'s default
            t.arrival_s[rows].tolist(), t.prompt_tokens[rows].tolist(), t.output_tokens[rows].tolist(),
            classes, _values(t.session_id, rows, -1), hashes, _values(t.priority, rows, 0),
            self.ttft_slo[rows].tolist(), self.tpot_slo[rows].tolist(),
        ))

    def class_names(self) -> np.ndarray:
        """Every row's class name (object array), as the requests carry it."""
        if self.table.class_name is None:
            return np.full(len(self), "default", dtype=object)
        return np.array([str(c) for c in self.table.class_name.tolist()], dtype=object)


def _per_request(values, default: float, n: int) -> np.ndarray:
    """Per-request SLOs (multi-class workloads); NaN, or no column, means the global objective."""
    return np.full(n, default) if values is None else np.where(np.isnan(values), default, values)


def _values(column: np.ndarray | None, rows: slice, default: int) -> list | repeat:
    return repeat(default) if column is None else column[rows].tolist()
