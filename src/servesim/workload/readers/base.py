"""What every trace reader shares: the protocol, options, the report of dropped rows, row checks."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Protocol

import numpy as np

from servesim.core.errors import InputFileError
from servesim.workload.table import RequestTable

if TYPE_CHECKING:  # imported where used: a run that reads no trace (or a plain length file) skips pandas
    import pandas as pd

SKIP_HINT = "(skip such rows with --skip-bad-rows or workload.trace.skip_bad_rows)"


@dataclass(frozen=True)
class ReadOptions:
    """How to read. `start_s`/`end_s` are hints: readers that synthesise requests (servegen)
    generate only that part of the trace clock; the replay step cuts the window exactly."""

    skip_bad_rows: bool = False
    block_size: int | None = None
    columns: dict[str, str] | None = None
    time_unit: str = "s"
    start_s: float = 0.0
    end_s: float = math.inf


@dataclass
class ReadReport:
    """Rows a read dropped, by reason, and notes for the user (sorted timestamps and the like)."""

    skipped: dict[str, int] = field(default_factory=dict)
    """Malformed rows dropped because skip-bad-rows was asked."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Well-formed rows dropped by design (BurstGPT failures, zero-token rows)."""
    warnings: list[str] = field(default_factory=list)

    def count(self, bucket: dict[str, int], reason: str, n: int) -> None:
        if n:
            bucket[reason] = bucket.get(reason, 0) + int(n)

    def messages(self, path) -> list[str]:
        out = [f"{path}: {w}" for w in self.warnings]
        if self.skipped:
            out.append(f"{path}: skipped {sum(self.skipped.values())} bad row(s): {_fmt(self.skipped)}")
        if self.dropped:
            out.append(f"{path}: dropped {sum(self.dropped.values())} row(s): {_fmt(self.dropped)}")
        return out


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


@dataclass(frozen=True)
class Probe:
    """What format detection looks at: the path and the first lines of text (empty for folders)."""

    path: Path
    head: tuple[str, ...]

    @property
    def header(self) -> list[str]:
        return [c.strip().strip('"') for c in self.head[0].split(",")] if self.head else []


class TraceReader(Protocol):
    """Reads one file format into the normalised `RequestTable`.

    - `sniff(probe)`: True when the file looks like this format. Cheap; never raises.
    - `read(path, options, report, rng)`: one request per valid row, arrival seconds on the trace's
      own clock, sorted by arrival (out-of-order rows are sorted and a warning is added to `report`).
      A malformed row raises `InputFileError(path, what, line)` naming its first line, unless
      `options.skip_bad_rows`: then such rows are dropped and counted in `report.skipped[reason]`.
      No rows left is an `InputFileError`. Only readers that synthesise requests draw from `rng`.
    - `timed`: False when the format has no timestamps (length files).
    """

    timed: ClassVar[bool]

    def sniff(self, probe: Probe) -> bool: ...

    def read(
        self, path: Path, options: ReadOptions, report: ReadReport, rng: np.random.Generator
    ) -> RequestTable: ...


def open_text(path: Path):
    """A text handle, transparently gunzipping `.gz` files."""
    if path.suffix == ".gz":
        import gzip  # imported by the runs that read a compressed trace

        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def probe(path: Path, num_lines: int = 3) -> Probe:
    if path.is_dir():
        return Probe(path, ())
    try:
        with open_text(path) as fh:
            head = []
            for line in fh:
                if line.strip():
                    head.append(line.lstrip("\ufeff").rstrip("\r\n"))
                if len(head) >= num_lines:
                    break
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc.strerror or exc})") from None
    return Probe(path, tuple(head))


# -- CSV files: one vectorised parse, then vectorised checks; line numbers only for the message ----

_FIELDS_RE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def read_csv(path: Path, options: ReadOptions, report: ReadReport, header: bool = True) -> pd.DataFrame:
    """The file as a frame with a `_line` column (1-based line in the file).

    Blank lines are ignored. A row with too many fields fails naming its line, or, when skipping,
    is dropped and counted as `extra_fields`.
    """
    import pandas as pd

    # only an empty cell is missing: "nan" or "NA" in a trace is text, hence a bad value
    kwargs = dict(skip_blank_lines=False, header=0 if header else None, keep_default_na=False, na_values=[""])
    aligned = True  # row i of the frame is line i + header lines of the file
    try:
        frame = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise InputFileError(path, "empty file: no header and no rows") from None
    except pd.errors.ParserError as exc:
        m = _FIELDS_RE.search(str(exc))
        if m is None:
            raise InputFileError(path, f"not a readable CSV file ({exc})") from None
        if not options.skip_bad_rows:
            expected, line, saw = m.groups()
            message = f"expected {expected} fields, saw {saw} {SKIP_HINT}"
            raise InputFileError(path, message, int(line)) from None
        frame = _read_csv_dropping_long_rows(path, kwargs, report)
        aligned = False
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    frame["_line"] = np.arange(len(frame)) + (2 if header else 1)
    empty = frame.drop(columns="_line").isna().all(axis=1).to_numpy()
    if not empty.any():
        return frame
    if aligned:  # an empty line is no row; a line of bare commas is a row with missing fields
        blank = _blank_lines(path, set(frame["_line"].to_numpy()[empty].tolist()))
        empty = empty & frame["_line"].isin(blank).to_numpy()
    return frame[~empty].reset_index(drop=True)


