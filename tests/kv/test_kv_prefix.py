"""Prefix caching: chained block keys, hit accounting against hand-computed examples, reference
counts, LRU eviction, and the invariants with caching on."""

from __future__ import annotations

import pandas as pd
import pytest

from servesim.cost.base import StepShape
from servesim.kv.block_pool import PrefixBlockPool, PromptSegments, chain_hashes
from servesim.kv.manager import KVCacheManager
from tests.factories import check_kv, make_request, run_table, session_table, small_config, table_from_rows


def test_chain_keys_depend_on_every_earlier_block():
    a, b = chain_hashes([1, 2, 3]), chain_hashes([9, 2, 3])
    assert a[0] != b[0] and a[1] != b[1] and a[2] != b[2]
    assert chain_hashes([1, 2]) == a[:2]  # a prefix's chain is the chain's prefix


def test_engine_blocks_map_onto_hash_blocks():
    segs = PromptSegments([7, 8], num_prompt_tokens=1000, hash_block_size=512, block_size=16)
    chain = chain_hashes([7, 8])
    # 32 engine blocks per 512-token hash block; the partial second one holds 488 // 16 = 30.
    assert segs.keys == [(chain[0], 32), (chain[1], 30)] and segs.ends == [32, 62]
    # Hashes covering less than the prompt limit what can be cached.
    assert PromptSegments([7], 1000, 512, 16).ends == [32]
    # Hash blocks smaller than engine blocks: a segment per hash block where an engine block ends.
    small = PromptSegments([1, 2, 3, 4, 5], 80, 16, 32)
    assert small.ends == [1, 2] and [k[0] for k in small.keys] == [chain_hashes([1, 2, 3, 4])[i]
                                                                    for i in (1, 3)]


def manager(num_blocks=400, caching=True):
    return KVCacheManager(num_blocks, 16, watermark=0.0, prefix_caching=caching, hash_block_size=512)


def compute_prompt(kv, request, now=1.0):
    """Admit and prefill a request as FCFS would, then publish its blocks."""
    cached = kv.match_prefix(request)
    assert kv.allocate(request, request.num_pending_tokens - cached, num_cached_tokens=cached)
    if cached:
        request.skip_cached_prefix(cached)
    request.advance(request.num_pending_tokens, now)
    kv.cache_computed(request)
    return cached


def test_hit_accounting_hand_computed():
    kv = manager()
    a = make_request(0, 1100, 5, prefix_hashes=(1, 2, 3))
    assert compute_prompt(kv, a) == 0
    assert kv.num_cached_blocks == 1100 // 16  # 68 full blocks named: segments of 32, 32, 4
    # Shares hash blocks 1 and 2 only: 2 x 512 tokens.
    b = make_request(1, 1100, 5, prefix_hashes=(1, 2, 9))
    assert kv.match_prefix(b) == 1024
    # Same prompt: every full block, 68 x 16 = 1088 (< 1100, one token is left to compute).
    c = make_request(2, 1100, 5, prefix_hashes=(1, 2, 3))
    assert kv.match_prefix(c) == 1088
    # A prompt of exactly 1088 tokens must still compute its last token, so the last segment
    # (ending at block 68 > 1087 // 16 = 67) is not used: whole segments only.
    d = make_request(3, 1088, 5, prefix_hashes=(1, 2, 3))
    assert kv.match_prefix(d) == 1024
    # Different first block: nothing, though later hash ids agree (keys are chained).
    e = make_request(4, 1100, 5, prefix_hashes=(5, 2, 3))
    assert kv.match_prefix(e) == 0


def test_hits_reference_blocks_and_free_makes_them_evictable():
    kv = manager(num_blocks=200)
    a = make_request(0, 1024, 5, prefix_hashes=(1, 2))
    compute_prompt(kv, a)
    assert kv.num_free_blocks == 200 - 64
    kv.free(a)
    assert kv.num_free_blocks == 200 and kv.num_cached_blocks == 64  # cached, yet reclaimable
    b = make_request(1, 1100, 5, prefix_hashes=(1, 2, 3))
    assert compute_prompt(kv, b) == 1024
    assert b.num_cached_tokens == 1024 and b.num_computed_tokens == 1100
    # 64 blocks hit, and its own computed tail segment (4 blocks) is named too.
    assert kv.prefix.ref_counts[kv.segments(b).keys[0]] == 1 and kv.num_shared_blocks(b) == 68
    assert kv.num_free_blocks == 200 - 69  # 64 referenced again + 5 new (69 blocks for 1100)
    kv.free(b)
    assert kv.num_free_blocks == 200


