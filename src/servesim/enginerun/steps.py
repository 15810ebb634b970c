"""An engine's step log (`steps.csv` / `steps.csv.gz`) as step shapes and timings.

Required per step: `start_s, end_s` (seconds on the run's clock), `prefill_lens` ('+'-joined chunk
lengths, empty if none), `num_decode_seqs`, `sum_decode_ctx`. Optional: `prefill_prefix` (tokens already
cached before each chunk; default 0), `max_decode_ctx`, `kind` (checked against the content),
`decode_bucket` (the CUDA-graph batch a decode step replayed, 0 if eager) and the timing columns
`gpu_ms`, `host_enqueue_ms` (alias `enqueue_ms`). A decode's context counts its new token
(the KV length it attends), as engines log it; shapes use the simulator's convention (cached tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servesim.core.errors import InputFileError
from servesim.cost.base import StepShape
from servesim.enginerun.table import Column, read_columns

KINDS = ("prefill", "decode", "mixed")
STEP_COLUMNS = [
    Column("start_s", "float"),
    Column("end_s", "float"),
    Column("prefill_lens", "ints"),
    Column("num_decode_seqs", "int"),
    Column("sum_decode_ctx", "int"),
    Column("prefill_prefix", "ints", required=False),
    Column("max_decode_ctx", "int", required=False),
    Column("kind", "text", required=False),
    Column("gpu_ms", "float", required=False, blank_ok=True),
    Column("host_enqueue_ms", "float", required=False, aliases=("enqueue_ms",), blank_ok=True),
    Column("decode_bucket", "int", required=False, blank_ok=True),
]


@dataclass
class EngineSteps:
    path: Path
    lines: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    kind: np.ndarray
    """prefill, decode or mixed, from the content."""
    shapes: list[StepShape]
    gpu_s: np.ndarray | None
    """Device time of the step (launch to last kernel, host-bound waits included), if logged."""
    enqueue_s: np.ndarray | None
    """Host time to issue the step's kernels, if logged."""
    decode_bucket: np.ndarray | None = None
    """Batch size of the CUDA graph a decode step replayed (0: eager), if logged."""

    def __len__(self) -> int:
        return len(self.shapes)

    @property
    def wall_s(self) -> np.ndarray:
        return self.end_s - self.start_s

    @property
    def gap_s(self) -> np.ndarray:
        """Loop time between a step's end and the next one's start (NaN after the last step)."""
        gap = np.full(len(self), np.nan)
        gap[:-1] = self.start_s[1:] - self.end_s[:-1]
        return gap


def read_steps(path: Path) -> EngineSteps:
    cols, lines = read_columns(path, STEP_COLUMNS)
    n = len(lines)
    lens = cols["prefill_lens"]
    prefix = cols.get("prefill_prefix") or [()] * n
    shapes, kinds = [], []
    for i in range(n):
        shape = _shape(path, int(lines[i]), lens[i], prefix[i], cols, i)
        kind = _kind(shape)
        given = cols["kind"][i] if "kind" in cols else ""
        if given and given != kind:
            raise InputFileError(path, f"kind: {given!r} but the step holds a {kind} step", int(lines[i]))
        shapes.append(shape)
        kinds.append(kind)
    start, end = np.array(cols["start_s"]), np.array(cols["end_s"])
    _check_times(path, lines, start, end)
    return EngineSteps(
        path,
        lines,
        start,
        end,
        np.array(kinds),
        shapes,
        _seconds(cols.get("gpu_ms")),
        _seconds(cols.get("host_enqueue_ms")),
        np.array(cols["decode_bucket"]) if "decode_bucket" in cols else None,
    )


def _shape(path: Path, line: int, lens, prefix, cols, i: int) -> StepShape:
    def fail(msg: str):
        raise InputFileError(path, msg, line)

    if any(c == 0 for c in lens):
        fail("prefill_lens: chunk lengths must be >= 1")
    if prefix and len(prefix) != len(lens):
        fail(f"prefill_prefix: {len(prefix)} entries for {len(lens)} prefill chunks")
    n, total = cols["num_decode_seqs"][i], cols["sum_decode_ctx"][i]
    if not lens and not n:
        fail("empty step: no prefill chunks and no decodes")
    if total < n:
        fail(f"sum_decode_ctx: {total} is less than one token for each of {n} decodes")
    longest = cols["max_decode_ctx"][i] if "max_decode_ctx" in cols else -1
    if n and longest >= 0 and not (-(-total // n) <= longest <= total - (n - 1)):
        fail(f"max_decode_ctx: {longest} is impossible for {n} decodes summing to {total}")
    chunks = [(c, p) for c, p in zip(lens, prefix or [0] * len(lens))]
    cached_longest = longest - 1 if n and longest >= 1 else -1
    return StepShape(chunks, n, total - n, max_decode_ctx=cached_longest)


def _kind(shape: StepShape) -> str:
    if not shape.prefill_chunks:
        return "decode"
    return "mixed" if shape.num_decodes else "prefill"


def _check_times(path: Path, lines: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
    bad = np.flatnonzero(end <= start)
    if len(bad):
        raise InputFileError(path, "end_s: must be after start_s", int(lines[bad[0]]))
    back = np.flatnonzero(start[1:] < end[:-1] - 1e-6)
    if len(back):
        line = int(lines[back[0] + 1])
        raise InputFileError(path, "start_s: steps overlap (before the previous end_s)", line)


def _seconds(values) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.array(values, dtype=float) / 1e3
    return arr if np.isfinite(arr).any() else None
