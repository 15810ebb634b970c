"""Workloads: where requests come from."""

from servesim.workload.synthetic import generate
from servesim.workload.table import RequestTable


def build_requests(cfg, seed_rng, resolve_path=None) -> RequestTable:
    """The requests of a workload config, drawn from the workload's RNG stream."""
    return generate(cfg, seed_rng)


__all__ = ["RequestTable", "build_requests", "generate"]
