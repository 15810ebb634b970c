"""Request migration (Llumnix-style): a decoding request moves with its KV to another instance.

A rebalancing policy picks (source, destination, request) moves every `interval_s`. The request
leaves its source between two steps (out of the decode cohort and the running set, its KV
detached but still held); its KV crosses the migration link (a `KVLink`: FIFO channels,
latency + bytes / bandwidth); then the source frees the blocks and the request joins the
destination's queue holding its KV, needing one token of work per step, as a disaggregated
request arriving at a decode instance. It keeps every token; the transfer shows up as a gap
between two of its tokens (stop-and-copy: the pipelined copy of live migration is not modelled).
If the destination is no longer up when the KV arrives, the request is retried elsewhere.
"""

from __future__ import annotations

from servesim.core.request import Request, RequestStatus
from servesim.engine.fleet import DRAINING, SERVING, Fleet
from servesim.engine.instance import Instance
from servesim.engine.transfer import KVLink


class Migrator:
    def __init__(self, fleet: Fleet, policy, link: KVLink, kv_bytes_per_token: float,
                 interval_s: float, drain: bool = True):
        self.fleet = fleet
        self.env = fleet.env
        self.policy = policy
        self.link = link
        self.kv_bytes_per_token = kv_bytes_per_token
        self.interval_s = interval_s
        self.drain = drain

    def process(self):
        fleet = self.fleet
        while not fleet.done.triggered:
            yield self.env.timeout(self.interval_s)
            serving, views = list(fleet.serving), list(fleet.views)
            if self.drain and serving:
                for slot, state in enumerate(fleet.state):
                    if state == DRAINING:
                        self.evacuate(fleet.instances[slot], serving)
            if len(serving) < 2:
                continue
            for move in self.policy.plan(views, self.env.now):
                self.start(serving[move.source], serving[move.dest], move.request)

    def evacuate(self, source: Instance, serving: list[Instance]) -> None:
        """Move a draining instance's decodes, least KV first, to the serving instances with the
        most free blocks (each keeps room for the request's KV and its next block)."""
        free = {d: d.kv.num_free_blocks for d in serving}
        block = source.kv.block_size
        for request in sorted(source.decoding(), key=lambda r: (r.num_computed_tokens, r.request_id)):
            need = -(-request.num_computed_tokens // block) + 1
            dest = max(serving, key=lambda d: (free[d], -d.index))
            if free[dest] < need:
                return
            free[dest] -= need
            self.start(source, dest, request)

    def start(self, source: Instance, dest: Instance, request: Request) -> bool:
        """Mark a decoding request to leave `source` for `dest` at its next step boundary."""
        if source is dest or request not in source.cohort or request in source.leaving:
            return False
        source.leaving[request] = dest
        source.wake()
        return True

    def take_out(self, source: Instance) -> None:
        """Between two steps of `source`: send off the requests marked to leave."""
        if not source.leaving:
            return
        now = self.env.now
        for request, dest in list(source.leaving.items()):
            if request.status != RequestStatus.RUNNING or request not in source.cohort:
                continue  # it finished meanwhile
            source.scheduler.release(request)
            detached = source.kv.detach(request)
            dest.num_incoming += 1
            dest.num_incoming_tokens += request.num_prompt_tokens
            num_bytes = self.kv_bytes_per_token * request.num_computed_tokens
            _, end = self.link.schedule(now, num_bytes)
            self.fleet.log.migration(request.request_id, source.index, dest.index, now, end, num_bytes)
            done = self.env.timeout(end - now)
            done.callbacks.append(
                lambda _, r=request, d=dest, kv=detached: self._arrive(source, d, r, kv)
            )
        source.leaving.clear()
        if self.fleet.state[source.index] == DRAINING and self.fleet.instances[source.index] is source:
            self.fleet.stop_if_drained(source.index)

    def _arrive(self, source: Instance, dest: Instance, request: Request, detached) -> None:
        if not source.failed:
            source.kv.free_detached(detached)
            source.wake()  # the freed blocks may admit a waiting prompt
        dest.num_incoming -= 1
        dest.num_incoming_tokens -= request.num_prompt_tokens
        fleet = self.fleet
        alive = fleet.instances[dest.index] is dest and fleet.state[dest.index] in (SERVING, DRAINING)
        if alive:
            request.num_migrations += 1
            dest.submit(request)
        else:
            request.restart_elsewhere()
            fleet.retry(request)
