"""Metrics: flat per-request and per-step records, and the summary statistics."""

from servesim.metrics.steps import StepLog
from servesim.metrics.summary import REQUEST_COLUMNS, request_frame, summarize

__all__ = ["REQUEST_COLUMNS", "StepLog", "request_frame", "summarize"]
