"""Routing policies; importing this registers the default, the others register when a config
first names one (`ROUTERS.lazy`)."""

from servesim.routers import round_robin  # noqa: F401  (registers the default)
from servesim.routers.base import ROUTERS, BaseRouter, InstanceView, Router, RouterParams

ROUTERS.lazy("servesim.routers.conductor", "conductor", "dualmap")
ROUTERS.lazy("servesim.routers.least_loaded", "least_loaded", "least_tokens")
ROUTERS.lazy("servesim.routers.power_of_two", "power_of_two")
ROUTERS.lazy("servesim.routers.prefix_affinity", "prefix_affinity")
ROUTERS.lazy("servesim.routers.random", "random")

__all__ = ["ROUTERS", "BaseRouter", "InstanceView", "Router", "RouterParams"]
