"""Sleeps without an event (engine/clock.py): the clock moves in place only when nothing is due
first, and whole simulations are bit for bit those that sleep through SimPy's queue."""

from __future__ import annotations

from contextlib import ExitStack
from unittest import mock

import pandas as pd
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

import servesim
from servesim.engine.clock import (
    SHORT_QUEUE,
    WOKEN,
    WOKEN_LATER,
    reserve_order,
    skip_ahead,
    skip_to,
    timeout_at,
    wake_at,
    wake_early,
    wake_later,
)
from servesim.engine.cluster import CountingEnvironment
from tests.factories import same_summary, small_config
from tests.test_invariants import chunked_configs, configs, pooled_queued_chunked_configs, timed

USERS = ("servesim.engine.instance", "servesim.engine.decode_run", "servesim.engine.mixed_run")
"""Modules that sleep with `skip_ahead`."""


def test_the_clock_moves_in_place_when_nothing_is_due_first():
    env = simpy.Environment(initial_time=1.5)
    assert skip_ahead(env, 0.25) and env.now == 1.75  # nothing queued at all
    env.timeout(1.0)
    assert skip_ahead(env, 0.5) and env.now == 2.25  # due at 2.75, after the sleep's end


def test_an_event_due_at_or_before_the_end_keeps_the_sleep_a_timeout():
    env = simpy.Environment()
    env.timeout(1.0)
    assert not skip_ahead(env, 1.0) and env.now == 0.0  # a same-time event queued first
    assert not skip_ahead(env, 2.0) and env.now == 0.0
    assert not skip_ahead(env, -1.0) and not skip_ahead(env, float("nan"))  # the timeout raises


def _trace(skip: bool) -> tuple[list, int]:
    """(time, name) of two processes' wake-ups, one of them sleeping with `skip_ahead` (through
    a tie with the other at 1.0 and one with an event it makes itself), and its sleeps skipped."""
    env, seen, skipped = simpy.Environment(), [], [0]

    def sleeper():
        for i, delay in enumerate((0.3, 0.3, 0.4, 0.5, 0.25, 0.25, 0.7)):
            if skip and skip_ahead(env, delay):
                skipped[0] += 1
            else:
                yield env.timeout(delay)
            seen.append((env.now, "sleeper"))
            if i == 4:  # due at once: the next sleep must wait for it
                env.timeout(0.0).callbacks.append(lambda _: seen.append((env.now, "made")))

    def ticker():
        while True:
            yield env.timeout(1.0)
            seen.append((env.now, "ticker"))

    env.process(sleeper())
    env.process(ticker())
    env.run(until=3.5)
    return seen, skipped[0]


def test_others_see_the_same_schedule_ties_included():
    (skipping, skipped), (queued, _) = _trace(skip=True), _trace(skip=False)
    assert skipping == queued
    assert skipped == 4  # 0.3 -> 0.6, 1.0 -> 1.5 -> 1.75, 2.0 -> 2.7; the others wait for an event


@settings(max_examples=20, deadline=None)
@given(timed(st.one_of(configs, chunked_configs, pooled_queued_chunked_configs)))
def test_simulations_equal_those_that_sleep_through_the_queue(changes):
    fast = servesim.simulate(small_config(**changes))
    with ExitStack() as stack:
        for module in USERS:
            stack.enter_context(mock.patch(f"{module}.skip_ahead", lambda env, delay: False))
        stack.enter_context(mock.patch("servesim.engine.decode_run.skip_to", lambda env, at: False))
        slow = servesim.simulate(small_config(**changes))
    pd.testing.assert_frame_equal(fast.requests, slow.requests, check_exact=True)
    pd.testing.assert_frame_equal(fast.steps, slow.steps, check_exact=True)
    assert same_summary(fast.summary, slow.summary, ignore=("wall_s", "events"))


def _woken_trace(wake) -> tuple[list, float]:
    """(time, what) as a sleeper is woken at 1.0 by a waker, `wake(process)` called from the
    waker's step, beside a third process due at 1.0 too; and the time the run ends (the engine's
    environment, which skips abandoned events)."""
    env, seen = CountingEnvironment(), []

    def sleeper():
        try:
            value = yield env.timeout(5.0)
            seen.append((env.now, "sleeper", value))
        except simpy.Interrupt:
            seen.append((env.now, "sleeper", WOKEN))  # as wake_early sends it
        yield env.timeout(0.5)
        seen.append((env.now, "sleeper again", None))

    def waker(process):
        yield env.timeout(1.0)
        wake(process)
        seen.append((env.now, "waker", None))

    def bystander():
        yield env.timeout(1.0)
        seen.append((env.now, "bystander", None))

    process = env.process(sleeper())
    env.process(waker(process))
    env.process(bystander())
    env.run()
    return seen, env.now


