"""A step log read a piece at a time: each instance's rows in start order, and running sums at
query times, equal bit for bit to cumulative sums over the whole log.

A million-request run's log is ~7 million rows; the energy metrics need, per request or time, only
sums of a column over the rows before a time. `scan` feeds the rows chunk by chunk to `Probe`s,
carrying each sum across chunks (a cumulative sum continued from its carry adds in the same order
as one over the whole column), so memory holds one chunk, never the log.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np

Chunk = Mapping[str, np.ndarray]


class Probe:
    """For each query `q`: `count`, the rows with `key < q` (`side="left"`) or `key <= q`
    (`"right"`), in a stream of rows sorted by `key`; `at[c]`, the sum of column `c` over those
    rows; with `last` columns, `before[c]`, the sum over all but the last of them (0 when none),
    and `last[c]`, the last one's value (NaN when none). Each query is settled in the chunk that
    holds the first row at or after it (queries are visited in sorted order: O(1) per chunk)."""

    def __init__(self, key: str, side: str, queries: np.ndarray, sums: Iterable[str] = (),
                 last: Iterable[str] = ()):
        self.key, self.side = key, side
        queries = np.asarray(queries, dtype=float)
        n = len(queries)
        self.sums, self.last_columns = tuple(sums), tuple(last)
        self.count = np.zeros(n, dtype=np.int64)
        self.at = {c: np.zeros(n) for c in self.sums}
        self.before = {c: np.zeros(n) for c in self.sums} if self.last_columns else {}
        self.last = {c: np.full(n, np.nan) for c in self.last_columns}
        self._order = np.argsort(queries, kind="stable")
        self._sorted = queries[self._order]
        self._settled = 0  # queries settled so far, in sorted order
        self._seen = 0
        self._tail_at, self._tail_before, self._tail_last = {}, {}, {}  # after the rows seen

    def feed(self, chunk: Chunk, cums: Mapping[str, np.ndarray], seen: int) -> None:
        """The next `len` rows, after `seen` rows; `cums[c][j]`: the sum of `c` over the rows
        before the chunk's j-th (so `cums[c][0]` carries the earlier chunks)."""
        keys = chunk[self.key]
        m = len(keys)
        if not m:
            return
        # settled here: a row at or after the query (left: key >= q; right: key > q) is in this chunk
        bound = "right" if self.side == "left" else "left"
        end = int(np.searchsorted(self._sorted, keys[-1], side=bound))
        if end > self._settled:
            idx = self._order[self._settled : end]
            c = np.searchsorted(keys, self._sorted[self._settled : end], side=self.side)
            self._settle(idx, c, chunk, cums, seen)
            self._settled = end
        self._seen = seen + m
        self._tail_at = {c: cums[c][-1] for c in self.sums}
        self._tail_before = {c: cums[c][-2] for c in self.before}
        self._tail_last = {c: chunk[c][-1] for c in self.last_columns}

    def _settle(self, idx, c, chunk, cums, seen) -> None:
        self.count[idx] = seen + c
        for col in self.sums:
            self.at[col][idx] = cums[col][c]
        some = c > 0  # the last row counted is in this chunk, else the previous chunk's last
        j, cj = idx[some], c[some] - 1
        for col in self.before:
            self.before[col][j] = cums[col][cj]
        for col in self.last_columns:
            self.last[col][j] = chunk[col][cj]
        if seen:
            self._take_tail(idx[~some])

    def _take_tail(self, idx) -> None:
        for col in self.before:
            self.before[col][idx] = self._tail_before[col]
        for col in self.last_columns:
            self.last[col][idx] = self._tail_last[col]

    def finish(self) -> None:
        """Queries after every row: all rows count."""
        idx = self._order[self._settled :]
        self._settled = len(self._order)
        if not len(idx) or not self._seen:
            return
        self.count[idx] = self._seen
        for col in self.sums:
            self.at[col][idx] = self._tail_at[col]
        self._take_tail(idx)


def scan(chunks: Iterable[Chunk], probes: list[Probe], sums: Iterable[str]) -> None:
    """Feed every chunk to every probe, with running sums of `sums` carried across chunks."""
    carry = dict.fromkeys(sums, 0.0)
    seen = 0
    for chunk in chunks:
        cums = {}
        for col in carry:
            values = chunk[col]
            cum = np.empty(len(values) + 1)
            cum[0] = carry[col]
            cum[1:] = values
            np.cumsum(cum, out=cum)  # carry + x0, + x1, ...: the whole column's order of addition
            cums[col] = cum
            carry[col] = cum[-1]
        for probe in probes:
            probe.feed(chunk, cums, seen)
        seen += len(chunk[probes[0].key]) if probes else 0
        del chunk, cums  # before the next chunk is read
    for probe in probes:
        probe.finish()


def instance_chunks(steps) -> dict[int, Callable[[], Iterator[Chunk]]]:
    """Each instance's rows in start order (instances in order of first appearance), as a function
    giving them chunk by chunk. `steps` is a table (a frame or `Columns`: one chunk) or a
    `metrics.steps.StepLog`, read from its file a piece at a time when it spilled (read whole if
    some instance's starts do not strictly increase in log order, which a sort would reorder)."""
    if hasattr(steps, "chunks"):
        if not steps.spilled:
            return instance_chunks(steps.to_columns()) if steps.num_records and steps.enabled else {}
        order = instances_in_start_order(steps)
        if order is None:
            return instance_chunks(steps.to_columns())
        if len(order) == 1:  # the log is the instance's rows
            return {order[0]: steps.chunks}
        split = steps.by_instance()  # each instance's rows apart: the log is read twice, not n times
        return {i: functools.partial(split.pieces, i) for i in order}
    return {i: _one_chunk(steps, rows) for i, rows in rows_by_instance(steps, by_start=True).items()}


def rows_by_instance(steps, by_start: bool = False) -> dict[int, np.ndarray | slice]:
    """Row indices of each instance's steps, instances in order of first appearance; each in log
    order, or (`by_start`) ordered by start time as a frame's `sort_values("start_s")` orders them.
    A log of one instance whose starts only increase gives a slice (views, no index arrays: a long
    run's log is millions of rows)."""
    if not len(steps):
        return {}
    raw = np.asarray(steps["instance"])
    if raw.dtype.kind in "iu" and raw.min() == raw.max():
        start = np.asarray(steps["start_s"], dtype=float)
        if not by_start or bool(np.all(start[1:] > start[:-1])):  # distinct starts: one order
            return {int(raw[0]): slice(0, len(raw))}
    inst = np.asarray(steps["instance"], dtype=np.int64)
    _, first = np.unique(inst, return_index=True)
    out = {}
    start = np.asarray(steps["start_s"], dtype=float) if by_start else None
    for i in np.sort(first):
        idx = np.flatnonzero(inst == inst[i])
        out[int(inst[i])] = idx[np.argsort(start[idx], kind="quicksort")] if by_start else idx
    return out


def _one_chunk(steps, rows):
    return lambda: iter([_Rows(steps, rows)])


def instances_in_start_order(log) -> list[int] | None:
    """The log's instances in order of first appearance, or None if some instance's starts do not
    strictly increase in log order."""
    return log.by_instance().start_order


class _Rows(Mapping):
    """Rows `rows` of a table, column by column as asked (views when `rows` is a slice)."""

    def __init__(self, table, rows):
        self._table, self._rows = table, rows

    def __getitem__(self, name: str) -> np.ndarray:
        return np.asarray(self._table[name])[self._rows]

    def __iter__(self):
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)
