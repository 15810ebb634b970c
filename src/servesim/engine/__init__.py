"""The engine: the only package that imports SimPy."""

from servesim.engine.cluster import DisaggregationParts, InstanceParts, RunStats, run_cluster
from servesim.engine.transfer import KVLink

__all__ = ["DisaggregationParts", "InstanceParts", "KVLink", "RunStats", "run_cluster"]
