"""Regression: a request the length filter rejects stays in the run even when it arrives last,
after every served request has finished (it was missing from requests.csv)."""

import servesim
from tests.factories import small_config


def test_rejected_last_arrival_is_counted():
    cfg = small_config(**{
        "seed": 0, "workload.num_requests": 19, "workload.arrival.rate": 1.0,
        "workload.lengths.output": {"dist": "fixed", "value": 2},
        "workload.lengths.prompt": {"dist": "fixed", "value": 100},
        "workload.filter": {"max_total_tokens": 300, "action": "reject"},
    })
    base = servesim.simulate(cfg)
    assert len(base.requests) == 19
    # make the last request too long: it is rejected, arrives after the others finished, and is kept
    cfg["workload"]["lengths"]["prompt"] = {"dist": "fixed", "value": 100}
    result = servesim.simulate(cfg, **{"workload.filter.max_total_tokens": 101})
    r = result.requests
    assert len(r) == 19 and (r["status"] == "rejected").all()
    s = result.summary["requests"]
    assert s["arrived"] == s["completed"] + s["rejected"] + s["unfinished"] == 19
