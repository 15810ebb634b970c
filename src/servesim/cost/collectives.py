"""Fixed latency of a collective: the library's own overhead plus the device link's per-hop latency.

A collective over `p` devices pays the profile's `comm_latency_s` (kernel launch, synchronisation:
software, fitted per device family) once, plus the catalog's `link_latency_s` for every hop a message
makes in sequence: a ring all-reduce runs p - 1 reduce-scatter and p - 1 all-gather steps, a gather
p - 1, a pipeline send one, a pairwise all-to-all p - 1 rounds. So two devices that differ only in
their link latency price the same all-reduce differently, as the catalog says; the bandwidth term
(`bytes / (link bandwidth x comm_bw_eff)`) stays with the caller.
"""

from __future__ import annotations

from servesim.catalog.specs import HardwareSpec
from servesim.cost.profile import CostProfile

HOPS = {
    "all_reduce": lambda p: 2 * (p - 1),
    "gather": lambda p: p - 1,
    "all_to_all": lambda p: p - 1,
    "send": lambda p: 1,
}
"""Sequential link hops of one collective over p devices (ring algorithms)."""


def collective_latency(profile: CostProfile, hardware: HardwareSpec, kind: str, devices) -> float:
    """Seconds of fixed cost of one `kind` collective over `devices` (>= 2) devices; `devices` may be
    a numpy array (vectorised over measurements)."""
    hops = HOPS[kind](devices)
    return profile.comm_latency_s + hops * hardware.link_latency_s
