"""Routing policies; importing this registers the built-ins."""

from servesim.routers import (  # noqa: F401  (registers)
    conductor,
    least_loaded,
    power_of_two,
    prefix_affinity,
    random,
    round_robin,
)
from servesim.routers.base import ROUTERS, BaseRouter, InstanceView, Router, RouterParams

__all__ = ["ROUTERS", "BaseRouter", "InstanceView", "Router", "RouterParams"]
