"""Cost models with the same constants share their linear-layer caches (a fleet's instances),
and prices stay those of a model with a cache of its own."""

from __future__ import annotations

from servesim.catalog import get_hardware, get_model
from servesim.cost import shared_cache as module
from servesim.cost.base import StepShape
from servesim.cost.layout import Layout
from servesim.cost.roofline import RooflineCostModel
from servesim.cost.shared_cache import shared_cache
from servesim.cost.work import WorkModel

SHAPES = [StepShape([(512 - n, 1000 + 7 * n)], n, 900 * n, n + 1, 1200) for n in range(0, 40, 3)]


def test_models_with_equal_constants_share_a_cache_and_price_the_same():
    h100 = get_hardware("h100-sxm")
    a, b = (RooflineCostModel(get_model("llama2-7b"), h100) for _ in range(2))
    other = RooflineCostModel(get_model("llama2-7b"), h100, tp=2)
    assert a._linear_cache is b._linear_cache and a._linear_cache is not other._linear_cache
    times = [a.step_time(shape) for shape in SHAPES]
    assert [b.step_time(shape) for shape in SHAPES] == times  # read from a's entries
    module._CACHES.clear()  # a model with a cache of its own
    alone = RooflineCostModel(get_model("llama2-7b"), h100)
    assert alone._linear_cache is not a._linear_cache
    assert [alone.step_time(shape) for shape in SHAPES] == times


def test_work_models_share_by_their_layers():
    model = get_model("llama2-7b")
    profile = RooflineCostModel(model, get_hardware("h100-sxm")).profile
    a, b = WorkModel(Layout(model, 1), profile), WorkModel(Layout(model, 1), profile)
    assert a._linear_cache is b._linear_cache
    assert WorkModel(Layout(model, 2), profile)._linear_cache is not a._linear_cache


def test_only_the_most_recently_built_constants_keep_a_cache():
    module._CACHES.clear()
    first = shared_cache(("k", 0))
    for i in range(1, module.KEEP):
        shared_cache(("k", i))
    assert shared_cache(("k", 0)) is first  # built again: now the most recent
    shared_cache(("k", "new"))  # evicts ("k", 1), the least recently built
    assert len(module._CACHES) == module.KEEP and ("k", 1) not in module._CACHES
    assert shared_cache(("k", 0)) is first
