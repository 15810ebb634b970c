"""DecodeCohort: lazy progress equals eager progress; block counting equals brute force."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.core.cohort import DecodeCohort
from tests.factories import make_request


def decoding(rid, prompt, output, computed_extra=0, at=0.0):
    """A request that has finished its prompt (at `at`) and emitted `1 + computed_extra` tokens."""
    r = make_request(rid, prompt, output)
    r.advance(prompt, at)
    for i in range(computed_extra):
        r.advance(1, 0.01 * (i + 1))
    return r


def test_lazy_progress_matches_eager():
    cohort = DecodeCohort(16)
    lazy, eager = decoding(1, 100, 10), decoding(1, 100, 10)
    cohort.join(lazy)
    ends = [0.1, 0.25, 0.3]
    cohort.advance(np.array(ends))
    for t in ends:
        eager.advance(1, t)
    assert lazy.num_computed_tokens == eager.num_computed_tokens == 103
    assert lazy.num_generated_tokens == eager.num_generated_tokens == 4
    assert lazy.last_token_time == eager.last_token_time
    assert math.isclose(lazy.max_token_gap, eager.max_token_gap)
    cohort.leave(lazy)
    assert lazy.num_computed_tokens == 103 and not lazy.in_cohort
    assert lazy.max_token_gap == eager.max_token_gap


def test_finish_comes_off_the_heap_at_the_right_step():
    cohort = DecodeCohort(16)
    short, long = decoding(1, 10, 3), decoding(2, 10, 5)
    cohort.join(short)
    cohort.join(long)
    assert cohort.steps_to_next_finish() == 2
    assert cohort.advance(np.array([1.0])) == []
    assert cohort.advance(np.array([2.0])) == [short]
    assert short.finish_time == 2.0 and short.num_generated_tokens == 3
    assert cohort.steps_to_next_finish() == 2
    assert cohort.advance(np.array([3.0, 4.0])) == [long]


@settings(max_examples=60, deadline=None)
@given(
    computed=st.lists(st.integers(1, 200), min_size=1, max_size=12),
    epoch=st.integers(0, 40),
    first=st.integers(0, 20),
    span=st.integers(0, 70),
)
def test_blocks_needed_matches_brute_force(computed, epoch, first, span):
    bs = 16
    cohort = DecodeCohort(bs)
    cohort.epoch = epoch
    members = []
    for i, c in enumerate(computed):
        r = make_request(i, c, 10_000)
        r.advance(c, 0.0)  # prompt done: computed == c, one token emitted
        cohort.join(r)
        members.append(c)
    brute = sum(1 for c in members for j in range(first, first + span) if (c + j) % bs == 0)
    assert cohort.blocks_needed(first, first + span) == brute


@settings(max_examples=60, deadline=None)
@given(
    computed=st.lists(st.integers(1, 100), min_size=1, max_size=8),
    free=st.integers(0, 30),
    limit=st.integers(1, 80),
)
def test_max_steps_for_blocks_is_the_largest_that_fits(computed, free, limit):
    cohort = DecodeCohort(8)
    for i, c in enumerate(computed):
        r = make_request(i, c, 10_000)
        r.advance(c, 0.0)
        cohort.join(r)
    k = cohort.max_steps_for_blocks(0, free, limit)
    assert 0 <= k <= limit
    assert cohort.blocks_needed(0, k) <= free
    if k < limit:
        assert cohort.blocks_needed(0, k + 1) > free


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("join"), st.integers(1, 500)),
            st.tuples(st.just("leave"), st.integers(0, 50)),
            st.tuples(st.just("advance"), st.integers(1, 5)),
        ),
        max_size=40,
    )
)
def test_max_context_is_the_longest_members_context(ops):
    """The lazy max-heap gives the longest member's KV tokens after any joins, leaves and steps."""
    cohort, rid, t = DecodeCohort(16), 0, 0.0
    for op, arg in ops:
        members = list(cohort)
        if op == "join":
            r = make_request(rid, arg, 100_000)
            r.advance(arg, t)
            cohort.join(r)
            rid += 1
        elif op == "leave" and members:
            cohort.leave(members[arg % len(members)])
        elif op == "advance":
            t += arg
            cohort.advance(t - 1 + np.arange(1, arg + 1) / arg)
        members = list(cohort)
        brute = max((r.num_computed_tokens for r in members), default=0)
        assert cohort.max_context() == brute
        assert cohort.max_context(3) == (brute + 3 if members else 0)


