"""Scheduling: policies (the order of requests), batchings (how a step is filled) and the
mechanics they share; importing this registers the default policy; the
others register when a config first names one (`POLICIES.lazy`)."""

from servesim.schedulers import fcfs  # noqa: F401  (registers the default)
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

POLICIES.lazy("servesim.schedulers.edf", "edf")
POLICIES.lazy("servesim.schedulers.priority", "priority")
POLICIES.lazy("servesim.schedulers.srtf", "srtf")

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
