"""Azure LLM inference traces (2023 "Splitwise", 2024): TIMESTAMP, ContextTokens, GeneratedTokens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from servesim.workload.readers.base import (
    Probe,
    ReadOptions,
    ReadReport,
    RowChecker,
    finalize,
    read_csv,
    require_columns,
    show,
)
from servesim.workload.readers.registry import READERS
from servesim.workload.table import RequestTable

if TYPE_CHECKING:  # imported where used: a run that reads no trace (or a plain length file) skips pandas
    import pandas as pd

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


@READERS.register("azure")
class AzureTraceReader:
    """Wall-clock timestamps (2023: `2023-11-16 18:17:03.9799600`, naive; 2024: with `+00:00`),
    read as UTC; the clock starts at the earliest request."""

    timed = True

    def sniff(self, probe: Probe) -> bool:
        return {"ContextTokens", "GeneratedTokens"} <= set(probe.header)

    def read(self, path: Path, options: ReadOptions, report: ReadReport, rng) -> RequestTable:
        frame = read_csv(path, options, report)
        require_columns(frame, path, COLUMNS)
        check = RowChecker(path, frame["_line"].to_numpy(), options, report)
        stamps = parse_timestamps(frame["TIMESTAMP"], check, "TIMESTAMP")
        prompt = check.numeric(frame["ContextTokens"], "ContextTokens")
        output = check.numeric(frame["GeneratedTokens"], "GeneratedTokens")
        keep = check.finish()
        stamps = stamps[keep]
        seconds = (stamps - stamps.min()).dt.total_seconds().to_numpy() if len(stamps) else np.zeros(0)
        return finalize(path, RequestTable(seconds, prompt[keep], output[keep]), report)


def parse_timestamps(raw: pd.Series, check: RowChecker, column: str) -> pd.Series:
    """ISO-8601 wall-clock times as UTC (naive ones taken as UTC), flagging unparseable ones."""
    import pandas as pd

    raw = raw.reset_index(drop=True)
    if raw.dtype.kind in "iufb":  # bare numbers are not date-times, whatever pandas makes of them
        raw = raw.where(raw.isna(), raw.astype(str))  # (numbers with a format: a future pandas's epochs)
    stamps = pd.to_datetime(raw, format="ISO8601", utc=True, errors="coerce")
    retry = stamps.isna() & raw.notna()
    if retry.any():  # rare: stray spaces around a stamp (stripping every row costs more than parsing)
        # the whole column again: assigning a subset can fail on mixed datetime resolutions
        stripped = raw.where(raw.isna(), raw.astype(str).str.strip())
        stamps = pd.to_datetime(stripped, format="ISO8601", utc=True, errors="coerce")
    check.flag(raw.isna().to_numpy(), "missing", lambda i: f"column {column!r}: missing value")
    check.flag(
        stamps.isna().to_numpy(),
        "bad_timestamp",
        lambda i: f"column {column!r}: expected a date-time like 2023-11-16 18:17:03.98, got {show(raw[i])}",
    )
    return stamps
