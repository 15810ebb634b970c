"""The load-indexed routers (`least_loaded`, `least_tokens`) pick exactly what a scan over every
instance's load picks, at every arrival, for every scheduler, with and without disaggregation."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.build import build
from servesim.config import load_config
from servesim.routers import base, least_loaded
from servesim.simulation import run
from tests.factories import small_config


def checked_least(monkeypatch) -> list[int]:
    """Make every indexed decision also scan, and assert both agree; returns the decisions. The
    routers' call is wrapped, not `LoadIndex.least`: the compiled core calls that one directly."""
    decisions = []
    original = least_loaded.indexed_least_loaded

    def indexed(router, instances, measure):
        chosen = original(router, instances, measure)
        assert router._load_index.instances is instances  # the index decided, not a scan
        assert chosen == base.least_loaded(instances, measure)
        decisions.append(chosen)
        return chosen

    monkeypatch.setattr(least_loaded, "indexed_least_loaded", indexed)
    return decisions


scenarios = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "cluster.instances": st.integers(2, 6),
    "cluster.router": st.sampled_from(["least_loaded", "least_tokens"]),
    "engine.scheduler": st.sampled_from(["fcfs", "chunked_prefill", "srtf", "edf"]),
    "engine.max_num_seqs": st.integers(1, 16),
    "engine.kv_capacity_tokens": st.integers(2_000, 20_000),
    "workload.num_requests": st.integers(5, 60),
    "workload.arrival.rate": st.floats(5.0, 300.0),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=scenarios)
def test_indexed_routing_equals_the_scan(monkeypatch, changes):
    decisions = checked_least(monkeypatch)
    run(build(load_config(small_config(**changes))))
    assert len(decisions) == changes["workload.num_requests"]


def test_indexed_decode_routing_equals_the_scan(monkeypatch):
    decisions = checked_least(monkeypatch)
    cfg = small_config(**{
        "cluster.instances": 5, "cluster.router": "least_loaded",
        "cluster.disaggregation": {"prefill_instances": 2, "decode_instances": 3,
                                   "decode_router": "least_tokens"},
        "workload.num_requests": 80, "workload.arrival.rate": 200.0,
    })
    result = run(build(load_config(cfg)))
    assert result.summary["requests"]["completed"] == 80
    assert len(decisions) == 160  # every request routed twice: to prefill, then to decode
