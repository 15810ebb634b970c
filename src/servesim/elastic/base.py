"""Protocols of the elastic-fleet policies: autoscalers and rebalancers (plugins, as routers).

Policies never import SimPy: the engine's fleet controller calls them with a snapshot
(`FleetState`) or with the serving instances, seen through the same `load()` routers read plus
read-only KV counters and the decoding requests (`MigrationView`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from pydantic import BaseModel, ConfigDict

from servesim.core.request import Request
from servesim.registry import Registry
from servesim.routers.base import InstanceView


@dataclass(frozen=True)
class FleetState:
    """What an autoscaler sees at a decision."""

    now: float
    serving: Sequence[InstanceView]
    """Instances taking arrivals."""
    starting: int
    """Instances in a cold start (they will serve)."""
    draining: int
    """Instances finishing their requests before they stop."""
    pending: int
    """Requests held by the cluster while no instance serves."""
    arrivals: int
    """Requests arrived so far."""
    arrival_rate: float
    """Arrivals per second over the policy's last `window_s` (see `rate_window_s`)."""
    previous_arrival_rate: float
    """Arrivals per second over the window before that (a trend)."""
    utilization: float
    """Busy share of the serving instances since the previous decision (0..1)."""
    kv_usage: float
    """Mean KV-cache usage of the serving instances (0..1)."""


@runtime_checkable
class Autoscaler(Protocol):
    """`desired(state)`: how many instances should be up (serving or starting); the controller
    clamps it to [min_instances, max_instances] and applies the cooldown."""

    def desired(self, state: FleetState) -> int: ...


@runtime_checkable
class MigrationView(InstanceView, Protocol):
    """What a rebalancer sees of an instance: `load()`, `kv` (read `num_blocks`,
    `num_free_blocks`, `block_size`; never mutate) and `decoding()`, the requests now decoding
    (the ones that can move)."""

    kv: object

    def decoding(self) -> list[Request]: ...


@dataclass(frozen=True)
class Move:
    """Migrate `request` (decoding on `instances[source]`) to `instances[dest]`."""

    source: int
    dest: int
    request: Request


@runtime_checkable
class Rebalancer(Protocol):
    """`plan(instances, now)`: the migrations to start now (positions into `instances`)."""

    def plan(self, instances: Sequence[MigrationView], now: float) -> list[Move]: ...


AUTOSCALERS: Registry = Registry(
    "autoscaler", "cluster.autoscaling.policy", required=("desired",)
)
REBALANCERS: Registry = Registry("rebalancer", "cluster.migration.policy", required=("plan",))


class PolicyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BasePolicy:
    Params = PolicyParams
    rate_window_s = 60.0
    """Seconds of arrivals the controller averages `arrival_rate` over."""

    def __init__(self, params: PolicyParams | None = None):
        self.params = params if params is not None else self.Params()
