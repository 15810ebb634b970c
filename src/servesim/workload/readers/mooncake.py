"""Mooncake (Kimi) traces: JSON Lines of timestamp (ms), input_length, output_length, hash_ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from servesim.core.errors import InputFileError
from servesim.workload.readers.base import (
    SKIP_HINT,
    Probe,
    ReadOptions,
    ReadReport,
    RowChecker,
    finalize,
    open_text,
)
from servesim.workload.readers.registry import READERS
from servesim.workload.table import RequestTable

if TYPE_CHECKING:  # imported where used: a run that reads no trace (or a plain length file) skips pandas
    pass

FIELDS = ("timestamp", "input_length", "output_length", "hash_ids")
BLOCK_SIZE = 512
"""Tokens per `hash_ids` block in the Mooncake release."""


@READERS.register("mooncake")
class MooncakeTraceReader:
    """`hash_ids[k]` names the prompt's k-th block of `block_size` tokens (the last one may be partial):
    equal ids are shareable KV. A row must carry exactly ceil(input_length / block_size) ids."""

    timed = True

    def sniff(self, probe: Probe) -> bool:
        if not probe.head or not probe.head[0].lstrip().startswith("{"):
            return False
        try:
            row = json.loads(probe.head[0])
        except ValueError:
            return False
        return isinstance(row, dict) and {"timestamp", "input_length", "output_length"} <= row.keys()

    def read(self, path: Path, options: ReadOptions, report: ReadReport, rng) -> RequestTable:
        import pandas as pd

        rows, lines = parse_jsonl(path, options, report)
        block = options.block_size or BLOCK_SIZE
        check = RowChecker(path, lines, options, report, noun="field")
        cols = {f: pd.Series([r.get(f) for r in rows]) for f in FIELDS[:3]}
        stamp = check.numeric(cols["timestamp"], "timestamp", integer=False)
        prompt = check.numeric(cols["input_length"], "input_length")
        output = check.numeric(cols["output_length"], "output_length")
        hashes = [r.get("hash_ids") for r in rows]
        if all(h is None for h in hashes):  # a Mooncake-like file without prefix information
            keep = check.finish()
            return finalize(path, RequestTable(stamp[keep] / 1000.0, prompt[keep], output[keep]), report)
        count = np.array([_id_count(h) for h in hashes], dtype=np.int64)
        expected = np.ceil(np.nan_to_num(prompt) / block).astype(np.int64)
        check.flag(count == -2, "missing", lambda i: "field 'hash_ids': missing")
        check.flag(count < 0, "bad_hash_ids", lambda i: "field 'hash_ids': expected a list of integers")
        check.flag(
            count != expected,
            "bad_hash_ids",
            lambda i: (
                f"field 'hash_ids': expected ceil(input_length / {block}) = {expected[i]} ids, got "
                f"{count[i]} (set workload.trace.block_size if the blocks are not {block} tokens)"
            ),
        )
        keep = check.finish()
        kept = np.flatnonzero(keep).tolist()
        table = RequestTable(
            stamp[keep] / 1000.0,
            prompt[keep],
            output[keep],
            prefix_hashes=[tuple(hashes[i]) for i in kept],
            hash_block_size=block,
        )
        return finalize(path, table, report)


def _id_count(ids) -> int:
    if ids is None:
        return -2
    if not isinstance(ids, list) or not all(type(x) is int for x in ids):
        return -1
    return len(ids)


def parse_jsonl(path: Path, options: ReadOptions, report: ReadReport) -> tuple[list[dict], np.ndarray]:
    """Objects of the non-blank lines and their 1-based line numbers. One C-level parse of the
    whole file; only when that fails, line by line to find (or skip) the bad lines."""
    try:
        with open_text(path) as fh:
            text = fh.read()
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc.strerror or exc})") from None
    all_lines = text.splitlines()
    numbered = [(i + 1, s) for i, s in enumerate(all_lines) if s.strip()]
    try:
        rows = json.loads("[" + ",".join(s for _, s in numbered) + "]")
        if all(isinstance(r, dict) for r in rows):
            return rows, np.array([n for n, _ in numbered], dtype=np.int64)
    except ValueError:
        pass
    rows, lines, bad = [], [], 0
    for n, s in numbered:
        try:
            row = json.loads(s)
        except ValueError as exc:
            row, why = None, f"invalid JSON ({exc.msg})"
        else:
            why = None if isinstance(row, dict) else "expected a JSON object"
        if why is None:
            rows.append(row)
            lines.append(n)
        elif options.skip_bad_rows:
            bad += 1
        else:
            raise InputFileError(path, f"{why} {SKIP_HINT}", n)
    report.count(report.skipped, "bad_json", bad)
    return rows, np.array(lines, dtype=np.int64)
