"""Length files (ShareGPT, arXiv summarization, LMSYS): num_prefill_tokens, num_decode_tokens; no clock."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from servesim.workload.readers.base import (
    Probe,
    ReadOptions,
    ReadReport,
    RowChecker,
    finalize,
    open_text,
    read_csv,
    require_columns,
)
from servesim.workload.readers.registry import READERS
from servesim.workload.table import RequestTable

PROMPT, OUTPUT = "num_prefill_tokens", "num_decode_tokens"


@READERS.register("lengths")
class LengthsTraceReader:
    """(prompt, output) pairs in file order; arrivals come from elsewhere (`arrival:` or resampling)."""

    timed = False

    def sniff(self, probe: Probe) -> bool:
        return {PROMPT, OUTPUT} <= set(probe.header)

    def read(self, path: Path, options: ReadOptions, report: ReadReport, rng) -> RequestTable:
        plain = read_plain(path)
        if plain is not None:
            prompt, output = plain
            return finalize(path, RequestTable(np.zeros(len(prompt)), prompt, output, timed=False), report)
        frame = read_csv(path, options, report)
        require_columns(frame, path, (PROMPT, OUTPUT))
        check = RowChecker(path, frame["_line"].to_numpy(), options, report)
        prompt = check.numeric(frame[PROMPT], PROMPT)
        output = check.numeric(frame[OUTPUT], OUTPUT)
        keep = check.finish()
        n = int(keep.sum())
        return finalize(path, RequestTable(np.zeros(n), prompt[keep], output[keep], timed=False), report)


_UNUSUAL = set(' \t\r+_"')
"""Characters the checking reader may read differently from numpy's parser (or reject): a file with
any of them after its header takes the checking path."""


def read_plain(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The two length columns of a file with nothing to report, parsed by numpy without pandas:
    every line with the header's number of fields, nothing unusual in the rows (`_UNUSUAL`), both
    lengths finite non-negative integers. None for any other file, which the checking reader then
    reads (and reports on, naming the line)."""
    with open_text(path) as fh:
        text = fh.read().lstrip("\ufeff")
    head, _, body = text.partition("\n")
    header = head.split(",")
    if PROMPT not in header or OUTPUT not in header or any(c in body for c in _UNUSUAL):
        return None
    columns = (header.index(PROMPT), header.index(OUTPUT))
    values = _digit_columns(body, len(header), columns)  # checks the field counts itself
    if values is None:
        if not _fields_match(body, len(header) - 1):
            return None
        try:
            values = np.loadtxt(io.StringIO(body), delimiter=",", usecols=columns, dtype=np.float64,
                                comments=None, ndmin=2)
        except ValueError:
            return None
    if not (np.isfinite(values).all() and (values >= 0).all() and (values == np.round(values)).all()):
        return None
    return values[:, 0].copy(), values[:, 1].copy()


def _fields_match(body: str, commas: int) -> bool:
    """Every non-empty line of `body` has exactly `commas` commas (numpy, not a Python loop per line:
    a length file has tens of thousands of lines and this runs on every start)."""
    raw = np.frombuffer(body.encode(), dtype=np.uint8)
    ends = np.append(np.flatnonzero(raw == ord("\n")), raw.size)  # one past each line
    starts = np.concatenate(([0], ends[:-1] + 1))
    per_line = np.bincount(np.searchsorted(ends, np.flatnonzero(raw == ord(","))), minlength=ends.size)
    return bool((per_line[ends > starts] == commas).all())


def _digit_columns(body: str, fields: int, columns: tuple[int, ...]) -> np.ndarray | None:
    """`columns` of `body` as np.loadtxt reads them (float64, one row a line) when every line has
    `fields` fields and those columns hold only 1-15 decimal digits: ~6 ms in numpy where loadtxt
    and the field count check take ~20 ms for a 28k-line file. None for anything else (blank
    lines, signs, decimals, other field counts), which they then read."""
    raw = np.frombuffer(body.encode(), dtype=np.uint8)
    ends = np.flatnonzero((raw == ord(",")) | (raw == ord("\n"))).astype(np.int32)  # one past each field
    if raw.size and raw[-1] != ord("\n"):
        ends = np.append(ends, np.int32(raw.size))  # the last line has no newline
    if ends.size == 0 or ends.size % fields:
        return None
    ends = ends.reshape(-1, fields)
    newline = np.append(raw, np.uint8(ord("\n")))[ends] == ord("\n")
    if newline[:, :-1].any() or not newline[:, -1].all():
        return None  # a line with other fields, or a blank line
    out = np.empty((len(ends), len(columns)))
    for i, c in enumerate(columns):
        end = ends[:, c]
        start = ends[:, c - 1] + 1 if c else np.concatenate(([0], ends[:-1, -1] + 1))
        width = end - start
        widest = int(width.max())
        if width.min() < 1 or widest > 15:  # up to 15 digits: exact in a float64
            return None
        value = np.zeros(len(end))
        for k in range(widest, 0, -1):  # each field's k-th byte from its end, most significant first
            present = width >= k
            digit = raw[np.where(present, end - k, 0)] - np.uint8(ord("0"))  # a non-digit wraps past 9
            digit[~present] = 0
            if (digit > 9).any():
                return None
            value = value * 10 + digit  # whole numbers below 2**53: exact
        out[:, i] = value
    return out
