"""Instances and load over time for one or more runs (`servesim plot fleet`): the arrival rate,
the instances up (billed: starting, serving or draining) and serving, and the p90 TTFT of the
requests arriving in each bin. A fixed fleet (no elastic columns) is drawn as its instance count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from servesim.core.errors import InputFileError


def read_run(run: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = Path(run)
    frames = []
    for name in ("timeseries.csv", "requests.csv"):
        path = folder / name
        if not path.exists():
            raise InputFileError(str(path), "missing: expected a `servesim run` output folder")
        frames.append(pd.read_csv(path))
    return frames[0], frames[1]


def fleet_series(ts: pd.DataFrame) -> pd.DataFrame:
    """Per bin: instances up and serving (a fixed fleet: every instance, all the time)."""
    if "up_frac" not in ts:
        ts = ts.assign(up_frac=1.0, serving_frac=1.0)
    return ts.groupby("time_s")[["up_frac", "serving_frac"]].sum()


def fleet_figure(runs: dict[str, str | Path]):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (load_ax, inst_ax, ttft_ax) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for k, (label, run) in enumerate(runs.items()):
        ts, reqs = read_run(run)
        fleet = fleet_series(ts)
        times = fleet.index.to_numpy(float)
        dt = times[1] - times[0] if len(times) > 1 else 1.0
        edges = np.append(times, times[-1] + dt)
        if k == 0:
            counts, _ = np.histogram(reqs["arrival_s"], bins=edges)
            load_ax.step(times, counts / dt, where="post", color="black", lw=1)
        hours = fleet["up_frac"].sum() * dt / 3600
        line = inst_ax.step(times, fleet["up_frac"], where="post", lw=1.2,
                            label=f"{label}: up ({hours:.2f} instance-h)")
        inst_ax.step(times, fleet["serving_frac"], where="post", lw=0.8, ls="--",
                     color=line[0].get_color(), label=f"{label}: serving")
        done = reqs[reqs["status"] == "completed"]
        bins = np.clip(np.searchsorted(edges, done["arrival_s"], side="right") - 1, 0, len(times) - 1)
        p90 = done.groupby(bins)["ttft_s"].quantile(0.9).reindex(range(len(times)))
        ttft_ax.step(times, p90.to_numpy(), where="post", lw=1, color=line[0].get_color(), label=label)
    load_ax.set_ylabel("arrivals (req/s)")
    inst_ax.set_ylabel("instances")
    ttft_ax.set_ylabel("p90 TTFT (s) of arrivals")
    ttft_ax.set_xlabel("simulated time (s)")
    inst_ax.legend(fontsize=7)
    ttft_ax.legend(fontsize=7)
    for ax in (load_ax, inst_ax, ttft_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
