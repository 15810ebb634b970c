"""An elastic fleet: instances that start (with a cold start), serve, drain, stop and fail during
a run, and the cluster-level queue that holds arrivals while no instance serves.

Instances live in slots (their index in outputs). A slot gets a fresh instance (new scheduler and
KV cache) whenever it starts. The router only sees the serving instances. Every state change is
logged (`metrics.lifecycle`). A request is accounted exactly once at the end: completed, rejected,
failed (with a reason), or still in flight (unfinished); the fleet counts the terminal ones and
ends the run when all are.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Callable

import simpy

from servesim.core.request import Request, RequestStatus
from servesim.engine.instance import Instance
from servesim.metrics.lifecycle import LifecycleLog

STARTING, SERVING, DRAINING, OFF, FAILED = "starting", "serving", "draining", "off", "failed"


class KVView:
    """Read-only KV counters of an instance, for elastic policies."""

    __slots__ = ("_kv",)

    def __init__(self, kv):
        self._kv = kv

    @property
    def num_blocks(self) -> int:
        return self._kv.num_blocks

    @property
    def num_free_blocks(self) -> int:
        return self._kv.num_free_blocks

    @property
    def block_size(self) -> int:
        return self._kv.block_size

    @property
    def usage(self) -> float:
        return self._kv.usage


class FleetView:
    """What the router and the elastic policies see of a fleet instance: the router's
    `InstanceView` (`index`, `load()`, `prefix_match_tokens()`, and for tier-aware routers
    `prefix_hits()`, `reload_time_s()`, `prefill_s_per_token`), `kv` (read-only counters) and
    `decoding()` (the requests that could migrate)."""

    __slots__ = ("instance", "kv")

    def __init__(self, instance: Instance):
        self.instance = instance
        self.kv = KVView(instance.kv)

    @property
    def index(self) -> int:
        return self.instance.index

    def load(self):
        return self.instance.load()

    def prefix_match_tokens(self, request: Request) -> int:
        return self.instance.view.prefix_match_tokens(request)

    def prefix_hits(self, request: Request) -> dict[str, int]:
        return self.instance.view.prefix_hits(request)

    def reload_time_s(self, hits: dict[str, int]) -> float:
        return self.instance.view.reload_time_s(hits)

    @property
    def prefill_s_per_token(self) -> float:
        return self.instance.view.prefill_s_per_token

    def decoding(self) -> list[Request]:
        return self.instance.decoding()


class Fleet:
    def __init__(
        self,
        env: simpy.Environment,
        spawn: Callable[[int], Instance],
        router,
        log: LifecycleLog,
        total_requests: int,
        cold_start_s: float = 0.0,
        on_failure: str = "retry",
        max_retries: int = 3,
    ):
        self.env = env
        self.spawn = spawn
        """spawn(slot) -> a fresh Instance wired to this fleet."""
        self.router = router
        self.log = log
        self.cold_start_s = cold_start_s
        self.on_failure = on_failure
        self.max_retries = max_retries
        self.instances: list[Instance] = []
        self.state: list[str] = []
        self.serving: list[Instance] = []
        self.views: list[FleetView] = []
        """The serving instances as policies and the router see them (same order)."""
        self.pending: deque[Request] = deque()
        self.num_repairs = 0
        """Failed instances that will start again."""
        self.max_up = math.inf
        """Autoscaling's max_instances: a repaired instance beyond it stays off."""
        self.total = total_requests
        self.num_terminal = 0
        self.done = env.event()
        if total_requests == 0:
            self.done.succeed()
        self.arrival_times: deque[float] = deque()
        self.num_arrivals = 0
        self._serving_again: simpy.Event | None = None
        """Fires when an instance next starts serving (`until_serving`)."""

    # -- requests -------------------------------------------------------------------------------
    def arrive(self, request: Request) -> None:
        self.num_arrivals += 1
        self.arrival_times.append(self.env.now)
        self.dispatch(request)

    def dispatch(self, request: Request) -> None:
        """Route to a serving instance, hold until one serves, or fail if none ever will."""
        if self.serving:
            self.serving[self.router.route(request, self.views, self.env.now)].submit(request)
        elif self.num_repairs or STARTING in self.state:
            self.pending.append(request)
        else:
            self.fail_request(request, "no_instance")

    def retry(self, request: Request) -> None:
        """A request whose instance failed (its KV lost): send it elsewhere or fail it."""
        if self.on_failure == "fail":
            self.fail_request(request, "instance_failed")
        elif request.num_retries > self.max_retries:
            self.fail_request(request, "retries_exhausted")
        else:
            self.dispatch(request)

    def fail_request(self, request: Request, reason: str) -> None:
        request.status = RequestStatus.FAILED
        request.rejected_reason = reason
        self.terminal(request)

    def terminal(self, request: Request) -> None:
        """A request finished, was rejected or failed: count it; drained instances stop."""
        self.num_terminal += 1
        if self.num_terminal >= self.total and not self.done.triggered:
            self.done.succeed()
        slot = request.instance
        if 0 <= slot < len(self.state) and self.state[slot] == DRAINING:
            self.stop_if_drained(slot)

    # -- instances ------------------------------------------------------------------------------
    def count(self, *states: str) -> int:
        return sum(s in states for s in self.state)

    def launch(self, cold: bool = True, slot: int | None = None) -> int:
        """Start an instance in `slot` (default: the lowest stopped one, else a new slot)."""
        if slot is None:
            slot = self.state.index(OFF) if OFF in self.state else len(self.state)
        instance = self.spawn(slot)
        if slot == len(self.state):
            self.instances.append(instance)
            self.state.append(OFF)
        self.instances[slot] = instance
        if not cold or self.cold_start_s <= 0:
            self._set(slot, STARTING, cold=cold)
            self._serve(slot)
            return slot
        self._set(slot, STARTING, cold=True)
        ready = self.env.timeout(self.cold_start_s)
        ready.callbacks.append(lambda _: self._serve(slot, instance))
        return slot

    def _serve(self, slot: int, instance: Instance | None = None) -> None:
        if instance is not None and self.instances[slot] is not instance:
            return  # it failed while starting
        if self.state[slot] != STARTING:
            return
        self._set(slot, SERVING)
        while self.pending and self.serving:
            self.dispatch(self.pending.popleft())

    def drain(self, slot: int) -> None:
        """Stop taking arrivals; stop once its requests are done (none is lost)."""
        self._set(slot, DRAINING)
        self.stop_if_drained(slot)

    def undrain(self, slot: int) -> None:
        self._set(slot, SERVING)

    def stop_if_drained(self, slot: int) -> None:
        instance = self.instances[slot]
        load = instance.scheduler.load()
        if load.num_waiting or load.num_running or instance.num_incoming or instance.leaving:
            return
        self._set(slot, OFF)

    def fail(self, slot: int, repair_s: float | None) -> bool:
        """The instance in `slot` dies: its requests are retried or failed; it cold-starts again
        after `repair_s` (never, if None). False if it was not up."""
        if self.state[slot] not in (STARTING, SERVING, DRAINING):
            return False
        instance = self.instances[slot]
        instance.failed = True
        held = instance.fail()
        self._set(slot, FAILED)
        if repair_s is not None and math.isfinite(repair_s):
            self.num_repairs += 1  # before the retries: they may wait for it
            self.env.timeout(repair_s).callbacks.append(lambda _: self._repaired(slot))
        for request in sorted(held, key=lambda r: r.request_id):
            self.retry(request)
        if not self.serving and not self.num_repairs and STARTING not in self.state:
            while self.pending:
                self.fail_request(self.pending.popleft(), "no_instance")
        return True

    def _repaired(self, slot: int) -> None:
        self.num_repairs -= 1
        if self.state[slot] != FAILED or self.done.triggered:
            return
        if self.count(STARTING, SERVING, DRAINING) >= self.max_up:
            self._set(slot, OFF)  # the autoscaler replaced it meanwhile
        else:
            self.launch(cold=True, slot=slot)

    def _set(self, slot: int, state: str, cold: bool = False) -> None:
        self.state[slot] = state
        self.log.state(self.env.now, slot, state, cold=cold)
        self.serving = [i for i, s in zip(self.instances, self.state) if s == SERVING]
        self.views = [FleetView(i) for i in self.serving]
        if state == SERVING and self._serving_again is not None:
            self._serving_again, event = None, self._serving_again
            event.succeed()

    def until_serving(self) -> simpy.Event:
        """An event that fires when an instance next starts serving."""
        if self._serving_again is None:
            self._serving_again = self.env.event()
        return self._serving_again

    # -- what policies see ----------------------------------------------------------------------
    def arrival_rate(self, window_s: float) -> tuple[float, float]:
        """Arrivals per second over the last window and over the one before it."""
        now, times = self.env.now, self.arrival_times
        while times and times[0] < now - 2 * window_s:
            times.popleft()
        recent = sum(t >= now - window_s for t in times)
        span = min(window_s, now) or 1.0
        older_span = min(window_s, max(0.0, now - window_s)) or 1.0
        return recent / span, (len(times) - recent) / older_span