def test_lru_eviction_takes_the_least_recently_released_tail_first():
    pool = PrefixBlockPool()
    a, b, c, d = ("a", 2), ("b", 3), ("c", 4), ("d", 5)  # (name, blocks)
    for key in (a, b, c, d):
        pool.insert(key)
    assert pool.num_blocks == 14
    assert pool.release([a, b]) == 5  # released in reverse: b then a
    assert pool.release([c]) == 4 and pool.num_evictable_blocks == 9
    assert pool.evict(1) == 3  # whole segments: b, the tail of the earlier release, goes first
    assert b not in pool and a in pool
    assert pool.evict(1) == 2 and set(pool.ref_counts) == {c, d}
    assert pool.acquire(c) == 4 and pool.num_evictable_blocks == 0  # a hit leaves the LRU
    assert pool.num_blocks == 9 and pool.num_evicted_blocks == 5


def test_allocation_evicts_cached_blocks_only_when_unnamed_ones_run_out():
    kv = manager(num_blocks=100)
    a = make_request(0, 1024, 5, prefix_hashes=(1, 2))
    compute_prompt(kv, a)
    kv.free(a)
    assert kv.num_unnamed_free_blocks == 36 and kv.num_cached_blocks == 64
    big = make_request(1, 40 * 16, 5)  # 40 blocks, no hashes: 36 unnamed + 4 from the cache
    assert kv.allocate(big, big.num_pending_tokens)
    # The tail segment (32 blocks) went whole; 28 of its blocks are unnamed free now.
    assert kv.num_cached_blocks == 32 and kv.prefix.num_evicted_blocks == 32
    assert kv.num_free_blocks == 60 and kv.num_unnamed_free_blocks == 28
    c = make_request(2, 1100, 5, prefix_hashes=(1, 2, 3))
    assert kv.match_prefix(c) == 512  # the head still hits


def test_refused_allocation_changes_nothing():
    kv = manager(num_blocks=70)
    a = make_request(0, 1024, 5, prefix_hashes=(1, 2))
    compute_prompt(kv, a)
    kv.free(a)
    b = make_request(1, 3000, 5, prefix_hashes=(1, 2, 3, 4, 5, 6))
    cached = kv.match_prefix(b)
    assert cached == 1024
    before = (kv.num_free_blocks, dict(kv.prefix.ref_counts), kv.blocks_of(b))
    assert not kv.allocate(b, b.num_pending_tokens - cached, num_cached_tokens=cached)
    assert (kv.num_free_blocks, dict(kv.prefix.ref_counts), kv.blocks_of(b)) == before
    assert b not in kv.held


def test_concurrent_computation_of_one_prefix_is_deduplicated():
    kv = manager(num_blocks=200)
    a = make_request(0, 1024, 5, prefix_hashes=(1, 2))
    b = make_request(1, 1024, 5, prefix_hashes=(1, 2))
    for r in (a, b):  # both admitted before either publishes
        assert kv.allocate(r, r.num_pending_tokens)
    assert kv.num_free_blocks == 200 - 128
    for r in (a, b):
        r.advance(r.num_pending_tokens, 1.0)
        kv.cache_computed(r)
    assert kv.num_cached_blocks == 64 and kv.num_free_blocks == 200 - 64  # b uses a's copy
    assert kv.num_shared_blocks(b) == 64 and kv.blocks_of(b) == 64
    kv.free(a)
    kv.free(b)
    assert kv.num_free_blocks == 200 and kv.prefix.num_evictable_blocks == 64


def test_without_caching_nothing_is_named():
    kv = manager(caching=False)
    a = make_request(0, 1024, 5, prefix_hashes=(1, 2))
    compute_prompt(kv, a)
    b = make_request(1, 1024, 5, prefix_hashes=(1, 2))
    assert kv.match_prefix(b) == 0 and kv.num_cached_blocks == 0


def caching_config(**changes):
    return small_config(**{"engine.prefix_caching": True, **changes})


def test_end_to_end_hits_and_ttft_hand_computed():
    # One instance, requests far apart: each runs alone. Request 1 shares two hash blocks with
    # request 0; request 2 repeats request 0's prompt.
    rows = [
        (0.0, 2048, 4, [10, 11, 12, 13]),
        (10.0, 2048, 4, [10, 11, 20, 21]),
        (20.0, 2048, 4, [10, 11, 12, 13]),
    ]
    result, built = run_table(caching_config(), table_from_rows(rows))
    f = result.requests
    # Request 2 may not reuse its last segment (one token must be computed): 3 x 512.
    assert f["cached_tokens"].tolist() == [0, 1024, 1536]
    assert result.summary["kv"]["prefix_hit_rate"] == pytest.approx(2560 / 6144)
    cost = built.parts[0].cost_model
    # Only the uncached chunk is priced, with the cached tokens as its prior context.
    assert f["ttft_s"][1] == pytest.approx(cost.step_time(StepShape([(1024, 1024)], 0, 0, 1)))
    assert f["ttft_s"][2] == pytest.approx(cost.step_time(StepShape([(512, 1536)], 0, 0, 1)))
    assert f["ttft_s"][0] == pytest.approx(cost.step_time(StepShape([(2048, 0)], 0, 0, 1)))


