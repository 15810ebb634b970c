"""Issuing agentic calls: a call whose parents are all done arrives after its tool time.

Calls without parents arrive at their table time, like any request. A call with parents is held
(`arrival_time` = inf: not arrived) until the last parent finishes; it then arrives `tool_s` later
and is routed then. If a parent is rejected, its descendants can never run: they are rejected too
(reason `program_call_rejected`), at that moment, so every call is still accounted for.
"""

from __future__ import annotations

import math

from servesim.core.request import Request, RequestStatus


class ProgramDriver:
    def __init__(self, env, requests, route_and_submit):
        self.env = env
        self.route_and_submit = route_and_submit
        self.by_id = {r.request_id: r for r in requests}
        self.waiting_on: dict[int, int] = {}
        self.children: dict[int, list[Request]] = {}
        for r in requests:
            if r.program_parents:
                self.waiting_on[r.request_id] = len(r.program_parents)
                r.arrival_time = math.inf
                for parent in r.program_parents:
                    self.children.setdefault(parent, []).append(r)

    def held(self, request: Request) -> bool:
        return request.request_id in self.waiting_on

    def on_finish(self, request: Request) -> None:
        for child in self.children.get(request.request_id, ()):
            left = self.waiting_on[child.request_id] - 1
            self.waiting_on[child.request_id] = left
            if left == 0:
                self.env.process(self._issue(child))

    def on_reject(self, request: Request) -> None:
        for child in self.children.get(request.request_id, ()):
            if child.status != RequestStatus.REJECTED:
                child.arrival_time = self.env.now
                child.status = RequestStatus.REJECTED
                child.rejected_reason = "program_call_rejected"
                self.on_reject(child)

    def _issue(self, request: Request):
        yield self.env.timeout(request.program_wait_s)
        if request.status == RequestStatus.REJECTED:
            return
        request.arrival_time = self.env.now
        self.route_and_submit(request)
