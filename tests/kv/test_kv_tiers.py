"""KV tiers, the cluster pool, eviction policies and swap space: units, pricing, and the named
invariant that tier capacities and offload/reload traffic are conserved after every step."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servesim.core.errors import ConfigError
from servesim.core.request import Request
from servesim.kv.eviction import (
    LFUPolicy,
    LRUPolicy,
    ProgramAwarePolicy,
    ProgramHints,
    TTLPolicy,
    make_policy,
)
from servesim.kv.manager import KVCacheManager
from servesim.kv.tiers import BlockStore, KVPool, Link, TierChain
from tests.factories import check_kv, run_table, session_table, table_from_rows

K = [(i, 4) for i in range(10)]  # segment keys of 4 blocks each


# -- eviction policies ---------------------------------------------------------------------------
def test_lru_evicts_least_recently_used():
    p = LRUPolicy()
    for k in K[:3]:
        p.add(k)
    p.touch(K[0])
    assert [p.pop_victim() for _ in range(3)] == [K[1], K[2], K[0]]


def test_lfu_evicts_least_used_then_oldest():
    p = LFUPolicy()
    for k in K[:3]:
        p.add(k)
    p.touch(K[0])
    p.touch(K[0])
    p.touch(K[2])
    assert [p.pop_victim() for _ in range(3)] == [K[1], K[2], K[0]]
    assert len(p) == 0


def test_ttl_expires_unused_segments():
    now = [0.0]
    p = TTLPolicy(TTLPolicy.Params(ttl_s=5.0), clock=lambda: now[0])
    p.add(K[0])
    now[0] = 3.0
    p.add(K[1])
    assert p.expired(4.9) == []
    assert p.expired(5.0) == [K[0]]
    assert p.expired(8.0) == [K[0], K[1]]


def test_program_aware_keeps_the_program_due_soonest():
    hints = ProgramHints()
    p = ProgramAwarePolicy(hints, clock=lambda: 10.0)
    p.add(K[0], program=1)
    p.add(K[1], program=2)
    p.add(K[2], program=3)
    p.add(K[3])  # a plain request's segment
    hints.expect(1, 12.0)  # back in 2 s
    hints.expect(2, 40.0)  # back in 30 s
    hints.expect(3, math.inf)  # finished
    assert [p.pop_victim() for _ in range(4)] == [K[2], K[1], K[0], K[3]]


def test_make_policy_names():
    assert isinstance(make_policy("lfu"), LFUPolicy)
    assert isinstance(make_policy({"name": "ttl", "ttl_s": 3.0}), TTLPolicy)
    assert isinstance(make_policy("program"), ProgramAwarePolicy)
    assert isinstance(make_policy("lru"), LRUPolicy)


# -- stores and the chain ------------------------------------------------------------------------
def test_block_store_evicts_to_make_room_and_conserves():
    s = BlockStore("dram", 10)
    assert s.put(K[0]) == [] and s.put(K[1]) == []
    assert s.put(K[2]) == [K[0]]  # 12 > 10 blocks: the LRU one goes
    assert s.put((99, 11)) is None  # never fits
    assert s.reserve(6) == [K[1]]
    assert s.reserve(5) is None
    s.check_conservation()
    assert s.stored_blocks == 4 and s.reserved_blocks == 6


def chain(dram=8, ssd=16, pool=None, overlap=True):
    tiers = [BlockStore("dram", dram), BlockStore("ssd", ssd)]
    links = {"dram": Link("dram", 100.0, 0.0), "ssd": Link("ssd", 10.0, 0.0)}
    if pool is not None:
        links["pool"] = Link("pool", 50.0, 0.0)
    return TierChain(tiers, links, block_bytes=10.0, pool=pool, overlap=overlap)


def test_offload_cascades_down_and_reload_prices_each_link():
    c = chain()
    for k in K[:3]:
        c.offload(k)  # the third pushes the first to SSD
    assert c.locate(K[0]) == "ssd" and c.locate(K[2]) == "dram"
    assert c.take_transfer_s() == pytest.approx(max(12 * 10 / 100, 4 * 10 / 10))
    from servesim.kv.tiers import TierHits

    c.reload(TierHits(0, [("ssd", K[0])]))  # NVMe then PCIe
    assert c.links["ssd"].pending_bytes == 40 and c.links["dram"].pending_bytes == 40
    assert c.step_time(1.0) == pytest.approx(4.0)  # overlap: the slower of compute and NVMe
    c.check_conservation()


def test_stall_adds_transfer_to_compute():
    c = chain(overlap=False)
    c.offload(K[0])
    assert c.step_time(1.0) == pytest.approx(1.0 + 40 / 100)


def test_pool_takes_the_last_tier_evictions():
    pool = KVPool(100)
    c = TierChain([], {"pool": Link("pool", 50.0, 0.0)}, 10.0, pool)
    c.offload(K[0])
    assert c.locate(K[0]) == "pool" and pool.published_blocks == 4
    c.check_conservation()


# -- the manager: hits per tier, pricing, swap space ---------------------------------------------
def manager(num_blocks=8, dram=64):
    c = chain(dram=dram, ssd=64)
    return KVCacheManager(num_blocks, 16, prefix_caching=True, hash_block_size=64, tiers=c)


def test_evicted_prefix_is_reloaded_from_dram():
    kv = manager(num_blocks=10)
    a = Request(0, 0.0, 128, 2, prefix_hashes=(1, 2))
    assert kv.allocate(a, 128)
    a.skip_cached_prefix(0)
    a.advance(128, 1.0)
    kv.cache_computed(a)
    kv.free(a)
    b = Request(1, 0.0, 160, 2, prefix_hashes=(7, 8))  # takes all 10 blocks: a's segments go down
    assert kv.allocate(b, 160)
    kv.free(b)
    c = Request(2, 0.0, 129, 2, prefix_hashes=(1, 2, 3))
    hits = kv.peek_hits(c)
    assert hits == {"gpu": 0, "dram": 128}
    cached = kv.match_prefix(c)
    assert cached == 128 and kv.allocate(c, 1, num_cached_tokens=cached)
    assert kv.hit_tokens["dram"] == 128
    assert kv.num_cached_blocks == 8  # reloaded segments are named on the GPU again
    kv.check_conservation()


def test_swap_needs_room_in_the_host_tier():
    kv = manager(num_blocks=64, dram=4)
    r = Request(0, 0.0, 100, 5)
    kv.allocate(r, 100)
    r.advance(100, 1.0)
    assert not kv.swap_out(r)  # 7 blocks > 4 in DRAM: recompute instead
    kv2 = manager(num_blocks=64, dram=16)
    r2 = Request(1, 0.0, 100, 5)
    kv2.allocate(r2, 100)
    r2.advance(100, 1.0)
    assert kv2.swap_out(r2) and kv2.tiers.tiers[0].reserved_blocks == 7
    kv2.swap_in(r2)
    assert kv2.tiers.tiers[0].reserved_blocks == 0


def test_tiers_need_prefix_caching():
    from servesim.simulation import simulate
    from tests.factories import small_config

    with pytest.raises(ConfigError, match="kv.dram"):
        simulate(small_config(**{"kv": {"dram": {"capacity_gb": 1}}}))


# -- end to end: the named invariant -------------------------------------------------------------
def tiered_config(capacity, dram_gb, ssd_gb, pool_gb, transfers, preemption, router):
    kv = {"transfers": transfers}
    if dram_gb:
        kv["dram"] = {"capacity_gb": dram_gb}
    if ssd_gb:
        kv["ssd"] = {"capacity_gb": ssd_gb, "eviction": "lfu"}
    if pool_gb:
        kv["pool"] = {"capacity_gb": pool_gb, "eviction": {"name": "ttl", "ttl_s": 2.0}}
    return {
        "model": "llama3-8b", "hardware": "h100-sxm",
        "cluster": {"instances": 2, "router": router},
        "engine": {"scheduler": "fcfs", "prefix_caching": True, "kv_capacity_tokens": capacity,
                   "preemption": preemption, "max_num_batched_tokens": 8192},
        "kv": kv,
    }


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 1000),
    capacity=st.integers(4096, 12000),
    dram_gb=st.sampled_from([0, 0.2, 1.0]),
    ssd_gb=st.sampled_from([0, 0.5]),
    pool_gb=st.sampled_from([0, 0.5, 4.0]),
    transfers=st.sampled_from(["overlap", "stall"]),
    preemption=st.sampled_from(["recompute", "swap"]),
    router=st.sampled_from(["conductor", "dualmap", "least_tokens"]),
)
def test_tier_capacity_and_traffic_conservation(
    seed, capacity, dram_gb, ssd_gb, pool_gb, transfers, preemption, router
):
    """After every step: GPU block conservation, and per tier written - dropped == stored <=
    capacity, swap reserve == swapped requests' blocks, link bytes == offloads + reloads."""
    cfg = tiered_config(capacity, dram_gb, ssd_gb, pool_gb, transfers, preemption, router)

    def check(instance):
        check_kv(instance)  # one check: GPU blocks, tiers, swap space, pins

    table = session_table(60, seed=seed, rate=30, max_blocks=6)
    result, built = run_table(cfg, table, after_step=check)
    req = result.summary["requests"]
    assert req["arrived"] == req["completed"] + req["rejected"] + req["unfinished"]
    tiers = result.summary["kv"]["tiers"]
    total = sum(t["hit_tokens"] for t in tiers.values())
    assert total == result.requests["cached_tokens"].sum()


