"""The end of a run: the moment every request is finished, rejected or failed.

Periodic processes (the power budget's sampling, fault windows, KV retention timers) would keep a
SimPy run going after the work is done, stretching the simulated span that throughput and goodput
divide by; with `max_sim_time_s` set the clock even ran on to that limit. The run stops here instead.
"""

from __future__ import annotations

from typing import Sequence

from servesim.core.request import Request, RequestStatus


class Completion:
    """`done` fires once no request is waiting, running or swapped. `check` is called whenever a
    request may have ended; it resumes from the first request it last saw unfinished, so the whole
    run costs O(requests), whatever order they end in (requests ended by a cascade, such as a
    rejected agentic call's descendants, are seen at the next check)."""

    def __init__(self, env, requests: Sequence[Request]):
        self.done = env.event()
        self._requests = requests
        self._next = 0
        self.check()

    def check(self, _request: Request | None = None) -> None:
        requests, i = self._requests, self._next
        while i < len(requests) and requests[i].status >= RequestStatus.FINISHED:
            i += 1
        self._next = i
        if i == len(requests) and not self.done.triggered:
            self.done.succeed()
