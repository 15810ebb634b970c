"""The Python API: simulate(path_or_config, **overrides) -> result with summary, requests, save."""

import json

import servesim
from tests.factories import small_config


def test_simulate_with_dotted_overrides(tmp_path):
    result = servesim.simulate(small_config(), **{"engine.max_num_seqs": 2, "seed": 11})
    assert result.config.engine.max_num_seqs == 2
    assert result.summary["sim"]["seed"] == 11
    assert len(result.requests) == result.summary["requests"]["arrived"]
    out = result.save(tmp_path / "run")
    assert json.loads((out / "summary.json").read_text())["requests"] == result.summary["requests"]
    assert (out / "requests.csv").exists() and (out / "config.yaml").exists()


def test_relative_paths_resolve_beside_the_config(tmp_path, monkeypatch):
    from servesim.config import load_config

    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    (cfg_dir / "data.csv").write_text("x\n")
    (cfg_dir / "c.yaml").write_text("seed: 1\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(cfg_dir / "c.yaml")
    assert config.resolve_path("data.csv") == cfg_dir / "data.csv"


def test_more_instances_share_the_load():
    one = servesim.simulate(small_config(**{"workload.arrival.rate": 80.0}))
    two = servesim.simulate(small_config(**{"workload.arrival.rate": 80.0, "cluster.instances": 2}))
    assert set(two.requests.instance) == {0, 1}
    assert two.summary["latency"]["e2e"]["mean"] < one.summary["latency"]["e2e"]["mean"]


def test_resolved_config_round_trips(tmp_path):
    from servesim.config import load_config

    first = servesim.simulate(small_config())
    first.save(tmp_path / "a")
    again = load_config(tmp_path / "a" / "config.yaml")
    assert again.model_dump() == first.config.model_dump()
