"""Progress bars on stderr for long commands (tqdm): drawn on a terminal, silent when piped."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm


def progress_bar(total: float | None, desc: str, unit: str = "it", enabled: bool = True,
                 delay: float = 0.0) -> tqdm:
    """A bar on stderr; off when `enabled` is false or stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=None if enabled else True, delay=delay)


class SimulationProgress:
    """An `after_step` hook drawing simulated time against the last arrival's; it appears only
    when a run lasts longer than `delay` wall seconds, and redraws at most ten times a second."""

    def __init__(self, last_arrival_s: float, enabled: bool = True, delay: float = 2.0):
        # no terminal, no bar (tqdm's own rule), and no tqdm import on a piped or scripted run
        shown = enabled and _stderr_is_terminal()
        total = round(max(last_arrival_s, 1e-9), 3)
        self.bar = progress_bar(total, "simulating", "sim s", True, delay) if shown else None
        self._next = 0.0

    @property
    def active(self) -> bool:
        return self.bar is not None and not self.bar.disable

    def __call__(self, instance) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + 0.1
            self.bar.n = round(min(instance.env.now, self.bar.total), 3)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False
