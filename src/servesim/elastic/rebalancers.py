"""Built-in rebalancing policies: which decoding requests move where (Llumnix-style migration).

Each instance's *pressure* is its KV demand over its KV capacity: blocks in use plus the blocks
its waiting requests still need for their prompts. A migration moves a decoding request's blocks
from one instance to another, so pressures are updated as moves are planned.

- `load`: move from the highest-pressure instance to the lowest while the gap exceeds
  `threshold` and the source is above `min_pressure`;
- `fragmentation`: only where an instance's queue does not fit its free blocks while another
  instance has room: move decodes off it until its queued prompts fit;
- `priority`: isolate urgent requests: move decodes of priority below `min_priority` off
  instances that hold urgent ones (waiting or decoding) to the instance with the fewest urgent ones.
Requests with the least KV move first (cheapest transfer, as Llumnix).
"""

from __future__ import annotations

from typing import Sequence

from pydantic import Field

from servesim.elastic.base import REBALANCERS, BasePolicy, MigrationView, Move, PolicyParams


def kv_blocks(view: MigrationView, num_tokens: int) -> int:
    return -(-num_tokens // view.kv.block_size)


def pressure_blocks(view: MigrationView) -> int:
    """Blocks in use plus blocks the waiting prompts need."""
    kv = view.kv
    return kv.num_blocks - kv.num_free_blocks + kv_blocks(view, view.load().num_queued_tokens)


class _Ledger:
    """Planned moves and the block counts they shift."""

    def __init__(self, instances: Sequence[MigrationView]):
        self.instances = instances
        self.demand = [pressure_blocks(v) for v in instances]
        self.free = [v.kv.num_free_blocks for v in instances]
        self.taken: set = set()
        self.moves: list[Move] = []

    def pressure(self, i: int) -> float:
        return self.demand[i] / self.instances[i].kv.num_blocks

    def candidates(self, i: int, keep=lambda r: True) -> list:
        """Decoding requests of instance i not yet moved, least KV first."""
        reqs = [r for r in self.instances[i].decoding() if r not in self.taken and keep(r)]
        return sorted(reqs, key=lambda r: (r.num_computed_tokens, r.request_id))

    def move(self, source: int, dest: int, request) -> bool:
        """Plan a move if the destination has room for the request's KV plus its next block."""
        blocks = kv_blocks(self.instances[source], request.num_computed_tokens) + 1
        if blocks > self.free[dest]:
            return False
        self.taken.add(request)
        self.moves.append(Move(source, dest, request))
        self.demand[source] -= blocks - 1
        self.free[source] += blocks - 1
        self.demand[dest] += blocks
        self.free[dest] -= blocks
        return True


class LoadParams(PolicyParams):
    threshold: float = Field(0.2, ge=0, le=10)
    """Least pressure gap (fraction of KV capacity) between source and destination."""
    min_pressure: float = Field(0.9, ge=0, le=10)
    """Only instances above this pressure give requests away."""
    max_moves: int = Field(4, ge=1, le=4096)
    """Most migrations planned per decision."""


@REBALANCERS.register("load")
class LoadRebalancer(BasePolicy):
    Params = LoadParams

    def plan(self, instances, now) -> list[Move]:
        p, ledger = self.params, _Ledger(instances)
        n = len(instances)
        while n > 1 and len(ledger.moves) < p.max_moves:
            order = sorted(range(n), key=lambda i: (ledger.pressure(i), i))
            dest, source = order[0], order[-1]
            gap = ledger.pressure(source) - ledger.pressure(dest)
            if ledger.pressure(source) < p.min_pressure or gap < p.threshold:
                break
            picks = ledger.candidates(source)
            if not picks or not ledger.move(source, dest, picks[0]):
                break
        return ledger.moves


class FragmentationParams(PolicyParams):
    max_moves: int = Field(8, ge=1, le=4096)
    """Most migrations planned per decision."""


@REBALANCERS.register("fragmentation")
class FragmentationRebalancer(BasePolicy):
    Params = FragmentationParams

    def plan(self, instances, now) -> list[Move]:
        ledger = _Ledger(instances)
        short = {}
        for i, v in enumerate(instances):
            need = kv_blocks(v, v.load().num_queued_tokens) - v.kv.num_free_blocks
            if need > 0:
                short[i] = need
        for source, need in sorted(short.items(), key=lambda kv: (-kv[1], kv[0])):
            for request in ledger.candidates(source):
                if need <= 0 or len(ledger.moves) >= self.params.max_moves:
                    break
                dests = [d for d in range(len(instances)) if d not in short]
                if not dests:
                    return ledger.moves
                dest = max(dests, key=lambda d: (ledger.free[d], -d))
                if ledger.move(source, dest, request):
                    need -= kv_blocks(instances[source], request.num_computed_tokens)
        return ledger.moves


class PriorityParams(PolicyParams):
    min_priority: int = 1
    """Requests at or above this priority are urgent and never moved."""
    max_moves: int = Field(4, ge=1, le=4096)
    """Most migrations planned per decision."""


@REBALANCERS.register("priority")
class PriorityRebalancer(BasePolicy):
    Params = PriorityParams

    def plan(self, instances, now) -> list[Move]:
        urgent_min = self.params.min_priority
        ledger = _Ledger(instances)
        urgent = [sum(r.priority >= urgent_min for r in v.decoding()) for v in instances]
        for i, v in enumerate(instances):
            urgent[i] += v.load().num_waiting if urgent[i] else 0
        if len(instances) < 2:
            return []
        for source in sorted(range(len(instances)), key=lambda i: (-urgent[i], i)):
            if not urgent[source]:
                break
            for request in ledger.candidates(source, lambda r: r.priority < urgent_min):
                if len(ledger.moves) >= self.params.max_moves:
                    return ledger.moves
                dest = min(
                    (d for d in range(len(instances)) if d != source),
                    key=lambda d: (urgent[d], ledger.pressure(d), d),
                )
                if urgent[dest] >= urgent[source]:
                    break
                ledger.move(source, dest, request)
        return ledger.moves
