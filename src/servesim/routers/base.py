"""The router protocol: pick the instance that serves an arriving request."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from pydantic import BaseModel, ConfigDict

from servesim.core.request import Request
from servesim.registry import Registry
from servesim.schedulers.base import SchedulerLoad


@runtime_checkable
class InstanceView(Protocol):
    """What a router may see of an instance."""

    index: int

    def load(self) -> SchedulerLoad: ...


@runtime_checkable
class Router(Protocol):
    """`route(request, instances, now)` returns the index (into `instances`) of the chosen one.
    Must be deterministic given its RNG stream; ties go to the lowest index."""

    def route(self, request: Request, instances: Sequence[InstanceView], now: float) -> int: ...


ROUTERS: Registry = Registry("router", "cluster.router", required=("route",))


class RouterParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseRouter:
    Params = RouterParams

    def __init__(self, params: RouterParams | None = None, rng=None):
        self.params = params if params is not None else self.Params()
        self.rng = rng
