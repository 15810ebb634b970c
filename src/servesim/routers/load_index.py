"""The least-loaded instance in O(log n) per change instead of a scan per arrival.

Instances report after anything that may change their load (a submit, a plan, a step, a transfer
announced or arrived) to callbacks registered with `InstanceView.watch_load` (an optional part of
the view: without it the router scans); the index re-measures that one instance and pushes its
new load onto a heap of `(load, position)`. Entries whose load is no longer current are dropped
when they reach the top, so the top is always the least load, ties to the lowest position: the
same answer as `routers.base.least_loaded`'s scan (tests/test_router_index.py checks it).
"""

from __future__ import annotations

import heapq
from typing import Callable, Sequence

from servesim.routers.base import InstanceView, least_loaded
from servesim.schedulers.core import SchedulerLoad


class LoadIndex:
    def __init__(self, instances: Sequence[InstanceView], measure: Callable[[SchedulerLoad], int]):
        self.instances = instances
        self.measure = measure
        self._position = {id(instance): pos for pos, instance in enumerate(instances)}
        self._loads = [measure(instance.load()) for instance in instances]
        self._heap = [(load, pos) for pos, load in enumerate(self._loads)]
        heapq.heapify(self._heap)
        for instance in instances:
            instance.watch_load(self.changed)

    def changed(self, instance: InstanceView) -> None:
        pos = self._position[id(instance)]
        load = self.measure(instance.load())
        if load != self._loads[pos]:
            self._loads[pos] = load
            heapq.heappush(self._heap, (load, pos))
            if len(self._heap) > 4 * len(self._loads) + 64:  # keep stale entries bounded
                self._heap = [(v, p) for p, v in enumerate(self._loads)]
                heapq.heapify(self._heap)

    def least(self) -> int:
        heap, loads = self._heap, self._loads
        while loads[heap[0][1]] != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][1]


def indexed_least_loaded(router, instances: Sequence[InstanceView], measure) -> int:
    """`least_loaded(instances, measure)`, from an index the router keeps for this instance list;
    a plain scan for instances that cannot report load changes."""
    index = getattr(router, "_load_index", None)
    if index is None or index.instances is not instances or index.measure is not measure:
        if not all(hasattr(instance, "watch_load") for instance in instances):
            return least_loaded(instances, measure)
        index = router._load_index = LoadIndex(instances, measure)
    return index.least()
