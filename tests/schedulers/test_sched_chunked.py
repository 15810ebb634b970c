"""Chunked batching on hand-built request sets: decodes first, then prompt chunks in rank order."""

from servesim.core.request import RequestStatus
from servesim.core.step import StepPlan
from tests.factories import drain, make_request, make_scheduler, req, step


def chunked(**kw):
    return make_scheduler(kw.pop("policy", "fcfs"), batching="chunked", **kw)


def test_decodes_first_then_chunks_in_arrival_order():
    s = chunked(chunk=32)
    a = req(0, 8, 10)
    s.add_request(a, 0.0)
    step(s, 0.0)  # a's whole prompt, first token
    assert a.in_cohort
    b, c = req(1, 100, 5), req(2, 20, 5)
    s.add_request(b, 0.1)
    s.add_request(c, 0.1)
    plan = step(s, 0.1)
    assert plan.decode_cohort and plan.as_dict(s.cohort) == {0: 1, 1: 31}  # the budget is full
    for expected in (31, 31):
        plan = step(s, 0.2)
        assert plan.tokens == {b: expected}
    plan = step(s, 0.3)  # b's last 7 tokens, then c starts in what is left of the budget
    assert plan.tokens == {b: 7, c: 20}
    assert b.num_generated_tokens == 1 and c.num_generated_tokens == 1


def test_long_prompt_spans_steps_and_never_exceeds_the_budget():
    s = chunked(chunk=16)
    r = req(0, 50, 3)
    s.add_request(r, 0.0)
    chunks = [step(s, 0.01 * i).tokens.get(r) for i in range(4)]
    assert chunks == [16, 16, 16, 2]
    assert r.first_token_time == 0.04


def test_chunk_that_stops_one_token_short_of_the_prompt():
    # 17 tokens in chunks of 16 leaves one prompt token: the request must not join the cohort yet.
    s = chunked(chunk=16)
    r = req(0, 17, 3)
    s.add_request(r, 0.0)
    step(s, 0.0)
    assert r.num_pending_tokens == 1 and not r.in_cohort and r.num_generated_tokens == 0
    assert step(s, 0.01).tokens == {r: 1}
    assert r.num_generated_tokens == 1 and r.in_cohort


def test_max_prefills_limits_concurrent_prompt_chunks():
    s = chunked(chunk=64, batching_params={"max_prefills": 1})
    a, b = req(0, 10, 2), req(1, 10, 2)
    s.add_request(a, 0.0)
    s.add_request(b, 0.0)
    assert step(s, 0.0).tokens == {a: 10}


def test_pure_decode_plan_is_repeatable():
    s = chunked(chunk=32, seqs=1)
    a, b = req(0, 8, 10), req(1, 8, 10)
    s.add_request(a, 0.0)
    s.add_request(b, 0.0)
    step(s, 0.0)
    plan = s.schedule(0.01)  # b cannot start: the only slot is taken
    assert plan.decode_cohort and not plan.tokens and plan.repeatable


def test_full_cache_of_partial_prompts_frees_the_worst_ranked():
    # Chunk allocation, 10 blocks of 4 tokens: two 24-token prompts each ran a 16-token chunk
    # (4 blocks each) and someone else holds the last 2 blocks. Neither can grow and nobody
    # decodes: the newest is preempted so the oldest can finish its prompt.
    s = chunked(chunk=32, blocks=10, kv_allocation="chunk")
    a, b = req(0, 24, 2), req(1, 24, 2)
    for r in (a, b):
        s.add_request(r, 0.0)
        s.plan, s._ranked = StepPlan(), None
        assert s.admit(s.policy.rank_key(r, 0.0), r, 16) == 16
        s.plan = s._ranked = None
        r.advance(16, 0.0)
    assert s.kv.allocate(make_request(9, 8, 1), 8)  # someone else's 2 blocks: none free
    plan = s.schedule(0.1)
    assert plan.preempted == [b] and plan.tokens == {a: 8}
    assert b.status == RequestStatus.WAITING and b.num_computed_tokens == 0


def test_every_request_finishes():
    for allocation in ("prompt", "chunk"):
        s = chunked(chunk=24, blocks=40, seqs=3, kv_allocation=allocation)
        reqs = [req(i, 10 + 7 * i, 3 + i) for i in range(8)]
        for r in reqs:
            s.add_request(r, 0.0)
        drain(s)
        assert all(r.status == RequestStatus.FINISHED for r in reqs)
        assert all(r.num_generated_tokens == r.num_output_tokens for r in reqs)


def test_any_policy_chunks_srtf_orders_the_chunks():
    s = chunked(policy="srtf", chunk=16)
    long, short = req(0, 40, 50), req(1, 40, 5)
    s.add_request(long, 0.0)
    s.add_request(short, 0.0)
    assert step(s, 0.0).tokens == {short: 16}  # the shorter predicted output goes first
