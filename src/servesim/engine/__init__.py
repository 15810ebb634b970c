"""The engine: the only package that imports SimPy."""

from servesim.engine.cluster import InstanceParts, RunStats, run_cluster

__all__ = ["InstanceParts", "RunStats", "run_cluster"]
