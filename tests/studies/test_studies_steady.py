"""Capacity searches refuse to trust runs too short for the steady state: they lengthen them,
count a load whose queue keeps growing as missed, or refuse."""

import json

import pytest

from servesim import simulate
from servesim.cli import main
from servesim.core.errors import ConfigError
from servesim.studies.capacity import attainment_target, find_capacity, parse_target
from servesim.studies.steady import FEW, GROWING, SHORT, SteadyPolicy, growth, required_samples, verdict
from tests.factories import write_config


def test_required_samples_per_target_kind():
    assert required_samples("latency.ttft.p99", "<=", 1.0, 10) == (1000, "requests.completed")
    assert required_samples("latency.itl.p99", "<=", 0.1, 10) == (1000, "itl.gaps")
    assert required_samples("latency.queue.p50", "<=", 2.0, 10) == (20, "requests.completed")
    assert required_samples("slo.attainment", ">=", 0.9, 10) == (100, "requests.arrived")
    assert required_samples("classes.chat.latency.ttft.p90", "<=", 1, 10) == (
        100, "classes.chat.requests.completed")
    assert required_samples("slo.objectives.tbt.attainment", ">=", 0.95, 10) == (
        200, "requests.arrived")
    assert required_samples("latency.ttft.mean", "<=", 1.0, 10) is None
    assert required_samples("slo.attainment", ">=", 1.0, 10) is None


def test_verdicts_on_real_runs(tmp_path):
    cfg = write_config(tmp_path, workload={
        "num_requests": 60, "arrival": {"rate": 20.0},
        "lengths": {"prompt": {"dist": "fixed", "value": 400}, "output": {"dist": "fixed", "value": 50}}})
    policy = SteadyPolicy()
    calm = simulate(cfg, **{"workload.num_requests": 400})
    flat = {"requests.completed": 400, "requests.arrived": 400,
            "latency.e2e.p99": calm.summary["latency"]["e2e"]["p99"]}
    assert verdict(calm.requests, flat, [attainment_target(0.9)], policy) is None
    few = verdict(calm.requests, {**flat, "requests.arrived": 60}, [attainment_target(0.9)], policy)
    assert few.kind == FEW and "100 samples" in few.message
    short = verdict(calm.requests, {**flat, "latency.e2e.p99": 1e3}, [], policy)
    assert short.kind == SHORT
    # 400 req/s is far beyond one H100: the system fills and never drains while requests arrive
    flood = simulate(cfg, **{"workload.num_requests": 400, "workload.arrival.rate": 400.0})
    assert growth(flood.requests) > 0.5 and growth(calm.requests) < 0.05
    grow = verdict(flood.requests, {"latency.e2e.p99": 0.0}, [], policy)
    assert grow.kind == GROWING


def test_a_short_run_is_lengthened_until_it_holds(tmp_path):
    cfg = write_config(tmp_path, workload={
        "num_requests": 30, "arrival": {"rate": 5.0},
        "lengths": {"prompt": {"dist": "fixed", "value": 300}, "output": {"dist": "fixed", "value": 30}}})
    result = find_capacity(cfg, [attainment_target(0.9)], low=2.0, high=8.0, rel_tol=0.5)
    first = result.evaluations[0]
    assert first.num_requests >= 120 and first.steady == "steady"  # 30 -> 60 -> 120: 100 samples
    assert result.length == ("workload.num_requests", max(e.num_requests for e in result.evaluations))
    assert result.length_override() == {"workload.num_requests": result.at_value().num_requests}


def test_growing_queue_at_the_cap_is_a_miss(tmp_path):
    cfg = write_config(tmp_path, workload={
        "num_requests": 100, "arrival": {"rate": 400.0},
        "lengths": {"prompt": {"dist": "fixed", "value": 400}, "output": {"dist": "fixed", "value": 50}}})
    loose = parse_target("latency.ttft.p50<=1000")  # met even by the flood
    policy = SteadyPolicy(max_requests=200, warmup_factor=0.0)
    result = find_capacity(cfg, [loose], low=50.0, high=400.0, steady=policy)
    flood = next(e for e in result.evaluations if e.value == 400.0)
    assert not flood.met and flood.steady.startswith("unsustainable")
    assert flood.num_requests == 200
    # without the check, the same short flood passes
    assert find_capacity(cfg, [loose], low=50.0, high=400.0, steady=None).value == 400.0


def test_a_trace_too_short_is_refused(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n" +
                     "".join(f"{i * 0.2},300,30\n" for i in range(40)))
    cfg = write_config(tmp_path, workload={"trace": {"path": str(trace), "format": "csv"}})
    with pytest.raises(ConfigError, match="too short for a steady-state verdict"):
        find_capacity(cfg, [attainment_target(0.9)], key="workload.rate", low=1.0, high=4.0)
    code = main(["capacity", str(cfg), "--vary", "workload.rate", "--low", "1", "--high", "4",
                 "--target-attainment", "0.9"])
    assert code == 2


def test_cli_reports_the_length_used(tmp_path, capsys):
    cfg = write_config(tmp_path, workload={
        "num_requests": 30, "arrival": {"rate": 5.0},
        "lengths": {"prompt": {"dist": "fixed", "value": 300}, "output": {"dist": "fixed", "value": 30}}})
    out = tmp_path / "cap"
    code = main(["capacity", str(cfg), "--target-attainment", "0.9", "--low", "2", "--high", "8",
                 "--rtol", "0.5", "--json", "--out", str(out)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["length"]["workload.num_requests"] >= 120
    assert {"num_requests", "steady"} <= set(doc["evaluations"][0])
    assert "num_requests: " in (out / "config.yaml").read_text()
