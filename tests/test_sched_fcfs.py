"""`fcfs` on hand-built request sets: whole prompts in arrival order, else one decode step."""

from servesim.core.request import RequestStatus
from servesim.schedulers.fcfs import FCFSScheduler as FCFS
from tests.sched_helpers import make, req, step


def test_prefills_whole_prompts_in_arrival_order_within_the_budget():
    s = make(FCFS, budget=20)
    a, b, c = req(0, 8, 3), req(1, 10, 3), req(2, 4, 3)
    for r in (a, b, c):
        s.add_request(r, 0.0)
    assert step(s, 0.0).tokens == {a: 8, b: 10}  # c would fit, but order is strict
    assert step(s, 0.01).tokens == {c: 4}  # a prefill step stalls the decodes
    plan = step(s, 0.02)
    assert plan.decode_cohort and not plan.tokens and plan.repeatable


def test_rejects_prompts_longer_than_the_batch():
    s = make(FCFS, budget=16)
    assert s.add_request(req(0, 17, 2), 0.0) == "prompt_exceeds_max_num_batched_tokens"


def test_seat_limit_holds_requests_back():
    s = make(FCFS, seqs=1)
    a, b = req(0, 8, 3), req(1, 8, 3)
    s.add_request(a, 0.0)
    s.add_request(b, 0.0)
    assert step(s, 0.0).tokens == {a: 8}
    while a.status != RequestStatus.FINISHED:
        assert b in s.waiting
        step(s, 0.1)
    assert step(s, 0.2).tokens == {b: 8}
