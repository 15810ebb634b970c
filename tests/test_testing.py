"""`servesim.testing`: the plugin checks pass on every built-in and on the examples, and catch a
policy that lies about how its ranking changes."""

import pytest

from examples.cache_aware_router import CacheAwareRouter
from examples.custom_scheduler import ShortestPromptFirst
from servesim.schedulers import BasePolicy
from servesim.schedulers.policy import UNBOUNDED
from servesim.testing import PluginCheckError, check_policy, check_router


@pytest.mark.parametrize("policy", ["fcfs", "srtf", "edf", "priority", ShortestPromptFirst])
def test_built_in_policies_and_the_example_pass(policy):
    report = check_policy(policy)
    assert len(report.scenarios) == 7
    assert report.preemptions["tight-kv-swap"] > 0  # the scenarios do contend for memory
    assert report.prefix_hit_rate["prefix-caching"] > 0  # every policy gets prefix caching


@pytest.mark.parametrize("router", ["least_loaded", "prefix_affinity", CacheAwareRouter])
def test_routers_pass(router):
    assert len(check_router(router).scenarios) == 5


class LeastProgressFirst(BasePolicy):
    """Fewest tokens generated first: decoding requests fall behind the ones they pause."""

    preemptive = True
    rank_changes = "with_progress"

    def rank_key(self, request, now):
        return (request.num_generated_tokens, request.arrival_time, request.request_id)


class LeastProgressFirstLiar(LeastProgressFirst):
    def repeat_limits(self, holders, queue, now):
        return UNBOUNDED  # a lie: the ranking changes with every decode step


def test_a_policy_that_lies_about_its_ranking_is_caught():
    with pytest.raises(PluginCheckError, match="multi-step decode runs differ"):
        check_policy(LeastProgressFirstLiar)
    assert len(check_policy(LeastProgressFirst).scenarios) == 7  # the default bound is safe


def test_classes_must_be_nameable():
    class Local(BasePolicy):
        def rank_key(self, request, now):
            return (request.request_id,)

    with pytest.raises(TypeError, match="module level"):
        check_policy(Local)
