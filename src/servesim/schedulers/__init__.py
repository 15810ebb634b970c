"""Scheduling policies behind one protocol; importing this registers the built-ins."""

from servesim.schedulers import chunked_prefill, edf, fcfs, priority, srtf  # noqa: F401  (registers)
from servesim.schedulers.base import (
    SCHEDULERS,
    BaseScheduler,
    EngineLimits,
    Scheduler,
    SchedulerLoad,
    SchedulerParams,
)
from servesim.schedulers.ranked import RankedScheduler

__all__ = [
    "SCHEDULERS",
    "BaseScheduler",
    "EngineLimits",
    "RankedScheduler",
    "Scheduler",
    "SchedulerLoad",
    "SchedulerParams",
]
