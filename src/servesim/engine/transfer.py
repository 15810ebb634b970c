"""The KV link of a disaggregated cluster: a shared resource that moves prefilled KV caches.

Transfers are served first come, first served on `channels` parallel channels (1: one shared
link). A transfer waits for the earliest free channel, then holds it for
`latency + bytes / bandwidth`. Plain arithmetic on times: the engine turns the end time into a
SimPy timeout.
"""

from __future__ import annotations

import heapq


class KVLink:
    def __init__(self, bandwidth_bytes_per_s: float, latency_s: float, channels: int = 1):
        if bandwidth_bytes_per_s <= 0 or latency_s < 0 or channels < 1:
            raise ValueError("KV link needs bandwidth > 0, latency >= 0 and channels >= 1")
        self.bandwidth = bandwidth_bytes_per_s
        self.latency = latency_s
        self._free_at = [0.0] * channels  # heap of the times each channel becomes free
        self.num_transfers = 0
        self.total_bytes = 0.0
        self.total_wait_s = 0.0
        self.total_busy_s = 0.0
        self.max_wait_s = 0.0

    def transfer_time(self, num_bytes: float) -> float:
        """Seconds a transfer holds its channel."""
        return self.latency + num_bytes / self.bandwidth

    def schedule(self, now: float, num_bytes: float) -> tuple[float, float]:
        """Queue a transfer requested at `now`; return its (start, end) times."""
        start = max(now, self._free_at[0])
        busy = self.transfer_time(num_bytes)
        end = start + busy
        heapq.heapreplace(self._free_at, end)
        wait = start - now
        self.num_transfers += 1
        self.total_bytes += num_bytes
        self.total_wait_s += wait
        self.total_busy_s += busy
        self.max_wait_s = max(self.max_wait_s, wait)
        return start, end

    def stats(self, horizon_s: float) -> dict:
        n = self.num_transfers
        channels = len(self._free_at)
        return {
            "transfers": n,
            "bytes": self.total_bytes,
            "mean_transfer_s": self.total_busy_s / n if n else 0.0,
            "mean_wait_s": self.total_wait_s / n if n else 0.0,
            "max_wait_s": self.max_wait_s,
            "utilization": self.total_busy_s / (channels * horizon_s) if horizon_s > 0 else 0.0,
        }
