"""Workloads: where requests come from (synthetic generators, trace readers, classes, sessions)."""

from servesim.workload.compose import build_requests
from servesim.workload.readers import READERS, ReadOptions, ReadReport, TraceReader, detect_format, read_trace
from servesim.workload.table import RequestTable

__all__ = [
    "READERS",
    "ReadOptions",
    "ReadReport",
    "RequestTable",
    "TraceReader",
    "build_requests",
    "detect_format",
    "read_trace",
]
