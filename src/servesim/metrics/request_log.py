"""Ended requests as compact columns: what requests.csv and the metrics need of each, no objects.

A run that made its requests as they arrived (`engine.stream`) writes each one here when it ends
and drops it, so memory holds the requests in flight plus ~70 bytes per ended request. What the
table already says (arrival, lengths, class, SLOs) is not copied: `columns` joins it back and gives
exactly what `summary.request_columns` gives for the same requests.
"""

from __future__ import annotations

import struct
from typing import Final

import numpy as np

from servesim.core.request import Request
from servesim.metrics.columns import Columns
from servesim.metrics.summary import REQUEST_COLUMNS, add_latencies, status_names

RECORD = np.dtype([  # a request's outcome: (column or field, dtype, value before it is written)
    ("request_id", np.int64),
    ("instance", np.int32),
    ("first_token_s", np.float64),
    ("finish_s", np.float64),
    ("preemptions", np.int32),
    ("status", np.int8),
    ("rejected_reason", np.int16),  # index into RequestLog.reasons
    ("cached_tokens", np.int32),
    ("generated_tokens", np.int32),
    ("prefill_instance", np.int32),
    ("handoff_s", np.float64),
    ("first_scheduled_s", np.float64),
    ("retries", np.int32),
    ("migrations", np.int32),
    ("max_gap", np.float64),
])
BLOCK = 4096
WIDE = {"i": np.int64}  # requests.csv's integer columns are int64, as request_columns makes them
_STRUCT_INTS = {1: "b", 2: "h", 4: "i", 8: "q"}  # struct's code of a signed integer of each size


def struct_code(dtype: np.dtype) -> str:
    """`struct`'s code of a signed integer or float64 `dtype` at standard sizes (`dtype.char`
    will not do: int64's is 'l', which `struct` packs in four bytes)."""
    return "d" if dtype == np.float64 else _STRUCT_INTS[dtype.itemsize]


CODES = [struct_code(RECORD[name]) for name in RECORD.names or ()]
PACK: Final = struct.Struct("=" + "".join(CODES)).pack
"""A record's bytes in `RECORD`'s layout (its fields packed, no padding: standard sizes, native
byte order), from its values in field order: the bytes numpy's conversion of a list of record
tuples to `RECORD` gives, for a fifth of its instructions (~1,700 a record against ~7,800)."""
RAW: Final = np.dtype((np.void, RECORD.itemsize))
"""A record as its bytes alone: an array of it copies a record as one piece, where `RECORD`'s
copies field by field (~15 times the instructions)."""


class RequestLog:
    """One record per request of the table, indexed by request id, written once it ended (or,
    for those still in flight or never admitted, at the end of the run)."""

    def __init__(self, num_requests: int):
        self.records = np.zeros(num_requests, dtype=RECORD)
        self.records["request_id"] = np.arange(num_requests)
        for name in ("first_token_s", "finish_s", "handoff_s", "first_scheduled_s"):
            self.records[name] = np.nan
        self.records["instance"] = self.records["prefill_instance"] = -1
        self.reasons: dict[str, int] = {"": 0}
        self._pending: list[bytes] = []  # records not yet in `records`, packed (joined once a block)
        self._block: int = BLOCK

    def write(self, r: Request) -> None:
        reason = self.reasons.setdefault(r.rejected_reason, len(self.reasons))
        self._pending.append(PACK(
            r.request_id, r.instance, r.first_token_time, r.finish_time, r.num_preemptions, r.status,
            reason, r.num_cached_tokens, r.num_generated_tokens, r.prefill_instance, r.handoff_time,
            r.first_scheduled_time, r.num_retries, r.num_migrations, r.max_token_gap,
        ))
        if len(self._pending) >= self._block:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            pending = b"".join(self._pending)
            self._pending.clear()
            ids = np.frombuffer(pending, dtype=RECORD)["request_id"]
            self.records.view(RAW)[ids] = np.frombuffer(pending, dtype=RAW)

    def columns(self, rows: np.ndarray | slice, factory) -> Columns:
        """requests.csv's columns of `rows` (request ids, ascending); `factory` (a
        `workload.factory.RequestFactory`) gives what the table says of each. Ends the log: its
        records are let go as the columns are made."""
        self._flush()
        table = factory.table
        rec, self.records = self.records[rows], np.empty(0, dtype=RECORD)  # a view when `rows` is a slice
        cols = {
            "request_id": rec["request_id"].astype(np.int64),
            "arrival_s": np.array(table.arrival_s[rows]),
            "prompt_tokens": np.array(table.prompt_tokens[rows]),
            "output_tokens": np.array(table.output_tokens[rows]),
            "class": factory.class_names()[rows],
            "ttft_slo_s": factory.ttft_slo[rows],
            "tpot_slo_s": factory.tpot_slo[rows],
            "rejected_reason": np.array(list(self.reasons), dtype=object)[rec["rejected_reason"]],
        }
        for name in ("instance", "first_token_s", "finish_s", "preemptions", "cached_tokens",
                     "generated_tokens", "prefill_instance", "handoff_s", "first_scheduled_s",
                     "retries", "migrations"):
            values = rec[name]
            cols[name] = values.astype(WIDE.get(values.dtype.kind, values.dtype))
        add_latencies(cols, status_names(rec["status"]), rec["max_gap"])
        return Columns({c: cols[c] for c in REQUEST_COLUMNS})
