"""`srtf` on hand-built request sets: ranking by predicted remaining work, pausing, preemption, aging."""

from servesim.core.request import RequestStatus
from tests.factories import drain, make_scheduler, req, step


def admit_all(s, reqs, now=0.0):
    for r in reqs:
        s.add_request(r, now)


def test_admits_the_shortest_predicted_output_first():
    s = make_scheduler("srtf", budget=16)  # one 10-token prompt per prefill step
    reqs = [req(0, 10, 50), req(1, 10, 10), req(2, 10, 30)]
    admit_all(s, reqs)
    drain(s)
    starts = sorted(reqs, key=lambda r: r.first_token_time)
    assert [r.request_id for r in starts] == [1, 2, 0]


class InversePredictor:
    """Predicts long for short requests: SRTF must follow the prediction, not the truth."""

    def predict(self, request):
        request.predicted_output_tokens = 1000.0 - request.num_output_tokens

    def observe(self, request):
        pass


def test_ranks_by_the_prediction_not_the_truth():
    s = make_scheduler("srtf", budget=16, predictor=InversePredictor())
    reqs = [req(0, 10, 50), req(1, 10, 10), req(2, 10, 30)]
    admit_all(s, reqs)
    drain(s)
    starts = sorted(reqs, key=lambda r: r.first_token_time)
    assert [r.request_id for r in starts] == [0, 2, 1]


def test_shorter_arrival_pauses_the_longest_member_which_keeps_its_kv():
    s = make_scheduler("srtf", seqs=2)
    a, b = req(0, 8, 40), req(1, 8, 50)
    admit_all(s, [a, b])
    step(s, 0.0)
    assert a.in_cohort and b.in_cohort
    c = req(2, 8, 5)
    s.add_request(c, 0.05)
    assert step(s, 0.05).tokens == {c: 8}  # c takes a slot
    plan = step(s, 0.1)
    assert plan.as_dict(s.cohort) == {0: 1, 2: 1}  # b is out of the batch ...
    assert not b.in_cohort and b in s.running and s.kv.blocks_of(b) == 2  # ... paused with its KV
    assert b.status == RequestStatus.RUNNING and b.num_preemptions == 0
    while c.status != RequestStatus.FINISHED:
        step(s, 0.2)
    assert step(s, 0.3).tokens == {b: 1}  # a slot is free: b resumes where it stopped
    assert b.in_cohort and b.num_preemptions == 0


def test_memory_shortage_preempts_the_longest_remaining():
    s = make_scheduler("srtf", blocks=3)
    a, b = req(0, 4, 5), req(1, 4, 6)
    admit_all(s, [a, b])
    step(s, 0.0)  # one block each; the next token of each needs a new block, one is free
    plan = step(s, 0.01)
    assert plan.preempted == [b] and plan.as_dict(s.cohort) == {0: 1}
    assert b.status == RequestStatus.WAITING and b.num_computed_tokens == 0


def test_memory_shortage_preempts_paused_requests_first():
    s = make_scheduler("srtf", blocks=3, seqs=1)
    a, b = req(0, 4, 8), req(1, 4, 6)
    s.add_request(a, 0.0)
    step(s, 0.0)
    s.add_request(b, 0.001)
    assert step(s, 0.01).tokens == {b: 4}  # b is shorter: it takes the only slot
    plan = step(s, 0.02)
    assert not a.in_cohort and a in s.running and plan.as_dict(s.cohort) == {1: 1}
    while not plan.preempted:  # b grows into the last free block, then needs the paused a's
        plan = step(s, 0.03)
    assert plan.preempted == [a] and b.num_preemptions == 0 and a.status == RequestStatus.WAITING


def test_no_eviction_to_admit_by_default_but_optional():
    for evict in (False, True):
        s = make_scheduler("srtf", blocks=6, params={"preempt_to_admit": evict})
        long = req(0, 8, 10)
        s.add_request(long, 0.0)
        step(s, 0.0)
        step(s, 0.01)  # long holds 3 blocks, 3 are free
        short = req(1, 16, 2)  # its prompt needs 4 blocks
        s.add_request(short, 0.02)
        plan = step(s, 0.02)
        if evict:
            assert plan.preempted == [long] and plan.tokens == {short: 16}
        else:
            assert not plan.preempted and plan.decode_cohort and short in s.waiting


def test_aging_promotes_old_requests_ahead_of_shorter_ones():
    s = make_scheduler("srtf", params={"aging_s": 1.0})
    old, young = req(0, 8, 100, arrival=0.0), req(1, 8, 5, arrival=0.5)
    s.predictor.predict(old), s.predictor.predict(young)
    assert s.policy.rank_key(young, 0.9) < s.policy.rank_key(old, 0.9)
    assert s.policy.rank_key(old, 1.0) < s.policy.rank_key(young, 1.0)


def test_aging_bounds_a_decode_run_by_the_next_promotion():
    s = make_scheduler("srtf", seqs=1, params={"aging_s": 10.0})
    old, short = req(0, 8, 100, arrival=0.0), req(1, 8, 50, arrival=0.5)
    s.add_request(old, 0.0)
    s.add_request(short, 0.5)  # both wait; the short one starts
    step(s, 0.5)
    assert short.in_cohort and old in s.waiting
    plan = step(s, 1.0)
    assert plan.repeatable and plan.replan_time == 10.0
    plan = step(s, 10.0)  # old is promoted: it starts, and short will be paused
    assert plan.tokens == {old: 8}


def test_pure_decode_plan_is_repeatable_without_aging():
    s = make_scheduler("srtf", seqs=1)
    a, b = req(0, 8, 20), req(1, 8, 30)
    admit_all(s, [a, b])
    step(s, 0.0)
    plan = step(s, 0.01)
    assert plan.repeatable and plan.max_repeats >= 1 << 20 and plan.replan_time == float("inf")


def test_every_request_finishes_under_pressure():
    s = make_scheduler("srtf", blocks=30, seqs=3, budget=40)
    reqs = [req(i, 6 + 5 * (i % 4), 4 + 3 * ((i * 7) % 5)) for i in range(12)]
    admit_all(s, reqs)
    drain(s)
    s.kv.check_conservation()
    assert all(r.status == RequestStatus.FINISHED for r in reqs)
    assert s.kv.num_free_blocks == s.kv.num_blocks


def test_whole_prompts_longer_than_the_batch_are_rejected_chunks_are_not():
    s = make_scheduler("srtf", budget=16)
    assert s.add_request(req(0, 17, 2), 0.0) == "prompt_exceeds_max_num_batched_tokens"
    assert not s.waiting
    s = make_scheduler("srtf", budget=16, batching="chunked", chunk=16)
    assert s.add_request(req(0, 17, 2), 0.0) is None