def _blank_lines(path: Path, candidates: set[int]) -> set[int]:
    """Which of these line numbers hold only whitespace (one pass, only when a row came out empty)."""
    with open_text(path) as fh:
        return {n for n, text in enumerate(fh, start=1) if n in candidates and not text.strip()}


def _read_csv_dropping_long_rows(path: Path, kwargs: dict, report: ReadReport) -> pd.DataFrame:
    import pandas as pd

    # the slow parser, only on the rare file with over-long rows when skipping was asked;
    # line numbers no longer matter then (nothing will be reported by line)
    dropped = []
    frame = pd.read_csv(path, engine="python", on_bad_lines=lambda row: dropped.append(row), **kwargs)
    report.count(report.skipped, "extra_fields", len(dropped))
    return frame


def require_columns(frame: pd.DataFrame, path: Path, names) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        have = ", ".join(c for c in frame.columns if c != "_line")
        raise InputFileError(
            path, f"missing column(s) {', '.join(map(repr, missing))}; the header has {have}", 1
        )


def show(value) -> str:
    """A cell as the user wrote it: text quoted, numbers plain (12.5, -4), never numpy reprs."""
    if isinstance(value, str):
        return repr(value)
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return repr(value)


class RowChecker:
    """Collects bad rows over several vectorised checks, then fails on the earliest line or drops them.

    Each row keeps the first reason flagged for it. `finish()` returns the mask of rows to keep.
    """

    def __init__(
        self, path: Path, lines: np.ndarray, options: ReadOptions, report: ReadReport, noun: str = "column"
    ):
        self.path, self.lines, self.options, self.report = path, np.asarray(lines), options, report
        self.noun = noun
        self.reason = np.full(len(self.lines), -1, dtype=np.int16)
        self.checks: list[tuple[str, Callable[[int], str]]] = []

    def flag(self, mask: np.ndarray, reason: str, describe: Callable[[int], str]) -> None:
        """Mark rows where `mask` holds; `describe(row)` says what is wrong with one of them."""
        mask = np.asarray(mask, dtype=bool) & (self.reason < 0)
        if mask.any():
            self.reason[mask] = len(self.checks)
            self.checks.append((reason, describe))

    def numeric(self, values, column: str, *, integer: bool = True, positive: bool = False) -> np.ndarray:
        """The column as float64, flagging missing, non-numeric, negative and fractional values."""
        import pandas as pd

        raw = pd.Series(values).reset_index(drop=True)
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            x = raw.to_numpy(dtype=np.float64)
            missing = nan = np.isnan(x)
        else:  # text in the column: coerce, and tell blanks from words
            x = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
            nan = np.isnan(x)
            missing = nan & (raw.isna().to_numpy() | (raw.astype(str).str.strip() == "").to_numpy())
        self.flag(missing, "missing", lambda i: f"{self.noun} {column!r}: missing value")
        self.flag(
            nan | np.isinf(x),
            "non_numeric",
            lambda i: f"{self.noun} {column!r}: expected a number, got {show(raw[i])}",
        )
        with np.errstate(invalid="ignore"):
            bad_sign = (x <= 0) if positive else (x < 0)
        need = "a positive" if positive else "a non-negative"
        self.flag(
            bad_sign,
            "negative",
            lambda i: f"{self.noun} {column!r}: expected {need} number, got {show(raw[i])}",
        )
        if integer:
            with np.errstate(invalid="ignore"):
                frac = np.isfinite(x) & (x != np.round(x))
            self.flag(
                frac,
                "non_integer",
                lambda i: f"{self.noun} {column!r}: expected an integer, got {show(raw[i])}",
            )
        return x

    def finish(self) -> np.ndarray:
        bad = self.reason >= 0
        if not bad.any():
            return ~bad
        if not self.options.skip_bad_rows:
            first = int(np.flatnonzero(bad)[0])
            _, describe = self.checks[self.reason[first]]
            raise InputFileError(self.path, f"{describe(first)} {SKIP_HINT}", int(self.lines[first]))
        for k, (reason, _) in enumerate(self.checks):
            self.report.count(self.report.skipped, reason, int((self.reason == k).sum()))
        return ~bad


def finalize(path: Path, table: RequestTable, report: ReadReport, *, drop_zero: bool = True) -> RequestTable:
    """Drop zero-token rows (unservable: counted, not errors), sort by time, refuse an empty result."""
    if drop_zero:
        zero = (table.prompt_tokens == 0) | (table.output_tokens == 0)
        if zero.any():
            report.count(report.dropped, "zero_tokens", int(zero.sum()))
            table = table.take(~zero)
    if len(table) == 0:
        raise InputFileError(
            path,
            "no requests in the trace" + (" after dropping rows" if report.skipped or report.dropped else ""),
        )
    if table.timed and len(table) > 1 and np.any(np.diff(table.arrival_s) < 0):
        n = int((np.diff(table.arrival_s) < 0).sum())
        report.warnings.append(f"timestamps out of order at {n} row(s); sorted by time")
        table = table.sorted_by_arrival()
    return table
