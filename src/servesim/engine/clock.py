"""The engine's sleeps and wakes, made cheaper than SimPy's general ones.

`skip_ahead`: a process that sleeps yields a `Timeout`; SimPy queues it, pops it when its time
comes and resumes the process through its generator chain, a few microseconds per sleep. When
the sleep ends strictly before every event already queued, nothing can run in between (no other
process, no interrupt, no `until` of `env.run`: all of them are queued events), so the clock can
move forward in place and the process go on at once. Everyone else sees the same schedule: the
next event popped is the one that would have been popped after the timeout, at the same time,
and events created later keep their creation order (SimPy breaks same-time ties by it). Only the
count of processed events differs. This is valid only for a process resumed by events it alone
waits on (its own timeouts, its own wake-up event, wakes): the event that resumed it then has no
other callbacks to run after it, at a clock they would not expect.

`wake_early` wakes a sleeping process as `Process.interrupt()` does, at the same point of the
schedule, but sends it a value where an interrupt throws an exception through its generators
(every decode run an arrival cuts short), and takes the event it slept on off the schedule
(lazily: `ABANDONED`; `cluster.CountingEnvironment` drops such events as they come due).
`wake_later` and `wake_at` move such a process's wake-up to a later time instead, for one whose
answer to an early wake would only be a sleep until then: the queued event itself moves up the
heap (`_move_earlier`), scheduled as a new timeout would be, with nothing left abandoned.
`now` reads the clock without SimPy's property (a Python call per read; the engine reads the
clock a few times a step).

`reserve_order`, `timeout_at` and `skip_to` let a process sleep in two hops where SimPy would
see one timeout (a decode run priced lazily, `engine.decode_run`): the second hop lands on the
time the one timeout would have had, in the place among same-time events that it would have
had (SimPy orders them by a counter taken when an event is scheduled).

This is the one place servesim reads SimPy's private state (`Environment._queue`, `_now`, `_eid`;
an event's `_ok`, `_value`; a process's `_target`, `_resume`; SimPy 4).
"""

from __future__ import annotations

import heapq
from functools import partial

import simpy
from simpy.core import NORMAL, URGENT
from simpy.events import PENDING

WOKEN = "woken early"
"""What a process asleep on an event receives when `wake_early` wakes it before the event."""
WOKEN_LATER = "woken for later"
"""What a process receives when `wake_later` or `wake_at` has moved its wake-up earlier than its
sleep's end."""


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
    if not _nothing_due_by(env._queue, end):
        return False
    if not delay >= 0:  # (NaN too) the timeout raises as it would have
        return False
    env._now = end
    return True


def _nothing_due_by(queue: list, end: float) -> bool:
    """No event but abandoned ones queued at or before `end`."""
    if queue:
        first: float = queue[0][0]
        if first <= end:  # a same-time event was queued first: it goes first, unless abandoned
            # (a short queue's abandoned events left it at once: `_unschedule`; returning False
            # is always safe, the caller then sleeps through SimPy)
            if len(queue) <= SHORT_QUEUE or queue[0][3].callbacks is not ABANDONED:
                return False
            drop_abandoned(queue)
            if queue:
                first = queue[0][0]
                if first <= end:
                    return False
    return True


def skip_to(env: simpy.Environment, at: float) -> bool:
    """`skip_ahead` to the time `at` itself rather than by a delay (`at` is not before now)."""
    if not _nothing_due_by(env._queue, at):
        return False
    env._now = at
    return True


def reserve_order(env: simpy.Environment) -> int:
    """The place among same-time events of a timeout created now, for `timeout_at` to use later."""
    return next(env._eid)


def timeout_at(env: simpy.Environment, at: float, order: int) -> simpy.Event:
    """A timeout that fires at the time `at` in the place `order` (`reserve_order`) among events
    due then: as the timeout created when `order` was reserved, with the delay that lands on `at`,
    would. Each order serves one pending timeout at a time."""
    event = simpy.Event(env)
    event._ok, event._value = True, None
    heapq.heappush(env._queue, (at, NORMAL, order, event))
    return event


def wake_early(process: simpy.Process) -> None:
    """Resume `process`, asleep on an event, at the current time instead, as
    `Process.interrupt()` would: an urgent event, processed once the event in hand is done, after
    which the event it slept on resumes nobody. It receives `WOKEN` from its `yield` where an
    interrupt would throw `simpy.Interrupt` into it: no exception made, thrown through each of its
    generators and caught (several microseconds a wake)."""
    env = process.env
    event = env.event()
    event._ok, event._value = True, WOKEN
    event.callbacks.append(partial(_resume_early, process))  # type: ignore[union-attr]  # not yet processed
    env.schedule(event, URGENT)


