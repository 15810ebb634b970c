"""summary.json `kv.tiers`, `kv.transfers`, `kv.retention`: hits per tier, occupancy and traffic."""

from __future__ import annotations

TIERS = ("gpu", "dram", "ssd", "pool")


def tier_summary(setup, prompt_tokens: int) -> dict:
    """Hit tokens and rates per tier (rates over all arrived prompt tokens), what the lower tiers
    and the pool hold at the end, the traffic on each link and what retention pinned."""
    managers = setup.managers
    if not managers or managers[0].prefix is None:
        return {}
    tiers = {}
    for name in TIERS:
        hit = sum(m.hit_tokens[name] for m in managers)
        present = name == "gpu" or any(
            m.tiers is not None and name in m.tiers.links for m in managers
        )
        if present:
            tiers[name] = {"hit_tokens": hit, "hit_rate": hit / prompt_tokens if prompt_tokens else 0.0}
    for m in managers:
        for store in (m.tiers.tiers if m.tiers else []):
            entry = tiers[store.name]
            entry["capacity_tokens"] = entry.get("capacity_tokens", 0) + store.capacity_blocks * m.block_size
            entry["stored_tokens"] = entry.get("stored_tokens", 0) + store.stored_blocks * m.block_size
    if setup.pool is not None:
        bs = managers[0].block_size
        tiers["pool"]["capacity_tokens"] = setup.pool.capacity_blocks * bs
        tiers["pool"]["stored_tokens"] = setup.pool.stored_blocks * bs
        tiers["pool"]["published_tokens"] = setup.pool.published_blocks * bs
    out = {"tiers": tiers}
    transfers = {}
    for m in managers:
        for link in (m.tiers.links.values() if m.tiers else []):
            t = transfers.setdefault(link.name, {"bytes": 0.0, "busy_s": 0.0})
            t["bytes"] += link.total_bytes
            t["busy_s"] += link.busy_s
    if transfers:
        out["transfers"] = transfers
    retention = [m.retention for m in managers if m.retention is not None]
    if retention and retention[0].mode != "lru":
        bs = managers[0].block_size
        out["retention"] = {
            "mode": retention[0].mode,
            "pins": sum(r.num_pins for r in retention),
            "expired_pins": sum(r.num_expired for r in retention),
            "yielded_pins": sum(r.num_yielded for r in retention),
            "peak_pinned_tokens": sum(r.peak_pinned_blocks for r in retention) * bs,
        }
    return out


TIER_LOG_COLUMNS = (
    "instance", "time_s", "gpu_cached_tokens", "dram_tokens", "ssd_tokens", "pool_tokens",
    "hit_gpu_tokens", "hit_dram_tokens", "hit_ssd_tokens", "hit_pool_tokens",
    "dram_bytes", "ssd_bytes", "pool_bytes",
)
"""Per step of an instance: what each tier holds then, and cumulative hits and link traffic."""


class TierLog:
    """Tier state after the steps of each instance (columns as lists, like StepLog). A row is kept
    only when something changed since the instance's previous one: the state is a step function,
    so dropping repeats loses nothing, and decode-only stretches cost no rows."""

    def __init__(self):
        self.rows: dict[str, list] = {c: [] for c in TIER_LOG_COLUMNS}
        self._last: dict[int, tuple] = {}

    def record(self, instance: int, time_s: float, kv) -> None:
        bs, chain = kv.block_size, kv.tiers
        stores = {t.name: t.stored_blocks * bs for t in chain.tiers} if chain is not None else {}
        links = chain.links if chain is not None else {}
        pool = chain.pool.stored_blocks * bs if chain is not None and chain.pool is not None else 0
        state = (
            kv.num_cached_blocks * bs, stores.get("dram", 0), stores.get("ssd", 0), pool,
            *(kv.hit_tokens[name] for name in TIERS),
            *(links[name].total_bytes if name in links else 0.0 for name in ("dram", "ssd", "pool")),
        )
        if self._last.get(instance) == state:
            return
        self._last[instance] = state
        r = self.rows
        r["instance"].append(instance)
        r["time_s"].append(time_s)
        for column, value in zip(TIER_LOG_COLUMNS[2:], state):
            r[column].append(value)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(TIER_LOG_COLUMNS))


def tier_timeseries(log, edges) -> dict:
    """Per-instance columns for timeseries.csv from a TierLog frame and the bins' edges: the mean
    tokens each tier holds over the bin (time-weighted), hit tokens per second and link GB/s
    (counted in the bin where the step that made them ended)."""
    import numpy as np

    from servesim.metrics.timeseries import _binned_state

    out = {}
    for i, rows in log.groupby("instance", sort=True):
        cols = {}
        rows = rows.rename(columns={"time_s": "end_s"})
        for name in ("gpu_cached_tokens", "dram_tokens", "ssd_tokens", "pool_tokens"):
            cols[name] = _binned_state(rows, name, edges)
        t = rows["end_s"].to_numpy(float)
        last = np.searchsorted(t, edges, side="right") - 1  # the row in force at each edge
        width = np.diff(edges)
        for column, scale, label in (
            *((f"hit_{n}_tokens", 1.0, f"hit_{n}_tok_s") for n in TIERS),
            *((f"{n}_bytes", 1e-9, f"{n}_gb_s") for n in ("dram", "ssd", "pool")),
        ):
            total = rows[column].to_numpy(float)
            at = np.where(last >= 0, total[np.maximum(last, 0)], 0.0)
            cols[label] = np.diff(at) * scale / width
        out[int(i)] = cols
    return out


def add_tier_columns(frame, log):
    """timeseries.csv plus the tier columns (`tier_timeseries`) on the same bins."""
    import numpy as np

    starts = np.unique(frame["time_s"].to_numpy(float))
    if len(starts) == 0 or len(log) == 0:
        return frame
    dt = starts[1] - starts[0] if len(starts) > 1 else max(float(log["time_s"].max()), 1.0)
    edges = np.append(starts, starts[-1] + dt)
    per_instance = tier_timeseries(log, edges)
    frame = frame.copy()
    names = next(iter(per_instance.values())).keys()
    for name in names:
        frame[name] = 0.0
    for i, cols in per_instance.items():
        rows = frame.index[frame["instance"] == i]
        order = np.searchsorted(starts, frame.loc[rows, "time_s"].to_numpy(float))
        for name, values in cols.items():
            frame.loc[rows, name] = values[order]
    return frame
