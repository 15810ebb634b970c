"""servesim capacity: bracketing and bisection find the edge of the target, with reused seeds."""

import json

import pytest

from servesim import simulate
from servesim.cli import main
from servesim.core.errors import ConfigError
from servesim.studies.capacity import attainment_target, find_capacity, parse_target
from tests.factories import write_config


def test_rate_capacity_brackets_the_target(tmp_path):
    cfg = write_config(tmp_path)
    target = attainment_target(0.9)
    result = find_capacity(cfg, [target], rel_tol=0.05, steady=None)
    assert result.met and result.bracketed
    best = result.at_value()
    assert best.metrics["slo.attainment"] >= 0.9
    # the bracket: some evaluated value above the answer, within rel_tol, misses the target
    above = [e for e in result.evaluations if e.value > result.value]
    nearest = min(above, key=lambda e: e.value)
    assert not nearest.met and nearest.value <= result.value * 1.05 + 1e-9
    # the evaluations are real simulations at the same seed (common random numbers)
    again = simulate(cfg, **{"workload.arrival.rate": result.value}).summary
    assert again["slo"]["attainment"] == pytest.approx(best.metrics["slo.attainment"])


def test_instances_capacity_finds_the_smallest_count(tmp_path):
    cfg = write_config(tmp_path, workload={"num_requests": 80, "arrival": {"rate": 150.0}})
    result = find_capacity(cfg, [attainment_target(0.9)], key="cluster.instances", steady=None)
    assert result.direction == "min" and result.met
    n = result.value
    assert isinstance(n, int) and n >= 2
    values = {e.value: e.met for e in result.evaluations}
    assert values[n] and values[n - 1] is False  # adjacent integers bracket it


def test_latency_target_and_several_seeds(tmp_path):
    cfg = write_config(tmp_path)
    target = parse_target("latency.ttft.p99<=0.3")
    result = find_capacity(cfg, [target], seeds=2, rel_tol=0.1, steady=None)
    assert result.met
    assert result.at_value().metrics["latency.ttft.p99"] <= 0.3


def test_explicit_bracket_and_unattainable_target(tmp_path):
    cfg = write_config(tmp_path, slo={"ttft_s": 1e-4, "tpot_s": 1e-4})
    result = find_capacity(cfg, [attainment_target(0.5)], low=1.0, high=50.0)
    assert not result.met and result.value is None
    assert [e.value for e in result.evaluations] == [1.0]  # the good end already misses


@pytest.mark.parametrize("text", ["latency.ttft.p99<0.3", "foo>=1", "slo.attainment>=x"])
def test_bad_targets(text):
    with pytest.raises(ConfigError):
        parse_target(text)


def test_cli_json_shape_and_out(tmp_path, capsys):
    cfg = write_config(tmp_path)
    out = tmp_path / "cap"
    code = main(["capacity", str(cfg), "--target-attainment", "0.9", "--rtol", "0.1",
                 "--out", str(out), "--json", "--no-steady-check"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["key"] == "workload.arrival.rate"
    assert doc["attainment_at_value"] >= 0.9
    assert {"value", "met", "attainment"} <= set(doc["evaluations"][0])
    assert json.loads((out / "capacity.json").read_text()) == doc
    assert f"rate: {doc['value']}" in (out / "config.yaml").read_text()


def test_cli_exit_1_when_even_the_smallest_value_misses(tmp_path, capsys):
    cfg = write_config(tmp_path)
    code = main(["capacity", str(cfg), "--target-attainment", "0.9", "--set", "slo.ttft_s=0.0001"])
    assert code == 1
    assert "no value tried meets" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target-attainment", "0"], "(0, 1]"),
        (["--target-attainment", "1.2"], "(0, 1]"),
        ([], "--target-attainment"),
        (["--target-attainment", "0.9", "--vary", "engine.nosuch"], "engine.nosuch: unknown key"),
        (["--target-attainment", "0.9", "--vary", "engine.scheduler"], "not numeric"),
        (["--target-attainment", "0.9", "--low", "5"], "together"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path, capsys, extra, message):
    cfg = write_config(tmp_path)
    assert main(["capacity", str(cfg), *extra]) == 2
    assert message in capsys.readouterr().err


def test_library_errors_name_arguments_and_the_cli_names_flags(tmp_path, capsys):
    """The CLI's vocabulary stays in the CLI: the library says `low`, the command says --low."""
    cfg = write_config(tmp_path)
    with pytest.raises(ConfigError) as err:
        find_capacity(cfg, [attainment_target(0.9)], low=5.0, high=1.0)
    assert str(err.value) == "low: must be below high (5.0 >= 1.0)"
    assert main(["capacity", str(cfg), "--target-attainment", "0.9", "--low", "5", "--high", "1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --low: must be below high (5.0 >= 1.0)"
