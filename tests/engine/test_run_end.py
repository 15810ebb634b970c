"""The run ends when every request has ended: periodic processes (the power budget's sampling)
and a distant `max_sim_time_s` must not stretch the simulated span that throughput divides by."""

from __future__ import annotations

import math

import servesim

BASE = {
    "model": "llama3-8b",
    "hardware": "h100-sxm",
    "seed": 3,
    "workload": {
        "num_requests": 15,
        "arrival": {"process": "constant", "rate": 40.0},
        "lengths": {"prompt": {"dist": "fixed", "value": 200}, "output": {"dist": "fixed", "value": 10}},
    },
    "output": {"timeseries_interval_s": None},
}
BUDGET = {"budget": {"budget_w": 900.0, "cap_w": 400.0, "interval_s": 0.05}}


def _run(**over):
    return servesim.simulate({**BASE, **over}).summary


def test_distant_time_limit_does_not_stretch_the_run():
    free = _run()
    limited = _run(max_sim_time_s=30.0)
    assert limited["requests"]["completed"] == 15
    assert limited["sim"]["simulated_s"] == free["sim"]["simulated_s"] < 1.0
    assert limited["throughput"] == free["throughput"]


def test_power_budget_run_ends_with_its_requests_under_any_limit():
    # A budget samples power every 50 ms for as long as the run goes: with a limit of 1e16 s it
    # used to sample until memory ran out.
    free = _run(power=BUDGET)
    limited = _run(power=BUDGET, max_sim_time_s=1e16)
    assert limited["requests"]["completed"] == 15
    assert limited["sim"]["simulated_s"] == free["sim"]["simulated_s"] < 1.0


def test_a_limit_that_cuts_the_run_still_ends_it_there():
    cut = _run(max_sim_time_s=0.1)
    assert math.isclose(cut["sim"]["simulated_s"], 0.1)
    assert cut["requests"]["completed"] < 15