def test_a_process_woken_early_runs_where_an_interrupt_would_run_it():
    woken, woken_end = _woken_trace(wake_early)
    interrupted, interrupted_end = _woken_trace(lambda process: process.interrupt())
    assert woken == interrupted == [
        (1.0, "waker", None), (1.0, "sleeper", WOKEN), (1.0, "bystander", None), (1.5, "sleeper again", None),
    ]
    # the timeout it slept on left the schedule; after an interrupt it stays, to pop as a no-op at 5.0
    assert (woken_end, interrupted_end) == (1.5, 5.0)


@pytest.mark.parametrize("bystanders", [0, SHORT_QUEUE])
def test_an_event_taken_off_the_schedule_is_neither_seen_nor_processed(bystanders):
    """An abandoned timeout leaves a short queue at once; a long one (a fleet's) keeps it, marked,
    to spare a scan: either way the engine's environment neither peeks at it nor processes or
    counts it, and `skip_ahead` moves past it."""
    env = CountingEnvironment()

    def sleep(delay):
        yield env.timeout(delay)

    process = env.process(sleep(10.0))
    env.process(sleep(11.0))
    for _ in range(bystanders):
        env.process(sleep(12.0))
    env.run(until=1.0)
    wake_early(process)
    while env._queue[0][0] <= 1.0:  # the wake, and the sleeper's end
        env.step()
    queued = sorted(entry[0] for entry in env._queue)
    assert queued == ([10.0] if bystanders else []) + [11.0] + [12.0] * bystanders
    assert skip_ahead(env, 9.5) and env.now == 10.5  # past the abandoned 10.0, short of 11.0
    assert not skip_ahead(env, 0.5)  # 11.0 is due at the sleep's end
    assert env.peek() == 11.0
    counted = env.num_events
    env.run()
    # the later timeouts, their processes' ends, and the step that finds the queue empty: not 10.0
    assert env.now == (12.0 if bystanders else 11.0)
    assert env.num_events == counted + 2 * (1 + bystanders) + 1



def _moved_trace(moved: bool) -> tuple[list, float, int]:
    """A sleeper (due at 5.0) woken at 1.0, whose answer is to sleep 0.25 more: woken early, then
    a timeout; or its wake-up moved there at once (`wake_later`). A bystander is due at 1.1."""
    env, seen = CountingEnvironment(), []

    def sleeper():
        value = yield env.timeout(5.0)
        if value is WOKEN:
            yield env.timeout(0.25)
        seen.append((env.now, "sleeper", value))

    def waker(process):
        yield env.timeout(1.0)
        wake_later(process, 0.25) if moved else wake_early(process)

    def bystander():
        yield env.timeout(1.1)
        seen.append((env.now, "bystander", None))

    process = env.process(sleeper())
    env.process(waker(process))
    env.process(bystander())
    env.run()
    return seen, env.now, env.num_events


def test_a_moved_wake_up_lands_where_a_woken_sleep_would_end():
    early, early_end, early_events = _moved_trace(moved=False)
    moved, moved_end, moved_events = _moved_trace(moved=True)
    assert early == [(1.1, "bystander", None), (1.25, "sleeper", WOKEN)]
    assert moved == [(1.1, "bystander", None), (1.25, "sleeper", WOKEN_LATER)]
    assert early_end == moved_end == 1.25  # the sleep's own timeout (5.0) left the schedule
    assert moved_events == early_events - 1  # one timeout instead of a wake and a timeout


def test_a_wake_up_moved_to_a_time_lands_on_it_exactly():
    env, seen = CountingEnvironment(), []
    at = 1.0 + 1e-9 * 3  # a time no delay from 1.0 need land on

    def sleeper():
        value = yield env.timeout(5.0)
        seen.append((env.now, value))

    def waker(process):
        yield env.timeout(1.0)
        wake_at(process, at)

    process = env.process(sleeper())
    env.process(waker(process))
    env.run()
    assert seen == [(at, WOKEN_LATER)] and env.now == at  # the sleep's own timeout left the schedule


def test_a_moved_wake_up_still_yields_to_an_interrupt():
    env = simpy.Environment()

    def sleeper():
        try:
            yield env.timeout(5.0)
        except simpy.Interrupt as exc:
            return exc.cause

    process = env.process(sleeper())
    env.run(until=0.5)
    wake_later(process, 1.0)
    process.interrupt("failure")  # an instance failure before the moved wake-up
    env.run()
    assert process.value == "failure" and env.now == 1.5  # the moved timeout pops as a no-op


