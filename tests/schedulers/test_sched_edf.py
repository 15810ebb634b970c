"""`edf` on hand-built request sets: deadlines from SLOs, exact repeat bounds, admission control."""

import math

import pytest

from servesim.catalog import get_hardware, get_model
from servesim.core.request import RequestStatus
from servesim.cost import RooflineCostModel
from servesim.schedulers.edf import REJECT_REASON
from servesim.schedulers.edf import EDFPolicy as EDF
from tests.factories import make_scheduler, req, step


def test_deadlines_come_from_the_slos():
    r = req(0, 8, 10, arrival=2.0, ttft_slo=0.5, tpot_slo=0.1)
    assert EDF.deadline(r) == 2.5
    r.advance(8, 2.3)  # first token at 2.3
    r.advance(1, 2.35)
    assert EDF.deadline(r) == pytest.approx(2.3 + 2 * 0.1)  # the third token's deadline


def test_earliest_ttft_deadline_starts_first():
    s = make_scheduler("edf", budget=16)
    lax = req(0, 10, 3, arrival=0.0, ttft_slo=5.0)
    urgent = req(1, 10, 3, arrival=1.0, ttft_slo=1.0)
    s.add_request(lax, 1.0)
    s.add_request(urgent, 1.0)
    assert step(s, 1.0).tokens == {urgent: 10}


def test_repeat_bound_is_exactly_when_a_member_falls_behind():
    s = make_scheduler("edf", seqs=1)
    m = req(0, 8, 100, arrival=0.0, ttft_slo=1.0, tpot_slo=0.1)
    s.add_request(m, 0.0)
    step(s, 0.0)  # first token at 0.01; the deadline of token g + 1 is 0.01 + g * 0.1
    w = req(1, 8, 5, arrival=0.5, ttft_slo=1.0)  # deadline 1.5
    s.add_request(w, 0.5)
    plan = step(s, 0.5)
    assert plan.as_dict(s.cohort) == {0: 1} and plan.repeatable
    # m had 1 token; its deadline passes 1.5 once it has 15, so this plan holds for 14 steps
    bound = plan.max_repeats
    assert bound == 14
    for _ in range(bound - 1):
        plan = step(s, 0.6)
        assert plan.as_dict(s.cohort) == {0: 1}
    assert step(s, 0.7).tokens == {w: 8}  # now w's deadline is the earliest


def test_steps_to_pass_matches_the_deadline_expression():
    m = req(0, 8, 100, arrival=0.0, tpot_slo=0.07)
    m.advance(8, 0.013)
    for other in [0.5, 0.013 + 3 * 0.07, 1e3]:
        j = EDF._steps_to_pass(m, (other, 0.5, 9))
        g = m.num_generated_tokens
        assert (m.first_token_time + (g + j) * 0.07, 0.0, 0) > (other, 0.5, 9)
        assert j == 1 or (m.first_token_time + (g + j - 1) * 0.07, 0.0, 0) < (other, 0.5, 9)
    m.tpot_slo = math.inf
    assert EDF._steps_to_pass(m, (1.0, 0.0, 1)) >= 1 << 20


def cost_model():
    return RooflineCostModel(get_model("llama3-8b"), get_hardware("h100-sxm"))


def test_admission_control_rejects_requests_that_would_miss_ttft():
    s = make_scheduler(
        "edf", blocks=10_000, params={"admission_control": True}, cost_model=cost_model(), budget=8192
    )
    per_prompt = 8000 * s.policy.prefill_s_per_token(s)
    assert 0.15 < per_prompt < 0.3  # an 8k prompt on an H100: about 0.2 s
    reasons = [s.add_request(req(i, 8000, 10, arrival=0.0, ttft_slo=0.5), 0.0) for i in range(4)]
    assert reasons == [None, None, REJECT_REASON, REJECT_REASON]
    assert len(s.waiting) == 2


def test_admission_control_uses_the_measured_admission_rate():
    s = make_scheduler("edf", params={"admission_control": True}, cost_model=cost_model())
    s.policy._samples.append((0.0, 0))  # an arrival saw no admission yet ...
    s.num_admitted = 4  # ... and four admissions followed in the next 3 s
    for i in range(2):
        s._enqueue(req(10 + i, 10, 5, arrival=0.0, ttft_slo=1.0))
    # two requests ahead at 4/3 per second: 1.5 s > the 1 s SLO
    assert s.add_request(req(20, 10, 5, arrival=3.0, ttft_slo=1.0), 3.0) == REJECT_REASON


def test_without_admission_control_nothing_is_rejected():
    s = make_scheduler("edf", blocks=10_000, budget=8192, cost_model=cost_model())
    reasons = [s.add_request(req(i, 8000, 10, arrival=0.0, ttft_slo=0.5), 0.0) for i in range(4)]
    assert reasons == [None] * 4


def test_member_ahead_of_schedule_lends_its_slot_and_keeps_its_kv():
    s = make_scheduler("edf", seqs=1)
    m = req(0, 8, 50, arrival=0.0, ttft_slo=1.0, tpot_slo=1.0)  # lots of slack per token
    s.add_request(m, 0.0)
    step(s, 0.0)
    step(s, 0.01)
    u = req(1, 8, 3, arrival=0.5, ttft_slo=0.2, tpot_slo=0.05)
    s.add_request(u, 0.5)
    assert step(s, 0.5).tokens == {u: 8}
    step(s, 0.51)
    assert not m.in_cohort and m in s.running and m.num_preemptions == 0
    assert m.status == RequestStatus.RUNNING
