"""Trace replay: cut a window of the trace's clock, cap it, and rescale its clock.

Select, then scale: `start_s` and `duration_s` are on the trace's own clock; the window's first
instant becomes t = 0; then every arrival is multiplied by the time scale. Scaling the clock keeps
the burst structure (inter-arrival CV, the shape of the rate over time) and changes only the rate.
"""

from __future__ import annotations

import numpy as np

from servesim.config.workload import TraceConfig
from servesim.core.errors import ConfigError
from servesim.workload.table import RequestTable


def cut_window(table: RequestTable, cfg: TraceConfig, key: str) -> RequestTable:
    """The requests in [start_s, start_s + duration_s), at most `max_requests`, clock from 0."""
    if not table.timed:
        return _cut_untimed(table, cfg, key)
    t = table.arrival_s
    mask = t >= cfg.start_s
    if cfg.duration_s is not None:
        mask &= t < cfg.start_s + cfg.duration_s
    picked = np.flatnonzero(mask)
    if cfg.max_requests is not None:
        picked = picked[: cfg.max_requests]
    if len(picked) == 0:
        raise ConfigError(
            f"{key}.start_s", f"no request of the trace falls in the window starting at {cfg.start_s} s"
        )
    window = table.take(picked)
    return window.with_arrivals(window.arrival_s - cfg.start_s)


def _cut_untimed(table: RequestTable, cfg: TraceConfig, key: str) -> RequestTable:
    for name in ("start_s", "duration_s", "rate"):
        if getattr(cfg, name) not in (None, 0.0):
            raise ConfigError(
                f"{key}.{name}", "the trace has no timestamps; arrivals come from workload.arrival"
            )
    if cfg.time_scale != 1.0:
        raise ConfigError(
            f"{key}.time_scale", "the trace has no timestamps; arrivals come from workload.arrival"
        )
    return table.take(np.arange(min(len(table), cfg.max_requests or len(table))))


def observed_rate(table: RequestTable) -> float:
    """Rows over span (last minus first arrival), as `servesim trace info` reports it."""
    span = float(table.arrival_s[-1] - table.arrival_s[0]) if len(table) else 0.0
    return len(table) / span if span > 0 else float("nan")


def time_scale_for(table: RequestTable, cfg: TraceConfig, key: str, target_rate: float | None) -> float:
    """The clock factor: `time_scale`, or what brings the window to the target rate."""
    target = target_rate if target_rate is not None else cfg.rate
    if target is None:
        return cfg.time_scale
    rate = observed_rate(table)
    if not np.isfinite(rate):
        raise ConfigError(
            f"{key}.rate",
            "cannot rescale: the replayed window spans no time (fewer than two distinct arrivals)",
        )
    return rate / target


def replay(table: RequestTable, cfg: TraceConfig, key: str, target_rate: float | None = None) -> RequestTable:
    """The window, its clock scaled (to `target_rate` when given, which wins over the trace's own options)."""
    window = cut_window(table, cfg, key)
    if not window.timed:
        return window
    scale = time_scale_for(window, cfg, key, target_rate)
    return window if scale == 1.0 else window.with_arrivals(window.arrival_s * scale)