def test_lower_tiers_raise_the_hit_rate():
    table = session_table(120, seed=3, rate=30, max_blocks=6)
    rates = []
    for dram in (0, 4.0):
        cfg = tiered_config(6000, dram, 0, 0, "overlap", "recompute", "least_tokens")
        result, _ = run_table(cfg, table)
        rates.append(result.summary["kv"]["prefix_hit_rate"])
    assert rates[1] > rates[0]


def test_stall_is_never_faster_than_overlap():
    table = session_table(80, seed=5, rate=30, max_blocks=6)
    ttft = {}
    for mode in ("overlap", "stall"):
        cfg = tiered_config(6000, 4.0, 0, 0, mode, "recompute", "round_robin")
        result, _ = run_table(cfg, table)
        ttft[mode] = result.summary["latency"]["ttft"]["mean"]
        assert result.summary["kv"]["transfers"]["dram"]["bytes"] > 0
    assert ttft["stall"] >= ttft["overlap"]


# -- routers -------------------------------------------------------------------------------------
def test_conductor_follows_the_cached_prefix_then_the_pool_frees_it():
    """Two identical prompts apart in time: the second goes where the first was cached."""
    rows = [(0.0, 4096 + 10, 4, list(range(9))), (5.0, 4096 + 10, 4, list(range(9)))]
    cfg = tiered_config(40000, 0, 0, 0, "overlap", "recompute", "conductor")
    result, _ = run_table(cfg, table_from_rows(rows))
    frame = result.requests
    assert frame["instance"].nunique() == 1 and frame["cached_tokens"].iloc[1] == 4096


