"""Progress bars on stderr for long commands (tqdm): drawn on a terminal, silent when piped."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


def progress_bar(total: float | None, desc: str, unit: str = "it", enabled: bool = True,
                 delay: float = 0.0) -> tqdm:
    """A bar on stderr; off when `enabled` is false or stderr is not a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=None if enabled else True, delay=delay)


class SimulationProgress:
    """An `after_step` hook drawing simulated time against the last arrival's; it appears only
    when a run lasts longer than `delay` wall seconds, and redraws at most ten times a second."""

    def __init__(self, last_arrival_s: float, enabled: bool = True, delay: float = 2.0):
        self.bar = progress_bar(round(max(last_arrival_s, 1e-9), 3), "simulating", "sim s", enabled, delay)
        self._next = 0.0

    @property
    def active(self) -> bool:
        return not self.bar.disable

    def __call__(self, instance) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + 0.1
            self.bar.n = round(min(instance.env.now, self.bar.total), 3)
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
