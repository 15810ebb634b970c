"""Any CSV with a column mapping; by default the columns `servesim trace generate` writes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from servesim.core.errors import ConfigError, InputFileError
from servesim.workload.readers.base import (
    Probe,
    ReadOptions,
    ReadReport,
    RowChecker,
    finalize,
    read_csv,
    show,
)
from servesim.workload.readers.registry import READERS
from servesim.workload.table import RequestTable

if TYPE_CHECKING:  # imported where used: a run that reads no trace (or a plain length file) skips pandas
    pass

DEFAULT_COLUMNS = {
    "arrival": ("arrival_s", "arrival_time", "timestamp", "time"),
    "prompt": ("prompt_tokens", "input_tokens", "input_length", "num_prefill_tokens"),
    "output": ("output_tokens", "output_length", "num_decode_tokens"),
    "session": ("session_id",),
    "class": ("class", "class_name"),
    "priority": ("priority",),
    "ttft_slo": ("ttft_slo_s",),
    "tpot_slo": ("tpot_slo_s",),
    "hash_ids": ("hash_ids",),
}
"""Mapping keys and the column names tried for each when the mapping leaves a key out."""
UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


@READERS.register("csv")
class CsvTraceReader:
    """Columns named by `workload.trace.columns` (keys: arrival, prompt, output, session, class,
    priority, ttft_slo, tpot_slo, hash_ids). Without an arrival column the file is lengths only.
    `hash_ids` is space-separated integers; its block size comes from `block_size` or a
    `hash_block_size` column."""

    timed = True

    def sniff(self, probe: Probe) -> bool:
        header = set(probe.header)
        return any(c in header for c in DEFAULT_COLUMNS["prompt"]) and any(
            c in header for c in DEFAULT_COLUMNS["output"]
        )

    def read(self, path: Path, options: ReadOptions, report: ReadReport, rng) -> RequestTable:
        frame = read_csv(path, options, report)
        cols = resolve_columns(frame.columns, options.columns or {}, path)
        check = RowChecker(path, frame["_line"].to_numpy(), options, report)
        timed = "arrival" in cols
        arrival = check.numeric(frame[cols["arrival"]], cols["arrival"], integer=False) if timed else None
        prompt = check.numeric(frame[cols["prompt"]], cols["prompt"])
        output = check.numeric(frame[cols["output"]], cols["output"])
        extra = {}
        if "priority" in cols:
            extra["priority"] = check.numeric(frame[cols["priority"]], cols["priority"])
        for key in ("ttft_slo", "tpot_slo"):
            if key in cols:
                extra[key] = _optional_float(frame[cols[key]], cols[key], check)
        hashes = _hash_lists(frame[cols["hash_ids"]], check) if "hash_ids" in cols else None
        if "session" in cols:
            extra["session_id"] = _session_ids(frame[cols["session"]])
        if "class" in cols:
            extra["class_name"] = frame[cols["class"]].fillna("default").astype(str).to_numpy()
        keep = check.finish()
        n = int(keep.sum())
        extra = {k: v[keep] for k, v in extra.items()}
        if hashes is not None:
            extra["prefix_hashes"] = [hashes[i] for i in np.flatnonzero(keep).tolist()]
            extra["hash_block_size"] = _block_size(frame, keep, options, path)
        seconds = arrival[keep] * UNIT_SECONDS[options.time_unit] if timed else np.zeros(n)
        table = RequestTable(seconds, prompt[keep], output[keep], timed=timed, **extra)
        return finalize(path, table, report)


def resolve_columns(header, mapping: dict[str, str], path: Path) -> dict[str, str]:
    unknown = sorted(set(mapping) - set(DEFAULT_COLUMNS))
    if unknown:
        raise ConfigError(
            "workload.trace.columns", f"unknown key {unknown[0]!r}; valid: {', '.join(DEFAULT_COLUMNS)}"
        )
    header = [c for c in header if c != "_line"]
    cols = {}
    for key, names in DEFAULT_COLUMNS.items():
        if key in mapping:
            if mapping[key] not in header:
                raise InputFileError(
                    path,
                    f"no column {mapping[key]!r} (mapped as {key}); the header has {', '.join(header)}",
                    1,
                )
            cols[key] = mapping[key]
        else:
            found = next((n for n in names if n in header), None)
            if found is not None:
                cols[key] = found
    for key in ("prompt", "output"):
        if key not in cols:
            raise InputFileError(
                path,
                f"no {key} column (tried {', '.join(DEFAULT_COLUMNS[key])}); "
                f"map one with workload.trace.columns.{key}",
                1,
            )
    return cols


def _session_ids(values) -> np.ndarray:
    """Integer ids as they are; any other labels numbered in order of first appearance."""
    import pandas as pd

    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.notna().sum() and (numeric.dropna() % 1 == 0).all():
        return numeric.fillna(-1).to_numpy(dtype=np.int64)
    codes, _ = pd.factorize(values)
    return codes.astype(np.int64)


def _optional_float(values, column: str, check: RowChecker) -> np.ndarray:
    """A column where blank means "not set" (NaN), e.g. a per-request SLO."""
    present = ~values.isna().to_numpy()
    x = np.full(len(values), np.nan)
    if present.any():
        parsed = check.numeric(values.where(present, 1.0), column, integer=False, positive=True)
        x[present] = parsed[present]
    return x


def _hash_lists(values, check: RowChecker) -> list[tuple[int, ...]]:
    out, bad = [], np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values.tolist()):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append(())
            continue
        try:
            out.append(tuple(int(x) for x in str(v).split()))
        except ValueError:
            out.append(())
            bad[i] = True
    raw = values.reset_index(drop=True)
    check.flag(
        bad,
        "bad_hash_ids",
        lambda i: f"column 'hash_ids': expected space-separated integers, got {show(raw[i])}",
    )
    return out


def _block_size(frame, keep, options: ReadOptions, path: Path) -> int:
    if options.block_size:
        return options.block_size
    if "hash_block_size" in frame:
        sizes = frame["hash_block_size"].to_numpy()[keep]
        if len(sizes) and np.all(sizes == sizes[0]) and float(sizes[0]) >= 1:
            return int(sizes[0])
    raise InputFileError(
        path, "hash_ids need a block size: add a hash_block_size column or set workload.trace.block_size"
    )
