"""Cost models: the price of an engine step in seconds."""

from servesim.cost.base import CostModel, StepCost, StepShape
from servesim.cost.roofline import RooflineCostModel

__all__ = ["CostModel", "StepCost", "StepShape", "RooflineCostModel"]
