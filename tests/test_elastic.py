"""Elastic clusters: failures, stragglers, migration, autoscaling, their outputs and errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import servesim
from servesim.build import build
from servesim.config import load_config
from servesim.core.errors import ConfigError
from servesim.simulation import run
from servesim.studies.timeline import chrome_trace
from tests.factories import check_kv, small_config

BUSY = {
    "cluster.instances": 3,
    "cluster.router": "least_loaded",
    "workload.num_requests": 300,
    "workload.arrival.rate": 30.0,
}


def simulate_checked(**changes):
    built = build(load_config(small_config(**{**BUSY, **changes})))
    return run(built, after_step=check_kv), built


def test_failing_one_of_three_mid_run_loses_no_request():
    result, _ = simulate_checked(**{"cluster.faults.failures": [{"at_s": 4.0, "instance": 1}]})
    req, frame = result.summary["requests"], result.requests
    assert result.summary["cluster"]["failures"] == 1
    assert req["retried"] > 0 and req["failed"] == 0
    assert req["completed"] + req["rejected"] == req["arrived"] == 300
    retried = frame[frame.retries > 0]
    assert (retried.status == "completed").all() and (retried.instance != 1).all()
    # their KV was lost: they ran their prompt again, so they finish later than they would have
    base = servesim.simulate(small_config(**BUSY)).requests.set_index("request_id")
    later = retried.set_index("request_id").finish_s - base.loc[retried.request_id].finish_s
    assert (later > 0).mean() > 0.8


def test_failure_policy_fail_counts_failed_requests_with_a_reason():
    result, _ = simulate_checked(**{
        "cluster.faults.failures": [{"at_s": 4.0, "instance": 0}],
        "cluster.faults.on_failure": "fail",
    })
    req, frame = result.summary["requests"], result.requests
    failed = frame[frame.status == "failed"]
    assert req["failed"] == len(failed) > 0
    assert (failed.rejected_reason == "instance_failed").all()
    assert req["arrived"] == req["completed"] + req["rejected"] + req["failed"] + req["unfinished"]


def test_the_only_instance_failing_holds_arrivals_until_it_is_repaired():
    result, _ = simulate_checked(**{
        "cluster.instances": 1,
        "cluster.faults.failures": [{"at_s": 2.0, "duration_s": 5.0}],
        "cluster.autoscaling.cold_start.fixed_s": 3.0,
        "cluster.autoscaling.cold_start.load_bandwidth_gb_s": 1e5,
        "cluster.autoscaling.min_instances": 1,
        "cluster.autoscaling.max_instances": 1,
    })
    frame = result.requests
    assert result.summary["requests"]["completed"] + result.summary["requests"]["rejected"] == 300
    late = frame[(frame.arrival_s > 2.0) & (frame.arrival_s < 10.0)]
    # down from 2 s, repaired at 7 s, serving after its 3 s cold start: nothing starts before 10 s
    assert (late.first_scheduled_s >= 10.0 - 1e-9).all()


def test_straggler_slows_the_requests_it_serves():
    slow = {"cluster.faults.stragglers": [{"at_s": 2.0, "instance": 0, "factor": 4.0,
                                           "duration_s": 4.0}]}
    result, _ = simulate_checked(**slow)
    base = servesim.simulate(small_config(**BUSY)).requests
    hit = (result.requests.instance == 0) & result.requests.arrival_s.between(2.0, 5.0)
    assert result.requests[hit].tpot_s.mean() > 2 * base[hit].tpot_s.mean()
    ts = result.timeseries(1.0)
    slowed = ts[(ts.instance == 0) & ts.time_s.between(2.0, 5.0)]
    assert (slowed.slowdown == 4.0).all()


def test_migration_moves_requests_with_their_kv_and_reports_bytes():
    result, built = simulate_checked(**{
        "engine.kv_capacity_tokens": 6000,
        "cluster.router": "round_robin",
        "cluster.migration.policy": {"name": "load", "min_pressure": 0.5, "threshold": 0.1},
        "cluster.migration.interval_s": 0.1,
    })
    summary, frame = result.summary, result.requests
    moves = result.lifecycle.migration_frame()
    assert summary["cluster"]["migrations"] == len(moves) > 0
    assert summary["cluster"]["migrated_bytes"] == pytest.approx(moves.bytes.sum())
    per_token = built.model.kv_bytes_per_token(1)
    assert (moves.bytes > 0).all() and np.allclose(moves.bytes % per_token, 0)
    moved = frame[frame.migrations > 0]
    assert len(moved) and (moved.generated_tokens == moved.output_tokens).all()
    # stop-and-copy: each move shows as a gap between two tokens at least as long as the copy
    gaps = frame.set_index("request_id").loc[moves.request_id, "tbt_max_s"].to_numpy()
    assert (gaps >= (moves.end_s - moves.start_s).to_numpy() - 1e-9).all()
    assert summary["requests"]["completed"] + summary["requests"]["rejected"] == 300
    assert summary["cluster"]["migration_link"]["transfers"] == len(moves)


def test_schedule_autoscaler_bills_the_instance_seconds_it_runs():
    result, _ = simulate_checked(**{
        "cluster.instances": 1,
        "workload.arrival.rate": 10.0,
        "cluster.autoscaling.policy": {"name": "schedule", "points": [[0, 1], [5, 3]]},
        "cluster.autoscaling.interval_s": 1.0,
        "cluster.autoscaling.max_instances": 3,
        "cluster.autoscaling.cold_start.fixed_s": 2.0,
        "cluster.autoscaling.cold_start.load_bandwidth_gb_s": 1e5,
    })
    c = result.summary["cluster"]
    end = result.summary["sim"]["simulated_s"]
    assert c["cold_starts"] == 2 and c["peak_instances"] == 3
    assert c["cold_start_s"] == pytest.approx(2.0 + 16.06e9 / 1e14, rel=1e-3)
    # rent and idle power follow the instance-hours, not slots x run time
    assert result.summary["cost"]["gpu_hours"] == pytest.approx(c["instance_hours"])
    energy = result.summary["energy"]
    assert energy["idle_j"] <= 75.0 * c["instance_seconds"] + 1e-6
    # one from 0, two more from the 5 s decision (their cold start is billed)
    assert c["instance_seconds"] == pytest.approx(end + 2 * (end - 5.0), rel=1e-6)
    events = result.lifecycle.frame()
    serving = events[(events.event == "serving") & (events.time_s > 0)]
    assert np.allclose(serving.time_s, 5.0 + 2.0 + 16.06e9 / 1e14, atol=1e-3)
    ts = result.timeseries(1.0)
    assert ts.groupby("time_s").up_frac.sum().iloc[-2] == pytest.approx(3.0)


def test_scale_down_drains_without_losing_requests_and_respects_min():
    result, _ = simulate_checked(**{
        "cluster.instances": 3,
        "cluster.autoscaling.policy": {"name": "queue_length", "requests_per_instance": 1000},
        "cluster.autoscaling.interval_s": 1.0,
        "cluster.autoscaling.cooldown_s": 0.0,
        "cluster.autoscaling.min_instances": 1,
    })
    events = result.lifecycle.frame()
    assert (events.event == "draining").sum() == 2 and (events.event == "off").sum() == 2
    assert result.summary["requests"]["completed"] + result.summary["requests"]["rejected"] == 300
    assert 0 in set(result.requests.instance)


def test_random_failures_are_reproducible_from_the_seed():
    changes = {"cluster.faults.mtbf_s": 2.0, "cluster.faults.repair_s": 1.0}
    a, _ = simulate_checked(**changes)
    b, _ = simulate_checked(**changes)
    c, _ = simulate_checked(**changes, **{"engine.max_num_seqs": 8})
    fa, fb = a.lifecycle.frame(), b.lifecycle.frame()
    assert a.summary["cluster"]["failures"] > 0 and fa.equals(fb)
    # another engine setting: the same arrivals
    assert a.requests.arrival_s.equals(c.requests.arrival_s)


def test_timeline_shows_states_failures_and_migration_flows():
    result, _ = simulate_checked(**{
        "engine.kv_capacity_tokens": 6000,
        "cluster.router": "round_robin",
        "cluster.faults.failures": [{"at_s": 4.0, "instance": 2}],
        "cluster.migration.policy": {"name": "load", "min_pressure": 0.5, "threshold": 0.1},
        "cluster.migration.interval_s": 0.1,
    })
    events = chrome_trace(result)["traceEvents"]
    names = {e["name"] for e in events}
    assert {"serving", "failed", "instance failed", "migration"} <= names
    starts = [e for e in events if e["ph"] == "s"]
    ends = [e for e in events if e["ph"] == "f"]
    assert len(starts) == len(ends) == result.summary["cluster"]["migrations"] > 0
    # slices on one thread never overlap (concurrent transfers get lanes)
    lanes: dict = {}
    for e in sorted((e for e in events if e.get("cat") == "migration" and e["ph"] == "X"),
                    key=lambda e: e["ts"]):
        key = (e["pid"], e["tid"])
        assert e["ts"] >= lanes.get(key, -1.0) - 1e-3
        lanes[key] = e["ts"] + e["dur"]


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"cluster.autoscaling.min_instances": 3, "cluster.autoscaling.max_instances": 2},
         "cluster.autoscaling"),
        ({"cluster.autoscaling.policy": "nope"}, "cluster.autoscaling.policy"),
        ({"cluster.migration.policy": {"name": "load", "bogus": 1}}, "cluster.migration.policy.bogus"),
        ({"cluster.autoscaling.max_instances": 2}, "cluster.instances"),
        ({"cluster.instances": 2, "cluster.disaggregation.prefill_instances": 1,
          "cluster.faults.mtbf_s": 5.0}, "cluster"),
    ],
)
def test_bad_elastic_config_names_the_key(changes, key):
    with pytest.raises(ConfigError) as err:
        build(load_config(small_config(**{**BUSY, **changes})))
    assert err.value.key == key


def test_cli_rejects_a_bad_elastic_config_with_one_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("cluster:\n  autoscaling: {min_instances: 5, max_instances: 2}\n")
    proc = subprocess.run([sys.executable, "-m", "servesim", "run", str(cfg), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "cluster.autoscaling" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_fixed_fleet_reports_instance_seconds_too():
    summary = servesim.simulate(small_config(**BUSY)).summary
    c = summary["cluster"]
    assert c["instance_seconds"] == pytest.approx(3 * summary["sim"]["simulated_s"])
    assert c["cold_starts"] == 0 and "failed" not in summary["requests"]


def test_run_writes_lifecycle_and_elastic_timeseries(tmp_path):
    result, _ = simulate_checked(**{"cluster.faults.failures": [{"at_s": 4.0}]})
    out = result.save(tmp_path / "run")
    assert (out / "lifecycle.csv").exists() and (out / "migrations.csv").exists()
    header = (out / "timeseries.csv").read_text().splitlines()[0].split(",")
    assert {"up_frac", "serving_frac", "cold_starts", "failures", "slowdown"} <= set(header)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cluster"]["failures"] == 1


def test_link_degradation_and_straggler_on_a_disaggregated_cluster():
    base = {
        "cluster.instances": 3,
        "cluster.disaggregation.prefill_instances": 1,
        "cluster.disaggregation.decode_instances": 2,
        "cluster.disaggregation.kv_link.bandwidth_gb_s": 5.0,
        "workload.num_requests": 200,
        "workload.arrival.rate": 20.0,
    }
    slow = {"cluster.faults.link_degradations": [{"at_s": 2.0, "factor": 10.0, "duration_s": 4.0,
                                                  "link": "kv"}],
            "cluster.faults.stragglers": [{"at_s": 2.0, "instance": 1, "duration_s": 4.0}]}
    fast = servesim.simulate(small_config(**base))
    degraded = servesim.simulate(small_config(**base, **slow))
    window = fast.requests.arrival_s.between(2.0, 5.0)
    assert degraded.requests[window].ttft_s.mean() > 2 * fast.requests[window].ttft_s.mean()
    assert degraded.summary["cluster"]["instance_seconds"] == pytest.approx(
        3 * degraded.summary["sim"]["simulated_s"])
    assert degraded.summary["requests"]["completed"] == fast.summary["requests"]["completed"]


@pytest.mark.parametrize(
    "name, changes",
    [
        ("diurnal_fixed_peak", {"workload.duration_s": 40.0}),
        ("diurnal_autoscaled", {"workload.duration_s": 40.0, "cluster.autoscaling.interval_s": 2.0,
                                "cluster.autoscaling.cold_start.fixed_s": 1.0}),
        ("instance_failure", {"workload.duration_s": 20.0,
                              "cluster.faults.failures": [{"at_s": 10.0, "instance": 1}]}),
        ("migration_bursty", {"workload.num_requests": 300}),
    ],
)
def test_example_configs_run_and_conserve_requests(name, changes):
    result = servesim.simulate(f"configs/elastic/{name}.yaml", **changes)
    req = result.summary["requests"]
    assert req["arrived"] > 0 and req["unfinished"] == 0
    assert req["arrived"] == req["completed"] + req["rejected"] + req.get("failed", 0)
    assert result.summary["cluster"]["instance_seconds"] > 0
    if name == "instance_failure":
        assert req["retried"] > 0 and req["failed"] == 0


def test_plot_fleet_and_timeline_commands(tmp_path):
    from servesim.cli import main

    runs = []
    for name, extra in [("fixed", {}), ("auto", {"cluster.autoscaling.interval_s": 2.0})]:
        cfg = "diurnal_fixed_peak" if name == "fixed" else "diurnal_autoscaled"
        result = servesim.simulate(f"configs/elastic/{cfg}.yaml", **{"workload.duration_s": 30.0},
                                   **extra)
        runs.append(str(result.save(tmp_path / name)))
    png = tmp_path / "fleet.png"
    assert main(["plot", "fleet", *runs, "--out", str(png)]) == 0
    assert png.stat().st_size > 10_000
    assert main(["plot", "fleet", str(tmp_path / "nope"), "--out", str(png)]) == 2
    trace = tmp_path / "trace.json"
    assert main(["timeline", "configs/elastic/instance_failure.yaml",
                 "--set", "workload.duration_s=20",
                 "--set", "cluster.faults.failures=[{at_s: 10, instance: 1}]",
                 "--set", "cluster.faults.repair_s=2", "--out", str(trace)]) == 0
    names = {e["name"] for e in json.loads(trace.read_text())["traceEvents"]}
    assert {"instance failed", "cold start", "serving"} <= names


def test_migration_empties_draining_instances_sooner():
    scale_down = {
        "cluster.instances": 3,
        "cluster.autoscaling.policy": {"name": "schedule", "points": [[0, 3], [3, 1]]},
        "cluster.autoscaling.interval_s": 1.0,
        "cluster.autoscaling.cooldown_s": 0.0,
    }
    waited, _ = simulate_checked(**scale_down)
    moved, _ = simulate_checked(**scale_down, **{
        "cluster.migration.policy": {"name": "load", "min_pressure": 10.0},  # only the drain moves
        "cluster.migration.interval_s": 0.1,
    })

    def off_times(result):
        events = result.lifecycle.frame()
        return events[events.event == "off"].time_s.to_numpy()

    assert len(off_times(waited)) == len(off_times(moved)) == 2
    assert (off_times(moved) < off_times(waited)).all()
    assert moved.summary["cluster"]["migrations"] > 0
    assert moved.summary["cluster"]["instance_seconds"] < waited.summary["cluster"]["instance_seconds"]
    assert moved.summary["requests"]["completed"] == waited.summary["requests"]["completed"]


def test_cooldown_delays_scale_down_but_not_scale_up():
    result, _ = simulate_checked(**{
        "cluster.instances": 2,
        "workload.num_requests": 600,
        "cluster.autoscaling.policy": {"name": "schedule",
                                       "points": [[0, 2], [2, 1], [4, 2], [5, 1]]},
        "cluster.autoscaling.interval_s": 1.0,
        "cluster.autoscaling.cooldown_s": 8.0,
        "cluster.autoscaling.cold_start.fixed_s": 0.5,
    })
    events = result.lifecycle.frame()
    drains = events[events.event == "draining"].time_s.tolist()
    ups = events[(events.event == "serving") & (events.time_s > 0)].time_s.tolist()
    assert drains[0] == pytest.approx(2.0)
    # scale-up right after a scale-down: the draining instance serves again (still warm)
    assert ups[0] == pytest.approx(4.0)
    assert drains[1] == pytest.approx(12.0)  # 8 s after the 4 s scale-up


def test_time_limit_on_an_elastic_run_counts_requests_in_flight_as_unfinished():
    result, _ = simulate_checked(**{
        "max_sim_time_s": 5.0,
        "cluster.faults.failures": [{"at_s": 2.0, "instance": 0}],
    })
    req = result.summary["requests"]
    assert result.summary["sim"]["simulated_s"] == pytest.approx(5.0)
    assert req["unfinished"] > 0
    assert req["arrived"] == req["completed"] + req["rejected"] + req["failed"] + req["unfinished"]


@pytest.mark.parametrize("router", ["conductor", "dualmap"])
def test_tier_aware_routers_route_an_elastic_fleet(router):
    """The fleet's view offers what they read (prefix hits per tier, reload time, prefill rate);
    it used to lack them, so any elastic run with these routers was an internal error."""
    result, _ = simulate_checked(**{
        "cluster.router": router,
        "engine.prefix_caching": True,
        "cluster.faults.failures": [{"at_s": 1.0, "instance": 1}],
        "workload.num_requests": 60,
    })
    req = result.summary["requests"]
    assert req["completed"] + req["rejected"] + req["failed"] == req["arrived"] == 60


def test_slowdown_objectives_price_requests_of_instances_added_by_scale_up():
    """Isolated latencies are priced on the pool of each request's instance; a scaled-up slot is
    beyond the initial instances (`built.parts`) and used to be an IndexError."""
    result, _ = simulate_checked(**{
        "cluster.instances": 1,
        "cluster.autoscaling": {
            "policy": {"name": "queue_length", "requests_per_instance": 1}, "min_instances": 1,
            "max_instances": 2, "interval_s": 0.02,
            "cold_start": {"fixed_s": 0.01, "load_bandwidth_gb_s": 10_000},
        },
        "workload.num_requests": 100,
        "workload.arrival.rate": 200.0,
        "slo.objectives": {"slow": {"e2e_slowdown": 2}},
    })
    frame = result.requests
    assert set(frame.instance) == {0, 1}
    assert (frame.e2e_isolated_s > 0).all()
    assert frame.loc[frame.instance == 1, "e2e_isolated_s"].gt(0).all()


def test_a_straggler_on_an_instance_that_failed_in_a_decode_run_is_harmless():
    """The failure kills the instance in a multi-step decode run; the straggler's wake() on the
    dead instance used to interrupt its finished process (internal error)."""
    result, _ = simulate_checked(**{
        "cluster.instances": 2,
        "cluster.faults": {
            "failures": [{"at_s": 0.3, "instance": 0}], "repair_s": 5.0,
            "stragglers": [{"at_s": 0.5, "instance": 0, "factor": 2.0, "duration_s": 0.1}],
        },
        "workload.num_requests": 20,
        "workload.arrival": {"process": "constant", "rate": 100.0},
        "workload.lengths": {
            "prompt": {"dist": "fixed", "value": 100}, "output": {"dist": "fixed", "value": 300}
        },
    })
    req = result.summary["requests"]
    assert result.summary["cluster"]["failures"] == 1 and req["retried"] > 0
    assert req["completed"] == req["arrived"] == 20


def test_random_failures_wait_while_no_instance_serves():
    """With every instance down (repair, cold start) a failure has nothing to hit: the failure
    process waits for one to serve again instead of ticking every mtbf_s (1 us: ~10^9 events,
    a run that never ended)."""
    result, _ = simulate_checked(**{
        "cluster.instances": 2,
        "cluster.faults": {"mtbf_s": 1e-6, "repair_s": 300.0},
        "workload.num_requests": 12,
    })
    req = result.summary["requests"]
    assert req["failed"] == req["arrived"] == 12
    assert result.summary["sim"]["events"] < 1000
