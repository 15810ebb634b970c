"""KV retention across an agentic program's tool calls: what a finished call leaves cached.

- `lru`: nothing special; the call's prompt segments stay in the prefix cache as any request's do
  and go when the eviction policy picks them.
- `none`: the call's segments are dropped at once (no reuse across calls; what engines without
  cross-request caching do).
- `ttl`: Continuum-style pinning: if the program will call again, the call's segments stay
  referenced (not evictable) for `ttl_s` seconds, or until the program's next call is admitted on
  this instance, whichever is first. Pinned memory is not free for admissions: a long TTL under
  memory pressure delays other requests. Requests already running may take it back (the pin that
  expires soonest goes first) rather than be preempted.
- `program`: no pins; the GPU tier's eviction uses the program-aware policy, which gives up the
  KV of the program due to call again furthest ahead first.

Every mode also tells the program hints when the program is expected back (`now + tool time`, or
never), which the program-aware policy reads.
"""

from __future__ import annotations

import math

from servesim.kv.eviction import ProgramHints

MODES = ("lru", "none", "ttl", "program")


class Retention:
    def __init__(self, mode: str = "lru", ttl_s: float = 60.0, hints: ProgramHints | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown retention mode {mode!r}")
        self.mode = mode
        self.ttl_s = ttl_s
        self.hints = hints if hints is not None else ProgramHints()
        self.pins: dict[int, tuple[tuple, float]] = {}
        """Program -> (pinned segment keys, expiry time)."""
        self.pinned_blocks = 0
        """Distinct blocks pinned now."""
        self._pin_counts: dict = {}  # segment -> pins holding it
        self.peak_pinned_blocks = 0
        self.num_pins = 0
        self.num_expired = 0
        self.num_yielded = 0
        """Pins released early because a running request needed the memory."""

    def call_admitted(self, kv, request) -> None:
        """The program's next call references its KV itself now: its pin here can go."""
        self.hints.expect(request.program_id, -math.inf)  # running: never the first to evict
        self._unpin(kv, request.program_id)

    def before_release(self, kv, request, keys: tuple) -> None:
        tool_s = request.program_tool_s
        back = kv.now + tool_s if math.isfinite(tool_s) else math.inf
        self.hints.expect(request.program_id, back)
        if self.mode == "ttl" and keys and math.isfinite(tool_s):
            self._unpin(kv, request.program_id)
            for key in keys:  # the request's own references drop next; these keep them cached
                kv.prefix.acquire(key)
                count = self._pin_counts.get(key, 0)
                self._pin_counts[key] = count + 1
                if not count:  # shared segments (a system prompt) cost their memory once
                    self.pinned_blocks += key[1]
            self.pins[request.program_id] = (keys, kv.now + self.ttl_s)
            self.peak_pinned_blocks = max(self.peak_pinned_blocks, self.pinned_blocks)
            self.num_pins += 1

    def after_release(self, kv, request, keys: tuple) -> None:
        if self.mode == "none" and keys:
            kv.prefix.forget(keys)

    def expire(self, kv, now: float) -> None:
        if not self.pins:
            return
        for program in [p for p, (_, until) in self.pins.items() if until <= now]:
            self.num_expired += 1
            self._unpin(kv, program)

    def release_soonest(self, kv) -> None:
        """Give up the pin that would expire first (memory for a running request)."""
        program = min(self.pins, key=lambda p: (self.pins[p][1], p))
        self.num_yielded += 1
        self._unpin(kv, program)

    def next_expiry(self) -> float:
        return min((until for _, until in self.pins.values()), default=math.inf)

    def check(self, kv) -> None:
        distinct = {k for keys, _ in self.pins.values() for k in keys}
        assert self.pinned_blocks == sum(k[1] for k in distinct)
        assert set(self._pin_counts) == distinct
        for keys, _ in self.pins.values():
            assert all(kv.prefix.ref_counts[k] >= 1 for k in keys)

    def _unpin(self, kv, program: int) -> None:
        pin = self.pins.pop(program, None)
        if pin is None:
            return
        keys = pin[0]
        for key in keys:
            count = self._pin_counts[key] - 1
            if count:
                self._pin_counts[key] = count
            else:
                del self._pin_counts[key]
                self.pinned_blocks -= key[1]
        kv.num_free_blocks += kv.prefix.release(keys, program)
