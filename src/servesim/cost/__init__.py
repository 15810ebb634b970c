"""Cost models: the price of an engine step in seconds.

A cost model class registers under a name (`cost.model` in the config) and is built by
`build.make_cost_model` as `cls(model, hardware, tp=, pp=, expert_parallel=, profile=,
host_overhead_s=, prefill_host_overhead_s=)`.
"""

from servesim.cost.base import CostModel, StepCost, StepShape
from servesim.cost.profile import CostProfile, family_profile, load_profile
from servesim.cost.roofline import RooflineCostModel
from servesim.registry import Registry

COST_MODELS: Registry = Registry(
    "cost model", "cost.model", required=("step_time", "decode_step_times", "breakdown")
)
COST_MODELS.register("roofline")(RooflineCostModel)

__all__ = [
    "COST_MODELS",
    "CostModel",
    "CostProfile",
    "StepCost",
    "StepShape",
    "RooflineCostModel",
    "family_profile",
    "load_profile",
]
