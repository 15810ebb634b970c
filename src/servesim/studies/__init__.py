"""Studies on top of `servesim.simulate()`: sweeps, capacity search, comparisons, plots, timelines.

Plots live in `servesim.studies.plots` (imported on demand: it pulls in matplotlib). The names below
are imported on first use, so the command line's parser (which reads `timeline`'s defaults) does
not load every study module on each start.
"""

import importlib

_HOMES = {
    "CapacityResult": "capacity",
    "Target": "capacity",
    "attainment_target": "capacity",
    "find_capacity": "capacity",
    "parse_target": "capacity",
    "compare_summaries": "compare",
    "compare_sweeps": "compare",
    "PairedResult": "paired",
    "paired_compare": "paired",
    "plan_sweep": "sweep",
    "run_sweep": "sweep",
    "chrome_trace": "timeline",
    "write_chrome_trace": "timeline",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"servesim.studies.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'servesim.studies' has no attribute {name!r}")
