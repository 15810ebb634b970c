"""Length files (ShareGPT, arXiv summarization, LMSYS): num_prefill_tokens, num_decode_tokens; no clock."""

from __future__ import annotations

import re
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


_COUNT = re.compile(r"[0-9]+")


def read_plain(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The two length columns of a file with nothing to report (a plain header, every line with
    the header's number of fields, both lengths plain integers, no quoting, no blank lines), read
    without pandas; None for any other file, which the checking reader then reads (and reports on)."""
    with open_text(path) as fh:
        text = fh.read()
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or '"' in text:
        return None
    header = lines[0].split(",")
    if PROMPT not in header or OUTPUT not in header:
        return None
    i, j = header.index(PROMPT), header.index(OUTPUT)
    prompt, output = [], []
    for line in lines[1:]:
        cells = line.split(",")
        if len(cells) != len(header) or not (_COUNT.fullmatch(cells[i]) and _COUNT.fullmatch(cells[j])):
            return None
        prompt.append(cells[i])
        output.append(cells[j])
    return np.array(prompt, dtype=np.float64), np.array(output, dtype=np.float64)
