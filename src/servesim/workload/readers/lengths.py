"""Length files (ShareGPT, arXiv summarization, LMSYS): num_prefill_tokens, num_decode_tokens; no clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from servesim.workload.readers.base import (
    Probe,
    ReadOptions,
    ReadReport,
    RowChecker,
    finalize,
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
        frame = read_csv(path, options, report)
        require_columns(frame, path, (PROMPT, OUTPUT))
        check = RowChecker(path, frame["_line"].to_numpy(), options, report)
        prompt = check.numeric(frame[PROMPT], PROMPT)
        output = check.numeric(frame[OUTPUT], OUTPUT)
        keep = check.finish()
        n = int(keep.sum())
        return finalize(path, RequestTable(np.zeros(n), prompt[keep], output[keep], timed=False), report)
