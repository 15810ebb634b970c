"""Step log: one flat row per executed step (or run of identical steps) per instance.

Rows are kept in one compact structured array (56 bytes a row instead of ~250 as Python objects):
the hot path appends each value to a short list per column (`PendingRows`; a run of steps extends
them with its own lists), and every `BLOCK_ROWS` rows the lists are copied into the array a column
at a time, which grows in place (`ndarray.resize`: a large block is remapped, not copied), so the
log never exists twice, not even when its columns are handed out at the end of a run.

A long run's log does not stay in memory: past `spill_rows` rows the array goes to an unnamed
temporary file and starts again, so memory holds at most `spill_rows` rows (~3.5 MiB) whatever the
run's length. The run's metrics read the log a piece at a time (`chunks`: energy in
`metrics.energy`); its columns as arrays (`columns`, `to_columns`: the step table, time series)
read the file back only when asked for.
"""

from __future__ import annotations

import itertools
import struct
import tempfile
from collections.abc import Iterator
from typing import IO

import numpy as np

from servesim.metrics.columns import Columns

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
ROW = np.dtype([
    ("instance", np.int32),
    ("start_s", np.float64),
    ("end_s", np.float64),
    ("num_steps", np.int32),
    ("num_prefill_tokens", np.int32),
    ("num_decodes", np.int32),
    ("num_running", np.int32),
    ("num_waiting", np.int32),
    ("kv_usage", np.float64),
    ("energy_j", np.float64),
], align=False)
RAW_ROW = np.dtype((np.void, ROW.itemsize))
"""A row as opaque bytes: rows reordered through this view are copied whole (a structured array's
fancy index copies them field by field, ~30x slower)."""
BLOCK_ROWS = 8192
SPILL_ROWS = 1 << 16
"""Rows a log holds in memory (~3.5 MiB); older rows wait in a temporary file."""
READ_ROWS = 1 << 15
"""Rows of a piece `chunks` gives (~1.8 MiB; what a reader holds, with its sums, at a time)."""


class PendingRows:
    """The rows not yet in the log's array, a list per column: a step appends its values, a run
    of steps extends the lists with its own, and `take` converts them a column at a time (a list
    of numbers packs ~40 times faster than numpy converts a list of row tuples to `ROW`)."""

    def __init__(self) -> None:
        self.instance: list[int] = []
        self.start_s: list[float] = []
        self.end_s: list[float] = []
        self.num_steps: list[int] = []
        self.num_prefill_tokens: list[int] = []
        self.num_decodes: list[int] = []
        self.num_running: list[int] = []
        self.num_waiting: list[int] = []
        self.kv_usage: list[float] = []
        self.energy_j: list[float] = []

    def __len__(self) -> int:
        return len(self.start_s)

    def columns(self) -> list[list]:
        """The lists in `COLUMNS` order."""
        return [self.instance, self.start_s, self.end_s, self.num_steps, self.num_prefill_tokens,
                self.num_decodes, self.num_running, self.num_waiting, self.kv_usage, self.energy_j]

    def append(
        self, instance: int, start: float, end: float, num_steps: int, prefill_tokens: int, decodes: int,
        running: int, waiting: int, kv: float, joules: float,
    ) -> None:
        self.instance.append(instance)
        self.start_s.append(start)
        self.end_s.append(end)
        self.num_steps.append(num_steps)
        self.num_prefill_tokens.append(prefill_tokens)
        self.num_decodes.append(decodes)
        self.num_running.append(running)
        self.num_waiting.append(waiting)
        self.kv_usage.append(kv)
        self.energy_j.append(joules)

    def extend(
        self, instance: int, starts: list[float], ends: list[float], prefills: list[int], decodes: list[int],
        running: list[int], waiting: list[int], kv: list[float], joules: list[float],
    ) -> None:
        """One single step per item of `starts` and the lists beside it, all of `instance`."""
        n = len(starts)
        self.instance += [instance] * n
        self.start_s += starts
        self.end_s += ends
        self.num_steps += [1] * n
        self.num_prefill_tokens += prefills
        self.num_decodes += decodes
        self.num_running += running
        self.num_waiting += waiting
        self.kv_usage += kv
        self.energy_j += joules

    def take(self, rows: np.ndarray) -> None:
        """Move the first `len(rows)` rows into `rows` (of dtype `ROW`)."""
        n = len(rows)
        for name, column in zip(COLUMNS, self.columns()):
            rows[name] = _packed(column[:n] if n < len(column) else column, ROW[name])
            del column[:n]


def _packed(values: list, dtype: np.dtype) -> np.ndarray:
    """`values` (Python numbers) as an array of `dtype` (int32 or float64), through `struct`,
    whose codes numpy's type characters follow (the buffer protocol's): a third of what
    `np.array(values, dtype)` costs."""
    return np.frombuffer(struct.pack(f"={len(values)}{dtype.char}", *values), dtype=dtype)


