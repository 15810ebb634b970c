"""Trace readers, one per format, all producing the normalised `RequestTable`.

`read_trace(path)` detects the format from the file itself unless one is named; a user format is a
`module:Class` path implementing `TraceReader`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servesim.core.errors import InputFileError
from servesim.workload.readers import azure, burstgpt, csv, lengths, mooncake, servegen  # noqa: F401 (registers)
from servesim.workload.readers.base import Probe, ReadOptions, ReadReport, TraceReader, probe
from servesim.workload.readers.registry import READERS
from servesim.workload.table import RequestTable

DETECTION_ORDER = ("servegen", "mooncake", "azure", "burstgpt", "lengths", "csv")
"""Most specific first: the generic csv reader accepts what the others leave."""


@dataclass
class TraceData:
    """A trace as read: its requests, what the reader dropped, and the format it was read as."""

    table: RequestTable
    report: ReadReport
    format: str


def reader_for(spec: str | dict, key: str = "workload.trace.format") -> TraceReader:
    """The reader a format value names: `name` or `{name: ..., <params>}`."""
    return READERS.create(spec, key)


def detect_format(path: Path) -> str:
    """The first registered format whose reader recognises the file."""
    p = probe(path)
    if not p.head and not path.is_dir():
        raise InputFileError(path, "empty file: no requests")
    names = list(DETECTION_ORDER) + [n for n in READERS.names() if n not in DETECTION_ORDER]
    for name in names:
        if READERS.get(name)().sniff(p):
            return name
    raise InputFileError(
        path,
        f"cannot tell the trace format from its content; name one of {', '.join(READERS.names())} "
        "(--format, or workload.trace.format)",
    )


def read_trace(
    path: str | Path,
    fmt: str | dict | None = None,
    options: ReadOptions | None = None,
    rng: np.random.Generator | None = None,
    format_key: str = "workload.trace.format",
) -> TraceData:
    """Read a trace file into requests sorted by arrival; what was dropped is in the report."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file or folder")
    spec = fmt or detect_format(path)
    reader = reader_for(spec, format_key)
    name = spec if isinstance(spec, str) else spec["name"]
    options = options or ReadOptions()
    report = ReadReport()
    rng = rng if rng is not None else np.random.default_rng(0)
    table = reader.read(path, options, report, rng)
    return TraceData(table, report, name)


__all__ = [
    "READERS",
    "DETECTION_ORDER",
    "Probe",
    "ReadOptions",
    "ReadReport",
    "TraceData",
    "TraceReader",
    "detect_format",
    "read_trace",
    "reader_for",
]
