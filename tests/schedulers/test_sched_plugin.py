"""The worked plugin examples on hand-built request sets, the registry, and `servesim.testing`."""

from pathlib import Path

from examples.cache_aware_router import CacheAwareRouter  # the repository root is on sys.path
from examples.custom_scheduler import ShortestPromptFirst
from servesim.schedulers import POLICIES
from tests.factories import drain, make_scheduler, req, step


def test_starts_the_shortest_prompts_first():
    s = make_scheduler(ShortestPromptFirst, budget=20)
    reqs = [req(0, 15, 3), req(1, 5, 3), req(2, 9, 3)]
    for r in reqs:
        s.add_request(r, 0.0)
    assert step(s, 0.0).tokens == {reqs[1]: 5, reqs[2]: 9}  # 15 more would exceed the budget
    assert step(s, 0.01).tokens == {reqs[0]: 15}
    drain(s, 0.02)
    assert all(r.num_generated_tokens == 3 for r in reqs)


def test_buckets_fall_back_to_arrival_order():
    s = make_scheduler(ShortestPromptFirst, params={"bucket_tokens": 16}, budget=10)
    a, b = req(0, 9, 2), req(1, 3, 2)  # both in bucket 0: arrival order
    s.add_request(a, 0.0)
    s.add_request(b, 0.0)
    assert list(step(s, 0.0).tokens) == [a]


def test_the_plugin_chunks_and_caches_like_any_policy():
    s = make_scheduler(ShortestPromptFirst, batching="chunked", chunk=8)
    long, short = req(0, 30, 2), req(1, 12, 2)
    s.add_request(long, 0.0)
    s.add_request(short, 0.0)
    assert step(s, 0.0).tokens == {short: 8}


def test_registry_loads_the_plugin_by_path(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert POLICIES.get("examples.custom_scheduler:ShortestPromptFirst") is ShortestPromptFirst


class View:
    def __init__(self, index, queued, cached):
        self.index, self._queued, self._cached = index, queued, cached

    def load(self):
        from servesim.schedulers import SchedulerLoad

        return SchedulerLoad(0, 0, self._queued, 0)

    def prefix_match_tokens(self, request):
        return self._cached


def test_cache_aware_router_weighs_queue_against_cached_prefix():
    r = req(0, 1000, 5)
    router = CacheAwareRouter()
    # 500 queued but 800 cached (700 to do) beats 0 queued and nothing cached (1000 to do)
    assert router.route(r, [View(0, 0, 0), View(1, 500, 800)], 0.0) == 1
    assert router.route(r, [View(0, 0, 0), View(1, 500, 400)], 0.0) == 0
    assert router.route(r, [View(0, 100, 0), View(1, 100, 0)], 0.0) == 0  # ties: lowest index
