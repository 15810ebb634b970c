"""Issue 14's done-when effects on short windows of the shipped configs (the full runs are
`examples/studies/kv_studies.py`; docs/kv.md records their numbers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from servesim.studies.kv import cache_sweep, prefix_ceiling, retention_comparison, routing_comparison

ROOT = Path(__file__).resolve().parents[2]
KV, AGENTIC = ROOT / "configs" / "kv", ROOT / "configs" / "agentic"
WINDOW = {"workload.trace.duration_s": 300}


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the configs name their trace relative to the repository root


def test_hit_rate_rises_with_the_pool_towards_the_ceiling():
    ceiling = prefix_ceiling(KV / "mooncake_global_pool.yaml", **WINDOW)
    sweep = cache_sweep(KV / "mooncake_global_pool.yaml", [0, 256, 16384], **WINDOW)
    rates = sweep["hit_rate"].tolist()
    assert rates[0] < rates[1] < rates[2] <= ceiling
    assert rates[2] > 0.85 * ceiling  # a large pool holds nearly every reusable prefix
    assert sweep["hit_peer"].iloc[2] > 0  # the pool shares KV across instances


def test_global_pool_beats_local_cache_aware_beats_least_load():
    routing = routing_comparison({
        "least_tokens": KV / "mooncake_least_tokens.yaml",
        "local": KV / "mooncake_local_cache_aware.yaml",
        "global": KV / "mooncake_global_pool.yaml",
    }, **WINDOW)
    ttft = dict(zip(routing["setup"], routing["ttft_mean_s"]))
    assert ttft["global"] < ttft["local"] < ttft["least_tokens"]


def test_ttl_pins_help_until_a_long_ttl_starves_the_cache():
    """30 programs starting at 0.2/s on the shipped agentic config: a 10 s pin cuts task time
    against dropping the KV; a 300 s pin holds most of the cache and makes it far worse."""
    retention = retention_comparison(AGENTIC / "ttl.yaml", {
        "none": {"kv.retention.mode": "none"},
        "ttl 10 s": {"kv.retention.ttl_s": 10},
        "ttl 300 s": {"kv.retention.ttl_s": 300},
    }, **{"workload.programs.num_programs": 30, "workload.arrival.rate": 0.2})
    rows = retention.set_index("retention")
    task = rows["task_mean_s"]
    assert task["ttl 10 s"] < task["none"] < task["ttl 300 s"]
    assert (rows["programs_completed"] == 30).all()
    pinned = rows["mean_pinned_frac"]
    assert pinned["none"] == 0 < pinned["ttl 10 s"] < pinned["ttl 300 s"]
    assert rows["recomputed_frac"]["ttl 10 s"] < rows["recomputed_frac"]["none"]
