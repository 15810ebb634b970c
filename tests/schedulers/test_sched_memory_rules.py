"""The engine's memory policy, rule by rule, on hand-built cases (the rules of vLLM v0 and of the
reference engine in `data/measurements`' replays):

1. the preemption victim is the most recently arrived running request, not the latest admitted;
2. it re-enters the waiting queue at its arrival position (not at the front);
3. a step that preempted admits no waiting request after the preemption;
4. a victim's blocks are usable in the same step; a finished request's from the next step;
5. admission keeps `kv_watermark` of the blocks free while others hold KV (not on an idle cache);
6. `kv_allocation: prompt` holds a prompt's blocks at admission, `chunk` per scheduled chunk.

Block size 4 throughout. A request "with KV" arrives prefilled (the decode side of a
disaggregated cluster): prompt 8 computed, one token out, so admission takes blocks_for(9) = 3
blocks and its 5th token (computed 12 -> 13) needs a 4th block.
"""

from servesim.core.request import RequestStatus
from tests.factories import make_scheduler, req, step


def with_kv(rid: int, arrival: float, output: int = 8):
    r = req(rid, 8, output, arrival=arrival)
    r.advance(8, arrival + 0.1)
    return r


def until_preemption(s, now: float):
    for i in range(50):
        plan = step(s, now + 0.01 * i)
        if plan.preempted:
            return plan
    raise AssertionError("no preemption")


def test_1_victim_is_the_most_recently_arrived_not_the_latest_admitted():
    s = make_scheduler(blocks=7)
    early, late = with_kv(0, arrival=0.0), with_kv(1, arrival=1.0)
    s.add_request(late, 2.0)  # `late` reaches this instance first ...
    step(s, 2.0)
    s.add_request(early, 3.0)  # ... and `early`, admitted last, arrived first
    step(s, 3.0)
    assert early.in_cohort and late.in_cohort and s.kv.num_free_blocks == 1
    plan = until_preemption(s, 3.1)  # both need their 4th block, one is free
    assert plan.preempted == [late] and early.in_cohort


def test_2_victim_re_enters_the_queue_at_its_arrival_position():
    s = make_scheduler(blocks=10, seqs=2)
    a, b, c = with_kv(0, arrival=0.0), with_kv(1, arrival=1.0), with_kv(2, arrival=0.5)
    s.add_request(a, 2.0)
    s.add_request(b, 2.0)
    step(s, 2.0)  # a, b hold 3 blocks each; 4 free
    s.add_request(c, 2.5)  # no seat: it waits
    s.kv.allocate(req(9, 12, 1), 12)  # someone else takes 3 blocks: 1 free
    plan = until_preemption(s, 2.5)
    assert plan.preempted == [b]
    assert [r.request_id for _, r in s.ranked_waiting(3.0)] == [2, 1]  # c (0.5) before b (1.0)
    assert step(s, 3.0).tokens == {c: 1}  # the freed seat and blocks go to c


def test_3_no_admission_after_a_preemption_in_the_same_step():
    s = make_scheduler(blocks=7, seqs=4, batching="chunked", chunk=64)
    a, b = with_kv(0, arrival=0.0), with_kv(1, arrival=1.0)
    s.add_request(a, 2.0)
    s.add_request(b, 2.0)
    step(s, 2.0)
    for i in range(3):  # computed 9 -> 12: no new block yet
        assert not step(s, 2.1 + 0.01 * i).preempted
    c = req(5, 3, 2, arrival=5.0)  # one block; a seat is free
    s.add_request(c, 5.0)
    plan = step(s, 5.0)  # a and b need a block each, 1 free: b goes, freeing 3
    assert plan.preempted == [b] and c not in plan.tokens and c in s.waiting
    assert s.kv.num_free_blocks == 3  # c would have fitted


def test_4_a_victims_blocks_are_used_in_the_same_step():
    s = make_scheduler(blocks=6)
    a, b = with_kv(0, arrival=0.0), with_kv(1, arrival=1.0)
    s.add_request(a, 2.0)
    s.add_request(b, 2.0)
    step(s, 2.0)
    assert s.kv.num_free_blocks == 0
    plan = until_preemption(s, 2.1)
    assert plan.preempted == [b] and plan.decode_cohort and a.in_cohort
    assert s.kv.blocks_of(a) == 4 and s.kv.num_free_blocks == 2


def test_4_a_finished_requests_blocks_are_free_from_the_next_step():
    s = make_scheduler(blocks=4, seqs=4)
    a = with_kv(0, arrival=0.0, output=2)  # its next token is its last
    s.add_request(a, 1.0)
    c = req(1, 8, 2, arrival=1.0)  # 2 blocks; only 1 is free while a holds 3
    s.add_request(c, 1.0)
    plan = step(s, 1.0)
    assert plan.tokens == {a: 1} and c in s.waiting and a.status == RequestStatus.FINISHED
    assert step(s, 1.01).tokens == {c: 8}


def test_5_watermark_holds_back_admission_only_while_others_hold_kv():
    def admitted(*requests):
        s = make_scheduler(blocks=100, watermark=0.1, budget=1000)  # 10 blocks kept free
        for r in requests:
            s.add_request(r, 0.0)
        return [r.request_id for r in step(s, 0.0).tokens]

    assert admitted(req(0, 4 * 95, 2)) == [0]  # idle cache: nobody to protect
    assert admitted(req(0, 4, 20), req(1, 4 * 89, 2)) == [0, 1]  # leaves 100 - 1 - 89 = 10
    assert admitted(req(0, 4, 20), req(1, 4 * 90, 2)) == [0]  # would leave 9


def test_6_prompt_allocation_holds_the_whole_prompt_at_admission():
    s = make_scheduler(blocks=100, batching="chunked", chunk=8)
    r = req(0, 40, 2)
    s.add_request(r, 0.0)
    assert step(s, 0.0).tokens == {r: 8} and s.kv.blocks_of(r) == 10  # all 40 tokens' blocks


def test_6_chunk_allocation_holds_only_the_scheduled_chunk():
    s = make_scheduler(blocks=100, batching="chunked", chunk=8, kv_allocation="chunk")
    r = req(0, 40, 2)
    s.add_request(r, 0.0)
    assert step(s, 0.0).tokens == {r: 8} and s.kv.blocks_of(r) == 2
    step(s, 0.01)
    assert s.kv.blocks_of(r) == 4


def test_6_allocations_differ_in_who_gets_memory_under_pressure():
    # Two 24-token prompts, 10 blocks, a 32-token budget: both allocations give `a` its whole
    # prompt (6 blocks); the 8 tokens left start `b` only if it need not hold its whole prompt.
    plans = {}
    for allocation in ("prompt", "chunk"):
        s = make_scheduler(blocks=10, batching="chunked", chunk=32, kv_allocation=allocation)
        a, b = req(0, 24, 2), req(1, 24, 2)
        s.add_request(a, 0.0)
        s.add_request(b, 0.0)
        plans[allocation] = {r.request_id: n for r, n in step(s, 0.0).tokens.items()}
    assert plans == {"prompt": {0: 24}, "chunk": {0: 24, 1: 8}}
