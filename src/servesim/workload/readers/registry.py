"""The registry of trace formats (a separate module so readers can register without import cycles)."""

from servesim.registry import Registry

READERS = Registry("trace format", "workload.trace.format", required=("sniff", "read"))
"""Trace readers by format name; the order of registration is the order of auto-detection."""