def wake_later(process: simpy.Process, delay: float) -> None:
    """Move the wake-up of `process`, asleep on an event, to `delay` (> 0) seconds from now, where
    it receives `WOKEN_LATER`: for a process whose only response to `wake_early` would be a sleep
    of `delay` (a decode run finishing its step in flight), one timeout instead of an urgent wake
    and a timeout, landing at the same time (`now + delay`, as that timeout would)."""
    env = process.env
    if _move_earlier(env, process._target, env._now + delay):
        return
    _forget(process)
    event = env.timeout(delay, WOKEN_LATER)
    event.callbacks.append(process._resume)  # type: ignore[union-attr]  # not yet processed
    process._target = event


def wake_at(process: simpy.Process, at: float) -> None:
    """`wake_later`, to the time `at` itself (not before now): where the process would have slept
    until exactly then (a mixed run cut before its last chunk)."""
    env = process.env
    if _move_earlier(env, process._target, at):
        return
    _forget(process)
    event = simpy.Event(env)
    event._ok, event._value = True, WOKEN_LATER
    event.callbacks.append(process._resume)  # type: ignore[union-attr]  # not yet processed
    heapq.heappush(env._queue, (at, NORMAL, next(env._eid), event))
    process._target = event


def _move_earlier(env: simpy.Environment, event: simpy.Event, at: float) -> bool:
    """Reschedule `event`, queued and waited on by one process alone, to the earlier time `at`
    with `WOKEN_LATER`, as the timeout made now for `at` would be scheduled (the next order among
    same-time events); False, changing nothing, where it is not such an event or `at` is not
    earlier (a process's end or a condition, whose value others read, is queued for now: never
    later than `at`). The entry is moved up the heap in place (a scan and a sift), where a new
    timeout would leave the old one queued, abandoned, until its time: in a fleet ~40% of SimPy's
    queue, every push and pop a level deeper."""
    callbacks = event.callbacks
    if callbacks is None or len(callbacks) != 1:
        return False
    queue: list = env._queue
    for at_index in range(len(queue) - 1, -1, -1):  # (from the leaves: a late wake-up mostly is one)
        entry: tuple = queue[at_index]  # (typed: compiled, a tuple's own indexing)
        if entry[3] is event:
            due: float = entry[0]
            if not at < due or entry[1] != NORMAL:
                return False
            event._value = WOKEN_LATER
            _sift_up(queue, at_index, (at, NORMAL, next(env._eid), event))
            return True
    return False


def _sift_up(queue: list, index: int, entry: tuple) -> None:
    """Put `entry`, no later than the one at `index`, there, and restore the heap toward the root:
    `heapq._siftdown`'s work, compiled here (heapq's is private, untyped and interpreted; calling
    it made the 8,000-request fleet 4,429.4M -> 4,450.9M instructions)."""
    while index > 0:
        parent = (index - 1) >> 1
        if not entry < queue[parent]:
            break
        queue[index] = queue[parent]
        index = parent
    queue[index] = entry


def _forget(process: simpy.Process) -> None:
    """Take `process` off the event it sleeps on (which leaves the schedule if nobody else waits)."""
    slept_on = process._target
    slept_on.callbacks.remove(process._resume)  # type: ignore[union-attr]  # it sleeps on it
    if not slept_on.callbacks:
        _unschedule(process.env, slept_on)


def _resume_early(process: simpy.Process, event: simpy.Event) -> None:
    if process._value is not PENDING:  # it ended meanwhile (an instance failure)
        return
    _forget(process)
    process._resume(event)


ABANDONED: list = []
"""The callbacks of a queued event nobody waits on any more (`wake_early`): it stays in the queue,
where taking it out would cost a scan of the queue and a re-heapify, and is dropped once it comes
to the head (`drop_abandoned`). An environment that does not drop it pops it as a no-op."""


SHORT_QUEUE = 8
"""Queues up to this long (one instance's) lose an abandoned event at once: a scan of a few entries
costs less than carrying it to the head; longer ones (a fleet's) mark it `ABANDONED`."""


def _unschedule(env: simpy.Environment, event: simpy.Event) -> None:
    """Take `event`, which nobody waits on any more, off the schedule: it will not be processed
    (nor counted), nor keep `skip_ahead` from moving the clock past it."""
    queue = env._queue
    if len(queue) > SHORT_QUEUE:
        event.callbacks = ABANDONED
        return
    for at, entry in enumerate(queue):
        if entry[3] is event:
            last = queue.pop()
            if at < len(queue):
                queue[at] = last
                heapq.heapify(queue)
            return


def drop_abandoned(queue: list) -> None:
    """Pop the abandoned events at the head of SimPy's queue `queue`: the environment's `step`
    and `peek`, and `skip_ahead`, then see the next event that will run."""
    while queue and queue[0][3].callbacks is ABANDONED:
        heapq.heappop(queue)
