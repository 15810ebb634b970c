"""Eviction policies: which cached KV segment a tier gives up first, behind one protocol.

A policy orders the *evictable* segments of one tier (on the GPU: cached segments no request
references; in a host, SSD or pool tier: every stored segment). The tier tells it what becomes
evictable (`add`), what is used again (`touch`) or leaves (`remove`), and asks for the next victim
(`pop_victim`). Policies never free memory themselves: the tier does, so capacity accounting stays
in one place. `expired(now)` lists segments a time-based policy wants gone even without pressure.

- `lru`: least recently added or touched first (today's prefix cache).
- `lfu`: fewest uses since the segment entered the tier first, ties by age.
- `ttl`: LRU order, and a segment unused for `ttl_s` expires.
- `program`: program-aware (KVFlow-like): the segments of the program whose next call is due
  furthest in the future go first (a finished program's at once); a plain request's segments
  count as due now (kept over programs in a tool call, given up before a running program's).
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from typing import Callable, Hashable, Protocol

from pydantic import BaseModel, ConfigDict, Field

from servesim.registry import Registry

Key = Hashable


class ProgramHints:
    """When each agentic program is expected to call again (set by the program driver): `now`
    while a call runs, the end of the tool call while one runs, infinity once it is done."""

    def __init__(self):
        self.next_call: dict[int, float] = {}
        self.version = 0
        """Bumped on every change, so policies may cache a choice between changes."""

    def expect(self, program: int, time: float) -> None:
        self.next_call[program] = time
        self.version += 1

    def due(self, program: int, now: float) -> float:
        return self.next_call.get(program, now) if program >= 0 else now


class EvictionPolicy(Protocol):
    def add(self, key: Key, program: int = -1) -> None: ...

    def touch(self, key: Key) -> None: ...

    def remove(self, key: Key) -> None: ...

    def pop_victim(self) -> Key: ...

    def expired(self, now: float) -> list: ...

    def __contains__(self, key: Key) -> bool: ...

    def __len__(self) -> int: ...


EVICTION_POLICIES: Registry = Registry(
    "eviction policy", "kv.gpu_eviction", required=("add", "touch", "remove", "pop_victim", "expired"),
)
"""Built-in names and `module:Class` plugins, configured as `name` or `{name: ..., <params>}`: the
protocol's methods; constructed as `cls(params=..., clock=..., hints=...)` (`params` only with a
`Params` model), `clock` giving the simulated time, `hints` the program hints."""


@EVICTION_POLICIES.register("lru")
class LRUPolicy:
    def __init__(self, clock: Callable[[], float] | None = None, hints: ProgramHints | None = None):
        self._order: OrderedDict = OrderedDict()  # oldest first
        self.clock = clock or (lambda: 0.0)

    def add(self, key, program: int = -1) -> None:
        self._order[key] = self.clock()
        self._order.move_to_end(key)

    def touch(self, key) -> None:
        if key in self._order:
            self.add(key)

    def remove(self, key) -> None:
        del self._order[key]

    def pop_victim(self):
        return self._order.popitem(last=False)[0]

    def expired(self, now: float) -> list:
        return []

    def __contains__(self, key) -> bool:
        return key in self._order

    def __len__(self) -> int:
        return len(self._order)


@EVICTION_POLICIES.register("ttl")
class TTLPolicy(LRUPolicy):
    """LRU, plus expiry: a segment not used for `ttl_s` leaves the tier."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        ttl_s: float = Field(60.0, gt=0, le=1e9)
        """Seconds a segment may stay unused before it expires."""

    def __init__(self, params: Params | None = None, clock: Callable[[], float] | None = None,
                 hints: ProgramHints | None = None):
        super().__init__(clock)
        self.ttl_s = (params or self.Params()).ttl_s

    def expired(self, now: float) -> list:
        out = []
        for key, used in self._order.items():  # oldest first: stop at the first live one
            if now - used < self.ttl_s:
                break
            out.append(key)
        return out


@EVICTION_POLICIES.register("lfu")
class LFUPolicy:
    """Fewest uses first; ties go to the earlier insertion. Lazy heap: stale entries are skipped."""

    def __init__(self, clock: Callable[[], float] | None = None, hints: ProgramHints | None = None):
        self._uses: dict = {}
        self._heap: list = []
        self._seq = itertools.count()

    def add(self, key, program: int = -1) -> None:
        self._uses[key] = self._uses.get(key, 0) + 1
        heapq.heappush(self._heap, (self._uses[key], next(self._seq), key))

    def touch(self, key) -> None:
        if key in self._uses:
            self.add(key)

    def remove(self, key) -> None:
        del self._uses[key]

    def pop_victim(self):
        while True:
            uses, _, key = heapq.heappop(self._heap)
            if self._uses.get(key) == uses:
                del self._uses[key]
                return key

    def expired(self, now: float) -> list:
        return []

    def __contains__(self, key) -> bool:
        return key in self._uses

    def __len__(self) -> int:
        return len(self._uses)


@EVICTION_POLICIES.register("program")
class ProgramAwarePolicy:
    """Evict the program due furthest ahead first; within a program, its least recent segment."""

    def __init__(self, hints: ProgramHints | None = None, clock: Callable[[], float] | None = None):
        self.hints = hints if hints is not None else ProgramHints()
        self.clock = clock or (lambda: 0.0)
        self._groups: dict[int, OrderedDict] = {}
        self._program_of: dict = {}
        self._choice: tuple | None = None  # (state, program): a batch of evictions reuses it

    def add(self, key, program: int = -1) -> None:
        old = self._program_of.get(key)
        if old is not None and old != program:
            self.remove(key)
        self._program_of[key] = program
        if program not in self._groups:
            self._choice = None
        group = self._groups.setdefault(program, OrderedDict())
        group[key] = None
        group.move_to_end(key)

    def touch(self, key) -> None:
        if key in self._program_of:
            self.add(key, self._program_of[key])

    def remove(self, key) -> None:
        program = self._program_of.pop(key)
        group = self._groups[program]
        del group[key]
        if not group:
            del self._groups[program]

    def pop_victim(self):
        now = self.clock()
        state = (now, self.hints.version)
        if self._choice is not None and self._choice[0] == state and self._choice[1] in self._groups:
            program = self._choice[1]
        else:
            # furthest next call first; ties (e.g. several finished programs) to the lowest id
            program = max(self._groups, key=lambda p: (self.hints.due(p, now), -p))
            self._choice = (state, program)
        key = next(iter(self._groups[program]))
        self.remove(key)
        return key

    def expired(self, now: float) -> list:
        return []

    def __contains__(self, key) -> bool:
        return key in self._program_of

    def __len__(self) -> int:
        return len(self._program_of)


def make_policy(
    spec: str | dict = "lru", clock: Callable[[], float] | None = None,
    hints: ProgramHints | None = None, key: str | None = None,
) -> EvictionPolicy:
    """A policy from its config value, `name` or `{name: ..., <params>}` (ConfigError naming `key`
    if the name or a parameter is wrong)."""
    hints = hints if hints is not None else ProgramHints()
    return EVICTION_POLICIES.create(spec, key, clock=clock or (lambda: 0.0), hints=hints)


__all__ = [
    "EVICTION_POLICIES", "EvictionPolicy", "LFUPolicy", "LRUPolicy", "ProgramAwarePolicy",
    "ProgramHints", "TTLPolicy", "make_policy",
]
