"""Prefill/decode disaggregation: hand a prefilled request's KV from the prefill pool to the
decode pool over the shared KV link.

At the first token the prefill instance detaches the request (its KV stays allocated there). The
decode router picks a decode instance at once, so the router sees the request as incoming while
its KV is in flight; the link queues the transfer. When the KV has arrived, the prefill instance
frees its copy, the first token is delivered (TTFT includes the transfer) and the request joins the
decode instance's queue holding its prompt's KV, so it needs one token of work per step from then.
"""

from __future__ import annotations

from typing import Sequence

import simpy

from servesim.core.request import Request
from servesim.engine.instance import Instance
from servesim.engine.transfer import KVLink
from servesim.kv.manager import DetachedKV


class KVHandoff:
    """Called by a prefill instance for each request that finished its prefill."""

    def __init__(
        self,
        env: simpy.Environment,
        decode_instances: Sequence[Instance],
        router,
        link: KVLink,
        kv_bytes_per_token: float,
    ):
        self.env = env
        self.decode = list(decode_instances)
        self.views = [instance.view for instance in self.decode]
        self.router = router
        self.link = link
        self.kv_bytes_per_token = kv_bytes_per_token

    def __call__(self, source: Instance, request: Request, detached: DetachedKV) -> None:
        now = self.env.now
        request.handoff_time = now
        request.prefill_instance = source.index
        dest = self.decode[self.router.route(request, self.views, now)]
        dest.num_incoming += 1
        dest.num_incoming_tokens += request.num_prompt_tokens
        dest.load_changed()
        _, end = self.link.schedule(now, self.kv_bytes_per_token * request.num_computed_tokens)
        arrival = self.env.timeout(end - now)
        arrival.callbacks.append(lambda _: self._arrive(source, dest, request, detached))

    def _arrive(self, source: Instance, dest: Instance, request: Request, detached) -> None:
        source.kv.free_detached(detached)
        source.wake()  # the freed blocks may admit a waiting prompt
        dest.num_incoming -= 1
        dest.num_incoming_tokens -= request.num_prompt_tokens
        dest.load_changed()
        request.deliver_first_token(self.env.now)
        dest.submit(request)
