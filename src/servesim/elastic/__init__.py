"""Elastic-fleet policies; importing this registers the built-ins."""

from servesim.elastic import autoscalers, rebalancers  # noqa: F401  (registers)
from servesim.elastic.base import (
    AUTOSCALERS,
    REBALANCERS,
    Autoscaler,
    BasePolicy,
    FleetState,
    MigrationView,
    Move,
    PolicyParams,
    Rebalancer,
)

__all__ = [
    "AUTOSCALERS", "REBALANCERS", "Autoscaler", "BasePolicy", "FleetState", "MigrationView",
    "Move", "PolicyParams", "Rebalancer",
]
