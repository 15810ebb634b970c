"""`fcfs` on hand-built request sets: whole prompts in arrival order, else one decode step."""

from servesim.core.request import RequestStatus
from servesim.schedulers import POLICIES
from servesim.schedulers.fcfs import FCFSPolicy
from tests.factories import make_request, make_scheduler, req, step


def test_registered_under_its_name():
    assert POLICIES.get("fcfs") is FCFSPolicy


def test_prefills_whole_prompts_in_arrival_order_within_the_budget():
    s = make_scheduler(budget=20)
    a, b, c = req(0, 8, 3), req(1, 10, 3), req(2, 4, 3)
    for r in (a, b, c):
        s.add_request(r, 0.0)
    assert step(s, 0.0).tokens == {a: 8, b: 10}  # c would fit, but order is strict
    assert [r.status for r in (a, b, c)] == [RequestStatus.RUNNING] * 2 + [RequestStatus.WAITING]
    assert step(s, 0.01).tokens == {c: 4}  # a prefill step stalls the decodes
    plan = step(s, 0.02)
    assert plan.decode_cohort and not plan.tokens and plan.repeatable


def test_rejects_what_can_never_run():
    s = make_scheduler(blocks=10, block_size=16, budget=100, max_context=1000)
    assert s.add_request(make_request(0, 101, 5), 0.0) == "prompt_exceeds_max_num_batched_tokens"
    assert s.add_request(make_request(1, 90, 990), 0.0) == "exceeds_max_context"
    s = make_scheduler(blocks=4, block_size=16, budget=1000)
    assert s.add_request(make_request(2, 65, 5), 0.0) == "prompt_exceeds_kv_capacity"
    assert s.add_request(make_request(3, 60, 10), 0.0) == "request_exceeds_kv_capacity"
    assert not s.waiting


def test_seat_limit_holds_requests_back():
    s = make_scheduler(seqs=1)
    a, b = req(0, 8, 3), req(1, 8, 3)
    s.add_request(a, 0.0)
    s.add_request(b, 0.0)
    assert step(s, 0.0).tokens == {a: 8}
    plan = step(s, 0.1)  # b waits: max_num_seqs reached
    assert plan.decode_cohort and not plan.tokens and plan.repeatable
    while a.status != RequestStatus.FINISHED:
        assert b in s.waiting
        step(s, 0.1)
    assert step(s, 0.2).tokens == {b: 8}


def test_batches_arriving_kv_with_the_running_decodes():
    """The decode side of a disaggregated cluster: a request arriving with its prompt computed
    is admitted with all its KV and decodes in the same step as the cohort."""
    s = make_scheduler(blocks=100, block_size=16)
    local = make_request(0, 40, 10)
    s.add_request(local, 0.0)
    step(s, 0.0)  # prefilled here: now a cohort member
    imported = make_request(1, 64, 10, arrival=1.0)
    imported.advance(64, 1.5)  # prompt computed elsewhere; first token emitted
    imported.deliver_first_token(2.0)
    s.add_request(imported, 2.0)
    plan = step(s, 2.0)
    assert plan.tokens == {imported: 1} and plan.decode_cohort and not plan.repeatable
    assert s.kv.blocks_of(imported) == s.kv.blocks_for(65)  # its KV is now held here