def test_caching_off_gives_no_hits_on_the_same_table():
    result, _ = run_table(small_config(), session_table(80, seed=3))
    assert result.summary["kv"]["prefix_hit_rate"] == 0.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_block_conservation_and_request_conservation_with_caching(seed):
    # A tight KV cache forces evictions and preemptions.
    cfg = caching_config(**{"engine.kv_capacity_tokens": 8_000, "cluster.instances": 2, "seed": seed})
    table = session_table(120, seed=seed, rate=40, output_mean=150)
    result, built = run_table(cfg, table, after_step=check_kv)
    req = result.summary["requests"]
    assert req["arrived"] == req["completed"] + req["rejected"] + req["unfinished"] == 120
    assert result.summary["kv"]["prefix_hit_rate"] > 0.2
    f = result.requests
    assert result.summary["kv"]["preemptions"] > 0  # re-admissions re-hit, but count once
    assert (f["cached_tokens"] < f["prompt_tokens"]).all()
    for part in built.parts:
        assert part.kv.num_free_blocks == part.kv.num_blocks and not part.kv.held
        assert part.kv.prefix.num_evictable_blocks == part.kv.num_cached_blocks


def test_multi_step_runs_equal_single_steps_with_caching():
    cfg = caching_config(**{"engine.kv_capacity_tokens": 20_000, "cluster.instances": 2})
    table = session_table(100, seed=5, rate=30)
    multi, _ = run_table(cfg, table)
    single, _ = run_table({**cfg, "engine": {**cfg["engine"], "max_run_steps": 1}},
                          session_table(100, seed=5, rate=30))
    pd.testing.assert_frame_equal(multi.requests, single.requests)
    assert multi.summary["kv"]["prefix_hit_rate"] > 0


@pytest.mark.parametrize("policy", ["fcfs", "srtf", "edf", "priority"])
def test_every_policy_and_batching_reuses_the_cache(policy):
    """Issue 12: caching lives in the one admission path, so no policy can forget it (srtf, edf
    and priority used to get no hits at all)."""
    rows = [
        (0.0, 2048, 4, [10, 11, 12, 13]),
        (10.0, 2048, 4, [10, 11, 20, 21]),
        (20.0, 2048, 4, [10, 11, 12, 13]),
    ]
    for batching in ("whole", "chunked"):
        cfg = caching_config(**{"engine.scheduler": policy, "engine.batching": batching})
        result, _ = run_table(cfg, table_from_rows(rows))
        assert result.requests["cached_tokens"].tolist() == [0, 1024, 1536], batching


def test_chunked_prefill_reuses_the_cache_too():
    rows = [
        (0.0, 2048, 4, [10, 11, 12, 13]),
        (10.0, 2048, 4, [10, 11, 20, 21]),
        (20.0, 2048, 4, [10, 11, 12, 13]),
    ]
    cfg = caching_config(**{"engine.scheduler": "chunked_prefill", "engine.chunk_size": 512})
    result, _ = run_table(cfg, table_from_rows(rows))
    assert result.requests["cached_tokens"].tolist() == [0, 1024, 1536]
    ttft = result.requests["ttft_s"]
    assert ttft[0] > ttft[1] > ttft[2]  # 4, 2 and 1 chunks of 512


def test_generated_sessions_hit_their_shared_prefixes():
    cfg = caching_config(**{
        "workload.num_requests": 80,
        "workload.sessions": {"turns": {"dist": "uniform", "min": 2, "max": 5},
                              "think_time": {"dist": "exponential", "mean": 2.0},
                              "system_prompt_tokens": 600},
        "cluster.instances": 2, "cluster.router": "prefix_affinity",
    })
    from servesim.simulation import simulate

    cached = simulate(cfg)
    assert cached.summary["kv"]["prefix_hit_rate"] > 0.3
    assert simulate(cfg, **{"engine.prefix_caching": False}).summary["kv"]["prefix_hit_rate"] == 0


def test_every_policy_gets_the_same_hits_on_the_mooncake_trace(monkeypatch):
    """Issue 12's check on a 400-request window of configs/cluster_mooncake_prefix.yaml (the full
    run gives 0.1062 fcfs, 0.1060 srtf, 0.1062 edf, 0.1062 priority; srtf, edf and priority had 0)."""
    from pathlib import Path

    from servesim.simulation import simulate

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    rates = {
        policy: simulate("configs/cluster_mooncake_prefix.yaml", **{
            "engine.scheduler": policy, "workload.trace.max_requests": 400,
        }).summary["kv"]["prefix_hit_rate"]
        for policy in ("fcfs", "srtf", "edf", "priority")
    }
    assert rates["fcfs"] > 0.05
    assert max(rates.values()) - min(rates.values()) < 0.01 * rates["fcfs"] + 1e-9, rates
