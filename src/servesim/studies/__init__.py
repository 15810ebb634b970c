"""Studies on top of `servesim.simulate()`: sweeps, capacity search, comparisons, plots, timelines.

Plots live in `servesim.studies.plots` (imported on demand: it pulls in matplotlib).
"""

from servesim.studies.capacity import (
    CapacityResult,
    Target,
    attainment_target,
    find_capacity,
    parse_target,
)
from servesim.studies.compare import compare_summaries, compare_sweeps
from servesim.studies.paired import PairedResult, paired_compare
from servesim.studies.sweep import plan_sweep, run_sweep
from servesim.studies.timeline import chrome_trace, write_chrome_trace

__all__ = [
    "CapacityResult",
    "PairedResult",
    "Target",
    "attainment_target",
    "chrome_trace",
    "compare_summaries",
    "compare_sweeps",
    "find_capacity",
    "paired_compare",
    "parse_target",
    "plan_sweep",
    "run_sweep",
    "write_chrome_trace",
]