class StepLog:
    """Append-only rows; `columns()` gives them as int64/float64 arrays, `to_frame()` as a table."""

    def __init__(self, enabled: bool = True, spill_rows: int | None = None):
        self.enabled = enabled
        self.num_steps = 0
        self.num_records = 0
        self.spill_rows = SPILL_ROWS if spill_rows is None else spill_rows
        self._pending = PendingRows()
        self._rows = np.empty(0, dtype=ROW)
        self._size = 0
        self._shared = False  # views of `_rows` were handed out: grow by copying, never in place
        self._file: IO[bytes] | None = None  # rows before the in-memory ones (a temporary file)
        self._spilled = 0
        self._by_instance: InstanceRows | None = None  # `by_instance()`, made on first use

    def record(
        self, instance: int, start: float, end: float, num_steps: int, prefill_tokens: int, decodes: int,
        running: int, waiting: int, kv: float, joules: float = 0.0,
    ) -> None:
        self.num_steps += num_steps
        self.num_records += 1
        if not self.enabled:
            return
        pending = self._pending
        pending.append(instance, start, end, num_steps, prefill_tokens, decodes, running, waiting, kv, joules)
        if len(pending) >= BLOCK_ROWS:
            self._flush(BLOCK_ROWS)

    def record_steps(
        self, instance: int, starts: list[float], ends: list[float], prefills: list[int], decodes: list[int],
        running: list[int], waiting: list[int], kv: list[float], joules: list[float],
    ) -> None:
        """`record` of one step per item of `starts` and the lists beside it (its prefill
        tokens, decodes, running and waiting requests, KV usage and joules: the steps of a run),
        in one call; blocks move to the array where `record` would move them."""
        n = len(starts)
        self.num_steps += n
        self.num_records += n
        if not self.enabled:
            return
        pending = self._pending
        pending.extend(instance, starts, ends, prefills, decodes, running, waiting, kv, joules)
        while len(pending) >= BLOCK_ROWS:
            self._flush(BLOCK_ROWS)

    @property
    def spilled(self) -> bool:
        """Whether older rows wait in the temporary file (the log is long)."""
        return self._file is not None

    def _flush(self, count: int = 0) -> None:
        """Move the first `count` pending rows (all of them if 0) into the array, growing it by
        at least a block (or 1/16)."""
        count = count or len(self._pending)
        if self._size + count > self.spill_rows and not self._shared:
            self._spill()
        size = self._size + count
        if size > len(self._rows):
            capacity = max(size, self._size + self._size // 16)
            if self._shared:
                grown = np.empty(capacity, dtype=ROW)
                grown[: self._size] = self._rows[: self._size]
                self._rows, self._shared = grown, False
            else:
                self._rows.resize(capacity, refcheck=False)
        self._pending.take(self._rows[self._size : size])
        self._size = size

    def _spill(self) -> None:
        """Append the in-memory rows to the temporary file and empty the array (kept for reuse)."""
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="servesim-steps-")
        file = self._file
        file.seek(0, 2)
        self._rows[: self._size].tofile(file)
        self._spilled += self._size
        self._size = 0

    def chunks(self) -> Iterator[np.ndarray]:
        """The rows in log order as structured arrays of at most `READ_ROWS` rows (the file's
        rows read back a piece at a time, then those in memory)."""
        if len(self._pending):
            self._flush()
        if self._file is not None:
            self._file.seek(0)
            left = self._spilled
            while left:
                piece = np.fromfile(self._file, dtype=ROW, count=min(left, READ_ROWS))
                left -= len(piece)
                yield piece
        for at in range(0, self._size, READ_ROWS):
            yield self._rows[at : min(at + READ_ROWS, self._size)]

    def by_instance(self) -> InstanceRows:
        """The rows regrouped by instance (`InstanceRows`), kept while the log does not grow."""
        split = self._by_instance
        if split is None or split.records != self.num_records:
            split = self._by_instance = InstanceRows(self)
        return split

    def _table(self) -> np.ndarray:
        if len(self._pending):
            self._flush()
        if self._file is not None:  # the whole log in memory: asked for as arrays
            table = np.empty(self._spilled + self._size, dtype=ROW)
            at = 0
            for piece in self.chunks():
                table[at : at + len(piece)] = piece
                at += len(piece)
            self._rows, self._size, self._file, self._spilled = table, len(table), None, 0
        if not self._shared and len(self._rows) > self._size:
            self._rows.resize(self._size, refcheck=False)  # give the spare capacity back
        self._shared = True
        return self._rows[: self._size]

    def columns(self, widen: bool = True) -> dict[str, np.ndarray]:
        """Each column as an array: integers as int64 copies (`widen`) or int32 views, floats as
        views into the log."""
        table = self._table()
        if not widen:
            return {c: table[c] for c in COLUMNS}
        return {c: table[c].astype(np.int64) if table.dtype[c].kind == "i" else table[c] for c in COLUMNS}

    @property
    def rows(self) -> dict[str, list]:
        """The columns as Python lists (tests and small logs)."""
        return {c: v.tolist() for c, v in self.columns().items()}

    def to_columns(self) -> Columns:
        """The log as a table without pandas (`metrics.columns`); integer columns stay int32 views
        (no copy: a million-request run's log is millions of rows)."""
        if not self.num_records or not self.enabled:
            return Columns({c: np.empty(0, dtype=object) for c in COLUMNS})  # as an empty frame
        if self.spilled:  # read back only if asked for
            return LazyColumns(lambda: self.columns(widen=False), self.num_records, self)
        return Columns(self.columns(widen=False))

    def to_frame(self):
        import pandas as pd

        if not self.num_records or not self.enabled:
            return pd.DataFrame({c: [] for c in COLUMNS}, columns=list(COLUMNS))
        return pd.DataFrame(self.columns(), columns=list(COLUMNS), copy=False)


