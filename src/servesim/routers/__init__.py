"""Routing policies; importing this registers the built-ins."""

from servesim.routers import round_robin  # noqa: F401  (registers)
from servesim.routers.base import ROUTERS, BaseRouter, InstanceView, Router, RouterParams

__all__ = ["ROUTERS", "BaseRouter", "InstanceView", "Router", "RouterParams"]
