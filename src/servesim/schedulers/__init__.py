"""Scheduling: policies (the order of requests), batchings (how a step is filled) and the
mechanics they share; importing this registers the built-ins."""

from servesim.schedulers import edf, fcfs, priority, srtf  # noqa: F401  (registers)
from servesim.schedulers.batching import BATCHINGS, Batching, BatchingParams
from servesim.schedulers.core import EngineLimits, RankedList, Scheduler, SchedulerLoad
from servesim.schedulers.policy import (
    POLICIES,
    BasePolicy,
    Policy,
    PolicyParams,
    PreemptiveParams,
    Ranked,
    SchedulerView,
)

__all__ = [
    "BATCHINGS",
    "POLICIES",
    "BasePolicy",
    "Batching",
    "BatchingParams",
    "EngineLimits",
    "Policy",
    "PolicyParams",
    "PreemptiveParams",
    "Ranked",
    "RankedList",
    "Scheduler",
    "SchedulerLoad",
    "SchedulerView",
]
