"""Figures of a workload: arrival rate over time and the length distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from servesim.workload.table import RequestTable


def rate_series(arrival_s: np.ndarray, bin_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(bin start, requests per second in the bin); about 120 bins when `bin_s` is not given."""
    start, end = float(arrival_s.min()), float(arrival_s.max())
    if bin_s is None:
        bin_s = nice_bin((end - start) / 120)
    edges = np.arange(start, end + bin_s, bin_s)
    if len(edges) < 2:
        edges = np.array([start, start + bin_s])
    counts, edges = np.histogram(arrival_s, bins=edges)
    return edges[:-1] - start, counts / bin_s


def nice_bin(seconds: float) -> float:
    """The smallest of 1, 2, 5 x 10^k at or above `seconds` (at least 1 ms)."""
    seconds = max(seconds, 1e-3)
    exp = np.floor(np.log10(seconds))
    for m in (1, 2, 5, 10):
        if m * 10**exp >= seconds:
            return float(m * 10**exp)
    return float(10 ** (exp + 1))


def ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(values)
    return x, np.arange(1, len(x) + 1) / len(x)


def plot_table(table: RequestTable, out: str | Path, title: str = "", bin_s: float | None = None) -> Path:
    """Write a PNG with three panels: rate over time, prompt and output length CDFs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    ax = axes[0]
    if table.timed and len(table) > 1:
        t, rate = rate_series(table.arrival_s, bin_s)
        ax.step(t, rate, where="post", lw=1)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("arrivals per second")
        ax.set_title("arrival rate")
    else:
        ax.text(0.5, 0.5, "no timestamps", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    for ax, values, name in (
        (axes[1], table.prompt_tokens, "prompt tokens"),
        (axes[2], table.output_tokens, "output tokens"),
    ):
        x, y = ecdf(values)
        ax.plot(x, y, lw=1.2)
        ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("CDF")
        ax.set_title(f"{name}: mean {values.mean():.0f}, p50 {np.median(values):.0f}")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
