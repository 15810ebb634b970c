"""A run's requests made as they arrive and written to a `RequestLog` as they end.

Memory then follows the requests in flight, not the run's length (issue 17: a million requests in
bounded memory). The stream is what the arrival process iterates (in request-id order, which is
arrival order) and it also plays `engine.completion.Completion`'s part: `done` fires once every
request has arrived and ended. Agentic programs and elastic fleets keep the requests as objects
(`simulation.run` builds them up front for those).
"""

from __future__ import annotations

import numpy as np

from servesim.core.request import Request, RequestStatus
from servesim.metrics.columns import Columns
from servesim.metrics.request_log import RequestLog
from servesim.workload.factory import RequestFactory


class RequestStream:
    """Rows of `factory`'s table as requests, skipping `refused` ones (a length filter rejected
    them before the run: they never arrive, yet stay in requests.csv with `reason`)."""

    def __init__(self, factory: RequestFactory, refused: np.ndarray | None = None, reason: str = ""):
        self.factory = factory
        self.log = RequestLog(len(factory))
        self.refused = refused
        self.reason = reason
        self.live: dict[int, Request] = {}
        self.done = None
        self._issued_all = False

    def start(self, env) -> RequestStream:
        """Make `done` an event of `env` (a run's completion; see the module doc)."""
        self.done = env.event()
        return self

    def __iter__(self):
        refused, make, live = self.refused, self.factory.make, self.live
        for i in range(len(self.factory)):
            if refused is not None and refused[i]:
                continue
            request = make(i)
            live[i] = request
            yield request
        self._issued_all = True
        self.check()

    def check(self, request: Request | None = None) -> None:
        """Called when `request` may have ended: write it to the log and let it go."""
        if request is not None and request.status >= RequestStatus.FINISHED:
            if self.live.pop(request.request_id, None) is not None:
                self.log.write(request)
        if self._issued_all and not self.live and not self.done.triggered:
            self.done.succeed()

    def columns(self, horizon: float) -> Columns:
        """requests.csv's columns of every request that arrived by `horizon`: those still in
        flight and those refused before the run are written now."""
        for request in self.live.values():
            self.log.write(request)
        self.live.clear()
        arrival = self.factory.table.arrival_s
        if self.refused is not None:
            for i in np.flatnonzero(self.refused & (arrival <= horizon)).tolist():
                request = self.factory.make(i)
                request.status, request.rejected_reason = RequestStatus.REJECTED, self.reason
                self.log.write(request)
        arrived = np.flatnonzero(arrival <= horizon)
        rows = slice(0, len(arrival)) if len(arrived) == len(arrival) else arrived
        return self.log.columns(rows, self.factory)