def test_dualmap_leaves_affinity_when_the_slo_is_at_risk():
    from servesim.routers.conductor import DualMapRouter

    class View:
        def __init__(self, index, queued, hit):
            self.index, self.queued, self.hit = index, queued, hit

        def load(self):
            from servesim.schedulers.core import SchedulerLoad

            return SchedulerLoad(0, 0, self.queued)

        def prefix_hits(self, request):
            return {"gpu": self.hit}

        def reload_time_s(self, hits):
            return 0.0

        prefill_s_per_token = 1e-4

    router = DualMapRouter(DualMapRouter.Params(slo_fraction=0.5), rng=None)
    r = Request(0, 0.0, 2000, 4, prefix_hashes=(5, 6), ttft_slo=2.0)
    a, b = router._ring.candidates(router._ring.affinity_key(r), 4)
    views = [View(i, 0, 0) for i in range(4)]
    views[a].hit = 1500
    assert router.route(r, views, 0.0) == a  # cache affinity
    views[a].queued = 20000  # 2 s of queued prefill: SLO at risk
    assert router.route(r, views, 0.0) != a and router.num_deflected == 1


# -- time series and timeline --------------------------------------------------------------------
def test_timeseries_and_timeline_show_tiers():
    from servesim.studies.timeline import chrome_trace

    table = session_table(80, seed=5, rate=30, max_blocks=6)
    cfg = tiered_config(6000, 4.0, 0, 4.0, "overlap", "recompute", "round_robin")
    result, _ = run_table(cfg, table)
    ts = result.timeseries()
    for column in ("dram_tokens", "pool_tokens", "hit_dram_tok_s", "dram_gb_s"):
        assert column in ts
    assert ts["dram_tokens"].max() > 0 and ts["dram_gb_s"].max() > 0
    # the integral of the hit rate is the hits (all of the run's bins)
    width = ts["time_s"].iloc[1] - ts["time_s"].iloc[0]
    hits = result.summary["kv"]["tiers"]["dram"]["hit_tokens"]
    assert (ts["hit_dram_tok_s"] * width).sum() == pytest.approx(hits, rel=1e-6)
    names = {e["name"] for e in chrome_trace(result)["traceEvents"] if e["ph"] == "C"}
    assert {"kv tiers (tokens)", "kv hits (tokens)", "kv transfers (GB)"} <= names


class MRUPolicy(LRUPolicy):
    """A plugin for the test below: most recently used first."""

    def pop_victim(self):
        return self._order.popitem(last=True)[0]


def test_eviction_policy_plugins_and_unknown_names():
    cfg = tiered_config(6000, 4.0, 0, 0, "overlap", "recompute", "round_robin")
    cfg["kv"]["dram"]["eviction"] = "tests.kv.test_kv_tiers:MRUPolicy"
    cfg["kv"]["gpu_eviction"] = "lfu"
    check = lambda instance: instance.kv.check_conservation()  # noqa: E731
    result, built = run_table(cfg, session_table(60, seed=2, rate=30, max_blocks=6), after_step=check)
    assert isinstance(built.parts[0].kv.tiers.tiers[0].policy, MRUPolicy)
    assert isinstance(built.parts[0].kv.prefix._evictable, LFUPolicy)
    cfg["kv"]["dram"]["eviction"] = {"name": "fifo"}
    with pytest.raises(ConfigError, match=r"kv.dram.eviction: unknown eviction policy 'fifo'"):
        run_table(cfg, session_table(5))
    cfg["kv"]["dram"]["eviction"] = {"name": "ttl", "ttl_s": -1}
    with pytest.raises(ConfigError, match=r"kv.dram.eviction.ttl_s: Input should be greater than 0"):
        run_table(cfg, session_table(5))
