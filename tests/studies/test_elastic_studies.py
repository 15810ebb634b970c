"""Issue 16's done-when effects on shortened versions of the shipped configs (the full runs are
`examples/studies/elastic_studies.py`; docs/elastic.md records their numbers)."""

from __future__ import annotations

from pathlib import Path

import servesim

ELASTIC = Path(__file__).resolve().parents[2] / "configs" / "elastic"
SHORT_DAY = {  # the diurnal day compressed to 3 minutes at a third of the load
    "workload.duration_s": 180, "workload.arrival.rate": 20,
    "workload.arrival.rate_schedule.period_s": 180, "workload.arrival.rate_schedule.peak_s": 90,
}
SHORT_POLICY = {  # decisions, rate window and lookahead scaled down with the day
    "cluster.autoscaling.interval_s": 3, "cluster.autoscaling.cooldown_s": 10,
    "cluster.autoscaling.policy.window_s": 6, "cluster.autoscaling.policy.lookahead_s": 8,
}


def autoscaled(cold_fixed_s: float):
    return servesim.simulate(ELASTIC / "diurnal_autoscaled.yaml", **SHORT_DAY, **SHORT_POLICY,
                             **{"cluster.autoscaling.cold_start.fixed_s": cold_fixed_s})


def test_autoscaling_meets_the_fixed_fleets_slo_with_fewer_instance_hours():
    fixed = servesim.simulate(ELASTIC / "diurnal_fixed_peak.yaml", **SHORT_DAY,
                              **{"cluster.instances": 3})
    quick, slow = autoscaled(2.0), autoscaled(60.0)
    assert quick.summary["slo"]["attainment"] >= fixed.summary["slo"]["attainment"] - 0.001
    hours = {name: r.summary["cluster"]["instance_hours"] for name, r in
             (("fixed", fixed), ("quick", quick))}
    assert hours["quick"] < 0.8 * hours["fixed"]
    # the trade-off against cold-start latency is in the summary: a slow start costs attainment
    c = quick.summary["cluster"]
    assert c["cold_starts"] > 0 and c["cold_start_s"] > 2.0
    assert 0 < c["cold_start_seconds"] <= c["cold_starts"] * c["cold_start_s"] + 1e-9
    assert slow.summary["cluster"]["cold_start_s"] > 60.0
    assert slow.summary["slo"]["attainment"] < quick.summary["slo"]["attainment"] - 0.01


def test_migration_cuts_the_ttft_tail_on_bursty_load_and_reports_the_kv_moved():
    runs = {}
    for label, overrides in (("none", {"cluster.migration": None}), ("load", {})):
        runs[label] = servesim.simulate(ELASTIC / "migration_bursty.yaml", **overrides, **{
            "workload.num_requests": 800, "cluster.router": "round_robin"})
    p99 = {k: r.summary["latency"]["ttft"]["p99"] for k, r in runs.items()}
    assert p99["load"] < 0.8 * p99["none"]
    c = runs["load"].summary["cluster"]
    assert c["migrations"] > 0 and c["migrated_bytes"] > 0
    assert c["migrated_bytes"] == c["migration_link"]["bytes"]
    assert runs["load"].summary["requests"]["completed"] >= runs["none"].summary["requests"]["completed"]
