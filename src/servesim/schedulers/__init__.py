"""Scheduling policies behind one protocol; importing this registers the built-ins."""

from servesim.schedulers import fcfs  # noqa: F401  (registers)
from servesim.schedulers.base import (
    SCHEDULERS,
    BaseScheduler,
    EngineLimits,
    Scheduler,
    SchedulerLoad,
    SchedulerParams,
)

__all__ = [
    "SCHEDULERS",
    "BaseScheduler",
    "EngineLimits",
    "Scheduler",
    "SchedulerLoad",
    "SchedulerParams",
]
