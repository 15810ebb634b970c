"""BurstGPT (Azure OpenAI GPT traffic): columns read by name, so the 6- and 8-column files both work."""

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
)
from servesim.workload.readers.registry import READERS
from servesim.workload.table import RequestTable

if TYPE_CHECKING:  # imported where used: a run that reads no trace (or a plain length file) skips pandas
    pass

TIME, REQUEST, RESPONSE, SESSION = "Timestamp", "Request tokens", "Response tokens", "Session ID"


@READERS.register("burstgpt")
class BurstGPTTraceReader:
    """`Timestamp` is seconds from 0:00 of the first day. Rows with zero response tokens are failed
    requests: dropped and counted as `failed`. `Session ID` (8-column files, conversation rows)
    becomes the session id."""

    timed = True

    def sniff(self, probe: Probe) -> bool:
        return {TIME, REQUEST, RESPONSE} <= set(probe.header)

    def read(self, path: Path, options: ReadOptions, report: ReadReport, rng) -> RequestTable:
        import pandas as pd

        frame = read_csv(path, options, report)
        require_columns(frame, path, (TIME, REQUEST, RESPONSE))
        check = RowChecker(path, frame["_line"].to_numpy(), options, report)
        stamp = check.numeric(frame[TIME], TIME, integer=False)
        prompt = check.numeric(frame[REQUEST], REQUEST)
        output = check.numeric(frame[RESPONSE], RESPONSE)
        keep = check.finish()
        failed = keep & (output == 0)
        report.count(report.dropped, "failed", int(failed.sum()))
        keep &= ~failed
        sessions = None
        if SESSION in frame:
            codes, _ = pd.factorize(frame[SESSION].to_numpy()[keep])
            sessions = codes.astype(np.int64)  # NaN (API rows) factorizes to -1: no session
        table = RequestTable(stamp[keep], prompt[keep], output[keep], session_id=sessions)
        return finalize(path, table, report)
