"""Sleeping without a SimPy event when nothing else can happen meanwhile.

A process that sleeps yields a `Timeout`: SimPy queues it, pops it when its time comes and
resumes the process through its generator chain, a few microseconds per sleep. When the sleep
ends strictly before every event already queued, nothing can run in between (no other process,
no interrupt, no `until` of `env.run`: all of them are queued events), so the clock can move
forward in place and the process go on at once. Everyone else sees the same schedule: the next
event popped is the one that would have been popped after the timeout, at the same time, and
events created later keep their creation order (SimPy breaks same-time ties by it). Only the
count of processed events differs.

This is the one place servesim reads SimPy's private state (`Environment._queue`, `_now`;
SimPy 4). Skipping ahead is valid only for a process resumed by events it alone waits on (its own
timeouts, its own wake-up event, interrupts): the event that resumed it then has no other
callbacks to run after it, at a clock they would not expect. `now` reads the clock without
SimPy's property (a Python call per read; the engine reads the clock a few times a step).
"""

from __future__ import annotations

import simpy


def now(env: simpy.Environment) -> float:
    """`env.now`, read as the attribute it returns (compiled, a dictionary lookup instead of a
    call into SimPy's property)."""
    return env._now


def skip_ahead(env: simpy.Environment, delay: float) -> bool:
    """Move the clock `delay` seconds forward in place if no queued event comes at or before
    then, and return True; otherwise leave everything as it is and return False (the caller
    yields `env.timeout(delay)`). The new time is `now + delay`, as a timeout's would be."""
    # (floats typed: compiled, SimPy's times are `int | float` objects, numpy floats among
    # them, whose comparison would give a numpy bool where compiled code wants a bool)
    end: float = env._now + delay
    queue = env._queue
    if queue:
        first: float = queue[0][0]
        if first <= end:  # a same-time event was queued first: it goes first
            return False
    if not delay >= 0:  # (NaN too) the timeout raises as it would have
        return False
    env._now = end
    return True
