"""Metrics: flat per-request and per-step records, and the summary statistics."""

from servesim.metrics.steps import StepLog
from servesim.metrics.summary import REQUEST_COLUMNS, request_frame, summarize
from servesim.metrics.timeseries import instance_timeseries

__all__ = [
    "REQUEST_COLUMNS",
    "StepLog",
    "instance_timeseries",
    "request_frame",
    "summarize",
]