def test_step_times_are_kept_only_while_a_member_can_read_them():
    """A long run keeps the step ends since the oldest member's join, not all of them: each member
    still sees its own gaps and last token time exactly as an eager request does."""
    cohort = DecodeCohort(16)
    gaps = np.linspace(0.02, 0.01, 30_000)  # each shorter than the last: the cohort keeps them all
    ends = np.cumsum(gaps)
    members, running = [], []
    for rid in range(60):  # a member joins every 500 steps and stays 1000: 30k steps in all
        first = rid * 500
        at = ends[first] - 0.1 * gaps[first]  # its first gap short: its longest is its next one
        lazy, eager = decoding(rid, 50, 1001, at=at), decoding(rid, 50, 1001, at=at)
        cohort.join(lazy)
        members.append((lazy, eager))
        running.append(eager)
        for t in ends[first : first + 500]:
            running = [eg for eg in running if not eg.advance(1, t)]
            cohort.advance(np.array([t]))
    # bounded by the memberships (1000 steps), not the 30k steps
    assert len(cohort._call_epochs) <= 4096 and len(cohort._gap_epochs) <= 4096
    for lazy, eager in members[:-1]:
        assert lazy.finish_time == eager.finish_time and not math.isnan(lazy.finish_time)
        assert lazy.max_token_gap == eager.max_token_gap
    lazy, eager = members[-1]  # still running: its progress read through the kept steps
    assert lazy.last_token_time == eager.last_token_time
    assert lazy.max_token_gap == eager.max_token_gap


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("join"), st.integers(0, 50)),
            st.tuples(st.just("leave"), st.integers(0, 50)),
            st.tuples(st.just("advance"), st.lists(st.sampled_from([0.25, 0.01, 0.1, 0.013, 3.0]),
                                                    min_size=1, max_size=6)),
        ),
        max_size=120,
    ),
    as_array=st.booleans(),
)
def test_token_gaps_and_times_match_eager_requests(ops, as_array):
    """Members that join, leave (pause) and rejoin between runs of any length read their longest
    gap and last token time exactly as an eager request that takes the same steps."""
    cohort, t = DecodeCohort(16), 1.0
    running, paused = [], []  # (lazy, eager) twins
    for op, arg in ops:
        if op == "join":
            if paused and arg % 2:
                pair = paused.pop(arg % len(paused))
            else:
                at = t + 0.005 * (arg % 3)  # its first token after the cohort's last step, or with it
                pair = decoding(arg, 20, 2 + arg, at=at), decoding(arg, 20, 2 + arg, at=at)
            cohort.join(pair[0])
            running.append(pair)
        elif op == "leave" and running:
            pair = running.pop(arg % len(running))
            cohort.leave(pair[0])
            paused.append(pair)
        elif op == "advance" and running:
            ends = [np.float64(t := t + gap) for gap in arg]  # (NumPy scalars, as runs give them)
            cohort.advance(np.array(ends) if as_array else ends)
            for end in ends:
                running = [p for p in running if not p[1].advance(1, float(end))]
        for lazy, eager in running + paused:
            assert lazy.max_token_gap == eager.max_token_gap
            assert lazy.last_token_time == eager.last_token_time
    assert {id(p[0]) for p in running} == {id(r) for r in cohort}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(20, 400), min_size=0, max_size=12), st.integers(0, 70),
       st.sampled_from([1, 2, 16, 32]), st.integers(0, 40), st.integers(0, 100))
def test_block_needs_are_each_steps_blocks_needed(computed, epoch, block_size, first, steps):
    cohort = DecodeCohort(block_size)
    cohort.epoch = epoch
    for i, c in enumerate(computed):
        cohort.join(decoding(i, c, 10_000))
    needs = cohort.block_needs(first, steps)
    assert needs == [cohort.blocks_needed(o, o + 1) for o in range(first, first + steps)]
    free, limit = steps // 2, steps + 1  # the largest run that fits, from any offset
    k = cohort.max_steps_for_blocks(first, free, limit)
    assert cohort.blocks_needed(first, first + k) <= free
    assert k == limit or cohort.blocks_needed(first, first + k + 1) > free
