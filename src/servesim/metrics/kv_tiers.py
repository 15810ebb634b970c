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
            "peak_pinned_tokens": sum(r.peak_pinned_blocks for r in retention) * bs,
        }
    return out