class InstanceRows:
    """A log's instances in order of first appearance, whether each one's starts strictly
    increase in log order (`start_order`), and each one's rows in log order (`pieces`), from a
    temporary file that holds every instance's rows one after another. Reading a long log of n
    instances once per instance reads it n times; this reads it twice and writes it once."""

    def __init__(self, log: StepLog):
        self.records = log.num_records
        self._log = log
        self._file: IO[bytes] | None = None
        counts, first, last, ordered = {}, {}, {}, True
        seen = 0
        for piece in log.chunks():
            for i, rows, at in _groups(piece):
                starts = rows["start_s"]
                if i not in first:
                    first[i], last[i], counts[i] = seen + at, -np.inf, 0
                ordered = ordered and bool(starts[0] > last[i]) and bool(np.all(starts[1:] > starts[:-1]))
                last[i] = starts[-1]
                counts[i] += len(rows)
            seen += len(piece)
        self.instances = sorted(first, key=first.get)  # type: ignore[arg-type]  # every key is in
        self.start_order = self.instances if ordered else None
        """The instances in order of first appearance, or None if some instance's starts do not
        strictly increase in log order."""
        self.counts = counts
        self._offsets = dict(zip(self.instances, itertools.accumulate(
            (counts[i] for i in self.instances), initial=0)))

    def pieces(self, instance: int) -> Iterator[np.ndarray]:
        """`instance`'s rows in log order, at most `READ_ROWS` at a time."""
        if self._file is None:
            self._write()
        file = self._file
        assert file is not None  # `_write` made it
        at, left = self._offsets.get(instance, 0), self.counts.get(instance, 0)
        while left:
            file.seek(at * ROW.itemsize)  # other readers may have moved it
            piece = np.fromfile(file, dtype=ROW, count=min(left, READ_ROWS))
            at, left = at + len(piece), left - len(piece)
            yield piece

    def _write(self) -> None:
        self._file = file = tempfile.TemporaryFile(prefix="servesim-steps-by-instance-")
        written = dict(self._offsets)
        for piece in self._log.chunks():
            for i, rows, _ in _groups(piece):
                file.seek(written[i] * ROW.itemsize)
                rows.tofile(file)
                written[i] += len(rows)


def _groups(piece: np.ndarray):
    """(instance, its rows in log order, index of its first row) for each instance in `piece`."""
    inst = piece["instance"]
    if inst[0] == inst[-1] and bool(np.all(inst == inst[0])):
        yield int(inst[0]), piece, 0
        return
    order = np.argsort(_sort_keys(inst), kind="stable")
    grouped = np.ascontiguousarray(piece).view(RAW_ROW)[order].view(ROW)
    ids = inst[order]
    starts = [0, *(np.flatnonzero(ids[1:] != ids[:-1]) + 1).tolist(), len(grouped)]
    for k in range(len(starts) - 1):
        at = starts[k]
        yield int(ids[at]), grouped[at : starts[k + 1]], int(order[at])


def _sort_keys(instances: np.ndarray) -> np.ndarray:
    """Instance indexes as 16-bit keys where they fit: numpy sorts those stably by radix, in one
    pass, where 32-bit keys take a merge sort."""
    if int(instances.min()) >= 0 and int(instances.max()) < 1 << 15:
        return instances.astype(np.int16)
    return instances


class LazyColumns(Columns):
    """`Columns` made by `load` on first use (a long step log read back from its file)."""

    def __init__(self, load, length: int, log=None):
        self._load = load
        self._len = length
        self._loaded: dict | None = None
        self._log = log

    @property
    def unread_log(self) -> StepLog | None:
        """The `StepLog` these columns come from while they are not read yet (else None): a
        consumer may read it piece by piece instead (`metrics.timeseries`)."""
        return self._log if self._loaded is None else None

    @property
    def _cols(self) -> dict:  # type: ignore[override]  # `Columns` holds it; here read on first use
        if self._loaded is None:
            self._loaded = {name: np.asarray(v) for name, v in self._load().items()}
        return self._loaded
