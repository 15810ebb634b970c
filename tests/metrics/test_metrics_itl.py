"""Pooled inter-token gaps, scheduling delay, normalised latency and per-class blocks.

The reference is brute force: with one step per engine iteration, a hook after every step sees each
token as it is emitted, so every gap of every request is known exactly.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from servesim.build import build
from servesim.config import load_config
from servesim.metrics.gaps import TokenGaps
from servesim.simulation import run

BASE = {
    "seed": 3,
    "model": "llama3-8b",
    "hardware": "h100-sxm",
    "engine": {"max_num_seqs": 32},
    "workload": {
        "num_requests": 80,
        "arrival": {"rate": 30.0},
        "lengths": {"prompt": {"dist": "lognormal", "mean": 600, "sigma": 0.8, "max": 3000},
                    "output": {"dist": "lognormal", "mean": 60, "sigma": 0.8, "max": 300}},
    },
}
CASES = {
    "fcfs": {},
    "chunked": {"engine.scheduler": "chunked_prefill", "engine.chunk_size": 256},
    "preempting": {"engine.kv_capacity_tokens": 6000},
    "disaggregated": {"cluster.disaggregation": {"prefill_instances": 1, "decode_instances": 2}},
    "classes": {"workload.classes": [
        {"name": "chat", "slo": {"ttft_s": 0.5}},
        {"name": "batch", "arrival": {"rate": 10.0},
         "lengths": {"prompt": {"dist": "fixed", "value": 2000},
                     "output": {"dist": "fixed", "value": 100}}},
    ]},
}


def brute_force(overrides, monkeypatch=None):
    """Run one step per iteration, recording every token's gap per class as it is emitted."""
    built = build(load_config(BASE, {**overrides, "engine.max_run_steps": 1}))
    seen = {r.request_id: (0, math.nan) for r in built.requests}
    gaps: dict[str, list[float]] = {}

    def after_step(inst):
        for r in built.requests:
            count, last = seen[r.request_id]
            generated = r.num_generated_tokens
            if generated > count:
                assert generated == count + 1
                if count:
                    # the first token reaches the user when delivered (after a KV handoff)
                    prev = r.first_token_time if count == 1 else last
                    gaps.setdefault(r.class_name, []).append(r.last_token_time - prev)
                seen[r.request_id] = (generated, r.last_token_time)

    result = run(built, after_step=after_step)
    return result, gaps


def exact(values):
    v = np.asarray(values)
    q = np.percentile(v, [50, 90, 99], method="inverted_cdf")
    worst = np.sort(v)[::-1][: max(1, int(round(0.1 * len(v))))]
    mean = float(sum(map(Fraction, values), Fraction(0)) / len(values))  # correctly rounded
    return {"mean": mean, "p50": q[0], "p90": q[1], "p99": q[2], "worst10_mean": worst.mean(),
            "count": len(v)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_pooled_gaps_match_every_token(case, monkeypatch):
    result, gaps = brute_force(CASES[case], monkeypatch)
    pooled = [g for values in gaps.values() for g in values]
    want = exact(pooled)
    itl, tail = result.summary["latency"]["itl"], result.summary["itl"]
    assert tail["gaps"] == want["count"]
    assert itl["mean"] == want["mean"]  # summed exactly, whatever order the instances record in
    for k in ("p50", "p90", "p99"):
        assert itl[k] == pytest.approx(want[k], rel=6e-4), k
    # the top 10% by count: within half a bin, plus the share of one token at the boundary
    assert tail["worst10_mean"] == pytest.approx(want["worst10_mean"], rel=2e-3)
    assert tail["max"] == pytest.approx(max(pooled), rel=1e-12)
    if case == "classes":
        for name, values in gaps.items():
            block = result.summary["classes"][name]
            assert block["itl"]["gaps"] == len(values)
            assert block["latency"]["itl"]["p99"] == pytest.approx(exact(values)["p99"], rel=6e-4)


def test_multi_step_runs_record_the_same_gaps(monkeypatch):
    single, _ = brute_force({}, monkeypatch)
    multi = run(build(load_config(BASE)))
    assert multi.summary["sim"]["iterations"] == single.summary["sim"]["iterations"]
    # (a decode run's step ends may differ from single steps' in the last bit: gaps within 1e-9)
    for k, v in single.summary["latency"]["itl"].items():
        assert multi.summary["latency"]["itl"][k] == pytest.approx(v, rel=1e-9), k
    assert multi.summary["itl"]["gaps"] == single.summary["itl"]["gaps"]


def test_queue_and_normalised_latency_follow_requests_csv():
    result = run(build(load_config(BASE, {"workload.num_requests": 40})))
    f = result.requests[result.requests["status"] == "completed"]
    queue = (f["first_scheduled_s"] - f["arrival_s"]).to_numpy()
    norm = (f["e2e_s"] / f["output_tokens"]).to_numpy()
    lat = result.summary["latency"]
    assert lat["queue"]["p50"] == pytest.approx(np.percentile(queue, 50))
    assert lat["norm_e2e"]["mean"] == pytest.approx(norm.mean())
    assert set(lat["queue"]) == set(lat["norm_e2e"]) == set(lat["itl"]) == {"mean", "p50", "p90", "p99"}
    assert "classes" not in result.summary  # one default class: no per-class blocks


def test_per_class_blocks_partition_the_requests():
    result = run(build(load_config(BASE, CASES["classes"])))
    classes = result.summary["classes"]
    assert sorted(classes) == ["batch", "chat"]
    total = sum(c["requests"]["arrived"] for c in classes.values())
    assert total == result.summary["requests"]["arrived"]
    assert sum(c["itl"]["gaps"] for c in classes.values()) == result.summary["itl"]["gaps"]
    # the chat class follows its own TTFT objective
    f = result.requests[result.requests["class"] == "chat"]
    met = ((f["status"] == "completed") & (f["ttft_s"] <= 0.5) & (f["tpot_s"] <= 0.1)).mean()
    assert classes["chat"]["slo"]["attainment"] == pytest.approx(met)


def test_histogram_percentiles_and_tail_on_known_data():
    rng = np.random.default_rng(0)
    values = rng.lognormal(-3, 1.0, 20_000)
    gaps = TokenGaps()
    for v in values[:500]:
        gaps.add(float(v))
    gaps.cohort_steps(math.nan, np.cumsum(values[500:600]), {"default": 0}, {})  # no members: nothing
    for v in values[500:]:
        gaps.add(float(v))
    stats = gaps.stats()
    want = exact(values)
    assert stats["count"] == len(values)
    for k in ("p50", "p90", "p99", "worst10_mean"):
        assert stats[k] == pytest.approx(want[k], rel=6e-4), k
    assert TokenGaps().stats()["count"] == 0 and math.isnan(TokenGaps().stats()["p99"])


def test_a_cohort_step_weights_its_gap_by_the_settled_members():
    from tests.factories import make_request

    gaps = TokenGaps()
    joiner = make_request(1, 10, 5)
    # 4 members, one of which joined since the last step (its previous token at t=0.9)
    gaps.cohort_steps(1.0, np.array([1.5, 1.7]), {"default": 4}, {joiner: 0.9})
    stats = gaps.stats()
    assert stats["count"] == 1 + 3 + 4
    assert stats["mean"] == pytest.approx((0.6 + 3 * 0.5 + 4 * 0.2) / 8)
