"""A progress bar with ETA on stderr: redrawn in place on a terminal, a line every ~10% otherwise."""

from __future__ import annotations

import math
import sys
import time


class Progress:
    def __init__(self, total: int, label: str = "points", stream=None, enabled: bool = True):
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.failed = 0
        self._start = time.monotonic()
        self._last_decile = -1

    def update(self, failed: bool = False) -> None:
        self.done += 1
        self.failed += failed
        if not self.enabled:
            return
        decile = 10 * self.done // self.total
        if self.tty:
            self.stream.write("\r" + self.line())
            self.stream.flush()
        elif decile != self._last_decile or self.done == self.total:
            self._last_decile = decile
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def line(self, width: int = 24) -> str:
        elapsed = time.monotonic() - self._start
        frac = self.done / self.total
        bar = "#" * int(width * frac) + "-" * (width - int(width * frac))
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"[{bar}] {self.done}/{self.total} {self.label}{failed}  "
            f"elapsed {_clock(elapsed)}  ETA {_clock(eta)}"
        )


def _clock(seconds: float) -> str:
    if math.isnan(seconds):  # nothing finished yet
        return "--:--"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
