"""Routers: each policy's choice on hand-made loads, routing distributions, plugins, bad names."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from servesim.build import make_router
from servesim.config import load_config
from servesim.core.errors import ConfigError
from servesim.core.rng import stream
from servesim.routers import ROUTERS
from servesim.schedulers import SchedulerLoad
from servesim.simulation import simulate
from tests.factories import make_request, small_config


@dataclass
class FakeInstance:
    index: int
    waiting: int = 0
    running: int = 0
    queued_tokens: int = 0
    running_tokens: int = 0

    def load(self):
        return SchedulerLoad(self.waiting, self.running, self.queued_tokens, self.running_tokens)


def router(name, seed=0, **params):
    cls = ROUTERS.get(name)
    return cls(cls.Params(**params), stream(seed, "router"))


def fleet(n, **loads):
    return [FakeInstance(i, **{k: v[i] for k, v in loads.items()}) for i in range(n)]


def test_built_in_names():
    assert {"round_robin", "random", "least_loaded", "least_tokens", "power_of_two",
            "prefix_affinity"} <= set(ROUTERS.names())


def test_round_robin_cycles():
    r, inst = router("round_robin"), fleet(3)
    assert [r.route(make_request(i, 10, 1), inst, 0.0) for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_random_is_uniform_and_seeded():
    inst = fleet(4)
    r = router("random", seed=3)
    picks = [r.route(None, inst, 0.0) for _ in range(4000)]
    counts = Counter(picks)
    assert set(counts) == {0, 1, 2, 3} and all(900 < c < 1100 for c in counts.values())
    r2 = router("random", seed=3)
    assert picks == [r2.route(None, inst, 0.0) for _ in range(4000)]


def test_least_loaded_counts_requests_and_breaks_ties_by_index():
    r = router("least_loaded")
    assert r.route(None, fleet(3, waiting=[2, 0, 1], running=[0, 3, 0]), 0.0) == 2
    assert r.route(None, fleet(3, waiting=[1, 1, 1]), 0.0) == 0


def test_least_tokens_weighs_work_not_request_count():
    # Instance 0 has one long prompt queued; instance 1 three short running requests.
    inst = fleet(2, waiting=[1, 0], running=[0, 3], queued_tokens=[8000, 0], running_tokens=[0, 900])
    assert router("least_loaded").route(None, inst, 0.0) == 0
    assert router("least_tokens").route(None, inst, 0.0) == 1


def test_power_of_two_never_picks_the_busiest_and_spreads_the_rest():
    r = router("power_of_two", seed=1)
    inst = fleet(4, running=[0, 0, 50, 0])
    counts = Counter(r.route(None, inst, 0.0) for _ in range(3000))
    assert counts[2] == 0
    assert all(counts[i] > 700 for i in (0, 1, 3))
    # Two equally loaded candidates: the first sampled wins, so still uniform over the idle.
    tokens = router("power_of_two", seed=1, load="tokens")
    inst = fleet(3, running_tokens=[10, 5000, 10])
    assert Counter(tokens.route(None, inst, 0.0) for _ in range(300))[1] == 0


def prefixed(i, hashes, session=-1):
    return make_request(i, 512 * len(hashes), 4, prefix_hashes=tuple(hashes), session_id=session)


def test_prefix_affinity_keeps_a_prefix_on_one_instance():
    r, inst = router("prefix_affinity"), fleet(8)
    first = r.route(prefixed(0, [0, 5, 6]), inst, 0.0)
    # Later turns extend the prefix: the first two hash blocks are the key.
    assert r.route(prefixed(1, [0, 5, 6, 7, 8]), inst, 0.0) == first
    assert r.route(prefixed(2, [0, 5]), inst, 0.0) == first


def test_prefix_affinity_spreads_distinct_prefixes():
    r, inst = router("prefix_affinity"), fleet(8)
    counts = Counter(r.route(prefixed(i, [0, 1000 + i]), inst, 0.0) for i in range(4000))
    assert set(counts) == set(range(8))
    assert max(counts.values()) < 1.6 * 4000 / 8  # consistent hashing with virtual nodes


def test_prefix_affinity_deflects_from_an_overloaded_instance():
    r = router("prefix_affinity", overload_factor=1.5, overload_margin=2, load="requests")
    req = prefixed(0, [0, 42])
    idle = fleet(4)
    first, second = r.candidates(r.affinity_key(req), 4)
    assert first != second and r.route(req, idle, 0.0) == first
    running = [0, 0, 0, 0]
    running[first] = 20  # mean 5: threshold 1.5 * 5 + 2 = 9.5
    assert r.route(req, fleet(4, running=running), 0.0) == second
    assert r.num_deflected == 1
    running[second] = 25  # the second is even busier: stay
    assert r.route(req, fleet(4, running=running), 0.0) == first


def test_prefix_affinity_moves_few_keys_when_an_instance_is_added():
    r = router("prefix_affinity")
    keys = [r.affinity_key(prefixed(i, [0, 7000 + i])) for i in range(2000)]
    before = [r.candidates(k, 8)[0] for k in keys]
    after = [r.candidates(k, 9)[0] for k in keys]
    moved = sum(a != b for a, b in zip(before, after))
    assert moved < 2000 * 0.2 and all(b == 8 for a, b in zip(before, after) if a != b)


def test_prefix_affinity_falls_back_to_session_then_two_choices():
    r, inst = router("prefix_affinity"), fleet(4)
    a = make_request(0, 100, 2, session_id=77)
    assert len({r.route(a, inst, 0.0) for _ in range(10)}) == 1
    anon = make_request(1, 100, 2)
    busy = fleet(4, queued_tokens=[0, 900, 900, 900])
    picks = Counter(r.route(anon, busy, 0.0) for _ in range(200))
    assert picks[0] > 80 and len(picks) == 4  # two random choices: the idle one wins when drawn


class LastInstanceRouter:
    """A plugin: always the last instance."""

    def __init__(self, params=None, rng=None):
        pass

    def route(self, request, instances, now):
        return len(instances) - 1


def test_plugin_router_by_import_path():
    result = simulate(small_config(**{"cluster.instances": 3,
                                      "cluster.router": "tests.routers.test_routers:LastInstanceRouter"}))
    assert set(result.requests["instance"]) == {2}


@pytest.mark.parametrize("name", ["round_robin", "random", "least_loaded", "least_tokens",
                                  "power_of_two", "prefix_affinity"])
def test_every_router_serves_a_cluster_end_to_end(name):
    result = simulate(small_config(**{"cluster.instances": 4, "cluster.router": name}))
    req = result.summary["requests"]
    assert req["completed"] == req["arrived"] == 60
    counts = result.requests["instance"].value_counts()
    if name == "round_robin":
        assert counts.tolist() == [15, 15, 15, 15]
    if name != "prefix_affinity":  # synthetic requests have no prefix: two random choices
        assert len(counts) == 4


def test_router_params_are_validated_with_the_key():
    cfg = load_config(small_config(**{"cluster.router": "power_of_two",
                                      "cluster.router_params": {"load": "bytes"}}))
    with pytest.raises(ConfigError, match=r"^cluster\.router_params\.load"):
        make_router(cfg)
    cfg = load_config(small_config(**{"cluster.router_params": {"x": 1}}))
    with pytest.raises(ConfigError, match=r"^cluster\.router_params\.x: unknown key"):
        make_router(cfg)


def test_unknown_router_names_the_key():
    with pytest.raises(ConfigError, match=r"^cluster\.router: unknown router 'nope'"):
        simulate(small_config(**{"cluster.router": "nope"}))
