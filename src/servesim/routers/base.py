"""The router protocol: pick the instance that serves an arriving request.

Routers see instances only through a read-only `InstanceView`: `load()` (O(1) counters kept by the
scheduler) and `prefix_match_tokens(request)` (what the instance's prefix cache holds of the
prompt), so a routing decision costs O(instances) at most. Load measures shared by the load-aware policies:
`requests` (outstanding requests: waiting plus running), `tokens` (the work: prompt tokens
waiting to be computed plus the prompt context of running requests) and `queued_tokens` (the
prefill backlog alone, what a new request's TTFT waits behind).
"""

from __future__ import annotations

from typing import Callable, Literal, Protocol, Sequence, runtime_checkable

from pydantic import BaseModel, ConfigDict

from servesim.core.request import Request
from servesim.registry import Registry
from servesim.schedulers.core import SchedulerLoad


@runtime_checkable
class InstanceView(Protocol):
    """What a router may see of an instance (read-only).

    - `index`: the instance's number in the cluster.
    - `load()`: `SchedulerLoad(num_waiting, num_running, num_queued_tokens, num_running_tokens)`;
      `num_queued_tokens` is the prefill backlog (tokens the waiting requests must compute before
      their next token), `num_running_tokens` the prompt context of the running requests.
    - `prefix_match_tokens(request)`: leading prompt tokens of `request` that this instance's
      prefix cache holds now (whole cached segments; 0 without prefix caching or hashes).

    The engine's view also offers what tier-aware routers (`conductor`, `dualmap`) read:
    `prefix_hits(request)`, `reload_time_s(hits)`, `prefill_s_per_token` (docs/kv.md).
    """

    index: int

    def load(self) -> SchedulerLoad: ...

    def prefix_match_tokens(self, request: Request) -> int: ...


class LoadReportingView(InstanceView, Protocol):
    """A view that also reports load changes (the engine's does; `routers.load_index` needs it):
    `watch_load(callback)` calls `callback(view)` after anything that may change `load()`."""

    def watch_load(self, callback: Callable[[InstanceView], object]) -> None: ...


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


LoadMeasure = Literal["requests", "tokens", "queued_tokens"]


def outstanding_requests(load: SchedulerLoad) -> int:
    return load.num_waiting + load.num_running


def outstanding_tokens(load: SchedulerLoad) -> int:
    return load.num_queued_tokens + load.num_running_tokens


def queued_tokens(load: SchedulerLoad) -> int:
    return load.num_queued_tokens


LOAD_MEASURES = {
    "requests": outstanding_requests,
    "tokens": outstanding_tokens,
    "queued_tokens": queued_tokens,
}


def least_loaded(instances: Sequence[InstanceView], measure=outstanding_requests) -> int:
    """Index of the instance with the least load; ties go to the lowest index."""
    best, best_load = 0, None
    for i, instance in enumerate(instances):
        load = measure(instance.load())
        if best_load is None or load < best_load:
            best, best_load = i, load
    return best