def test_a_process_that_ended_before_its_early_wake_is_left_alone():
    env = simpy.Environment()

    def sleeper():
        yield env.timeout(5.0)

    process = env.process(sleeper())
    env.run(until=0.5)
    wake_early(process)
    process.interrupt("failure")  # an instance failure first: the process ends
    env.run(until=0.6)  # the early wake finds it ended and does nothing
    assert not process.is_alive


def test_skip_to_moves_the_clock_to_a_time_when_nothing_is_due_by_then():
    env = simpy.Environment(initial_time=1.0)
    env.timeout(1.0)
    assert not skip_to(env, 2.0) and env.now == 1.0  # a same-time event queued first
    assert skip_to(env, 1.75) and env.now == 1.75


def _two_hop_trace(hops: bool) -> list:
    """(time, name) of a sleeper due at 2.0 and a bystander made due at 2.0 after it (at 0.5):
    the sleeper in one timeout, or in two hops (to 1.0, then to 2.0) in its reserved place."""
    env, seen = simpy.Environment(), []

    def sleeper():
        if hops:
            order = reserve_order(env)
            yield timeout_at(env, 1.0, order)
            yield timeout_at(env, 2.0, order)
        else:
            yield env.timeout(2.0)
        seen.append((env.now, "sleeper"))

    def bystander():
        yield env.timeout(0.5)
        yield env.timeout(1.5)
        seen.append((env.now, "bystander"))

    env.process(sleeper())
    env.process(bystander())
    env.run()
    return seen


def test_a_sleep_in_two_hops_keeps_its_place_among_same_time_events():
    assert _two_hop_trace(hops=True) == _two_hop_trace(hops=False) == [(2.0, "sleeper"), (2.0, "bystander")]


def _rescheduling_trace(plan: list[tuple[int, float, float, bool]], sleepers: int, in_place: bool) -> list:
    """(time, sleeper, value) of `sleepers` processes that sleep 1.0-3.0 s at a time, woken by a
    waker that, at each `(who, at, by, to_time)` of `plan`, moves the wake-up of sleeper `who` `by`
    seconds ahead (`wake_later`) or to `at + by` (`wake_at`); in place, or as a new timeout with
    the old one abandoned (the path taken where the entry cannot move)."""
    env, seen = CountingEnvironment(), []
    processes = []

    def sleeper(name: int):
        for _ in range(4):
            value = yield env.timeout(1.0 + name % 5 * 0.5)
            seen.append((env.now, name, value))

    def waker():
        for who, at, by, to_time in plan:
            if at > env.now:
                yield env.timeout(at - env.now)
            process = processes[who % sleepers]
            if not process.is_alive:
                continue
            if to_time:
                wake_at(process, env.now + by)
            else:
                wake_later(process, by)

    processes.extend(env.process(sleeper(i)) for i in range(sleepers))
    env.process(waker())
    with ExitStack() as stack:
        if not in_place:
            stack.enter_context(mock.patch("servesim.engine.clock._move_earlier", return_value=False))
        env.run()
    return seen


@settings(max_examples=60, deadline=None)
@given(
    sleepers=st.integers(1, 2 * SHORT_QUEUE + 4),
    plan=st.lists(st.tuples(st.integers(0, 40), st.floats(0.0, 8.0), st.floats(0.01, 2.0), st.booleans()),
                  max_size=30).map(lambda p: sorted(p, key=lambda step: step[1])),
)
def test_a_wake_up_moved_in_place_runs_as_a_new_timeout_would(sleepers, plan):
    """`wake_later` and `wake_at` move a queued wake-up up the heap in place (no abandoned entry
    left behind); every process then runs at the times, in the order and with the values it would
    have had with a fresh timeout, short queues and long ones alike."""
    assert (_rescheduling_trace(plan, sleepers, in_place=True)
            == _rescheduling_trace(plan, sleepers, in_place=False))


def test_a_process_waiting_on_another_process_is_moved_as_a_new_timeout():
    """A wake-up moved off an event others read (here a process's end, its value) leaves that
    event as it is: the sleeper gets a fresh timeout, the ended process keeps its value."""
    env = simpy.Environment()

    def worker():
        yield env.timeout(1.0)
        return "result"

    def sleeper(other):
        value = yield other
        return value

    other = env.process(worker())
    process = env.process(sleeper(other))
    while not other.triggered:
        env.step()  # until the worker has ended: its end is queued, the sleeper waits on it
    assert not other.processed
    wake_at(process, env.now)
    env.run()
    assert process.value == WOKEN_LATER and other.value == "result"
