"""FCFS (vLLM without chunked prefill) on hand-built request sets, no SimPy."""

from servesim.core.request import RequestStatus
from servesim.schedulers import SCHEDULERS
from servesim.schedulers.fcfs import FCFSScheduler
from tests.helpers import apply_plan, make_parts, make_request


def fcfs(**kw):
    kv, cohort, limits = make_parts(**kw)
    return FCFSScheduler(kv, cohort, limits)


def test_registered_under_its_name():
    assert SCHEDULERS.get("fcfs") is FCFSScheduler


def test_admits_whole_prompts_in_arrival_order_within_the_token_budget():
    s = fcfs(max_num_batched_tokens=1000)
    reqs = [make_request(i, p, 4, arrival=i) for i, p in enumerate([300, 500, 400, 100])]
    for r in reqs:
        assert s.add_request(r, 0.0) is None
    plan = s.schedule(0.0)
    # 300 + 500 fit; 400 does not, and FCFS stops there (no skipping ahead to the 100).
    assert plan.tokens == {reqs[0]: 300, reqs[1]: 500}
    assert not plan.decode_cohort
    assert [r.status for r in reqs] == [RequestStatus.RUNNING] * 2 + [RequestStatus.WAITING] * 2


def test_decodes_every_running_request_when_no_prompt_fits():
    s = fcfs(max_num_seqs=2)
    a, b, c = (make_request(i, 32, 3, arrival=i) for i in range(3))
    for r in (a, b, c):
        s.add_request(r, 0.0)
    plan = s.schedule(0.0)
    assert set(plan.tokens) == {a, b}
    apply_plan(plan, s.cohort, 1.0)
    plan = s.schedule(1.0)  # c waits: max_num_seqs reached
    assert plan.decode_cohort and not plan.tokens and plan.repeatable
    assert set(plan.as_dict(s.cohort)) == {0, 1}


def test_rejects_what_can_never_run():
    s = fcfs(num_blocks=10, max_num_batched_tokens=100, max_context=1000)
    assert s.add_request(make_request(0, 101, 5), 0.0) == "prompt_exceeds_max_num_batched_tokens"
    assert s.add_request(make_request(1, 90, 990), 0.0) == "exceeds_max_context"
    s = fcfs(num_blocks=4, max_num_batched_tokens=1000)
    assert s.add_request(make_request(2, 65, 5), 0.0) == "prompt_exceeds_kv_capacity"
    assert s.add_request(make_request(3, 60, 10), 0.0) == "request_exceeds_kv_capacity"
    assert not s.waiting


def test_preempts_the_newest_running_request_when_decode_blocks_run_out():
    s = fcfs(num_blocks=4, block_size=16)
    old, new = make_request(0, 32, 30, arrival=0), make_request(1, 32, 30, arrival=1)
    assert s.add_request(old, 0.0) is None and s.add_request(new, 0.0) is None
    apply_plan(s.schedule(0.0), s.cohort, 1.0)  # both prompts: 4 blocks, cache full
    plan = s.schedule(1.0)  # both need a 3rd block: the newest is preempted
    assert plan.preempted == [new]
    assert new.status == RequestStatus.WAITING and new.num_preemptions == 1
    assert s.waiting[0] is new and new.num_computed_tokens == 0
    assert plan.decode_cohort and old in s.cohort
    assert s.kv.num_free_blocks == 1  # 2 freed by the victim, 1 taken by old's next token
