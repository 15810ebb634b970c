"""`cluster.autoscaling`, `cluster.faults`, `cluster.migration`: a fleet that changes during a run.

Policies are named components: a name, or a block `{name: ..., <params>}` validated by the
policy's own Params (as `engine.predictor`). See docs/elastic.md.
"""

from typing import Literal

from pydantic import Field, model_validator

from servesim.config.base import Component, Nested, Section


class ColdStartConfig(Section):
    fixed_s: float = Field(20.0, ge=0, le=86_400)
    """Seconds of a cold start besides loading weights: container, engine, CUDA graphs."""
    load_bandwidth_gb_s: float = Field(2.0, gt=0, le=1e5)
    """Bandwidth each GPU reads its weight shard at (storage or network), 10^9 bytes per second."""


class AutoscalingConfig(Section):
    policy: Component = "target_utilization"
    """Scaling policy: `target_utilization`, `queue_length`, `predicted_load`, `schedule`,
    `module:Class`, or a block `{name: ..., <params>}`."""
    min_instances: int = Field(1, ge=1, le=4096)
    """Fewest instances up (starting or serving)."""
    max_instances: int = Field(8, ge=1, le=4096)
    """Most instances up (starting, serving or draining)."""
    interval_s: float = Field(10.0, ge=0.01, le=86_400)
    """Seconds between two decisions of the policy (at least 10 ms: a loop of tinier steps would
    never let simulated time advance)."""
    cooldown_s: float = Field(60.0, ge=0, le=86_400)
    """Seconds after a scaling action before the fleet scales down again (scale-up is immediate)."""
    cold_start: Nested[ColdStartConfig] = Field(default_factory=ColdStartConfig)
    """What a new instance pays before it serves."""

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min_instances ({self.min_instances}) must be <= max_instances ({self.max_instances})"
            )
        return self


class ScheduledFailure(Section):
    at_s: float = Field(ge=0)
    """Simulated time of the failure, seconds."""
    instance: int = Field(0, ge=0)
    """Index of the instance that fails (if it is not up then, the lowest-indexed serving one)."""
    duration_s: float | None = Field(None, gt=0)
    """Seconds until it is repaired and cold-starts again; none: `faults.repair_s`."""


class Straggler(Section):
    at_s: float = Field(ge=0)
    """Start of the slowdown, seconds."""
    instance: int = Field(0, ge=0)
    """Index of the slowed instance."""
    factor: float = Field(2.0, ge=1, le=1000)
    """Every step of the instance takes this many times as long."""
    duration_s: float = Field(60.0, gt=0)
    """How long the slowdown lasts, seconds."""


class LinkDegradation(Section):
    at_s: float = Field(ge=0)
    """Start of the degradation, seconds."""
    factor: float = Field(4.0, ge=1, le=1e6)
    """The KV link's bandwidth is divided by this factor."""
    duration_s: float = Field(60.0, gt=0)
    """How long it lasts, seconds."""
    link: Literal["kv", "migration", "all"] = "all"
    """Which link: the disaggregation `kv` link, the `migration` link, or both."""


class FaultsConfig(Section):
    failures: list[Nested[ScheduledFailure]] = []
    """Instance failures at given times."""
    mtbf_s: float | None = Field(None, gt=0)
    """Random failures: mean seconds between failures of the fleet (exponential gaps, `faults`
    RNG stream; each hits a uniformly drawn serving instance)."""
    repair_s: float = Field(300.0, gt=0, le=1e7)
    """Seconds a failed instance stays down before it cold-starts again."""
    on_failure: Literal["retry", "fail"] = "retry"
    """In-flight requests of a failed instance: `retry` elsewhere (their KV is lost: they prefill
    again, keeping the tokens already delivered), or `fail` with reason `instance_failed`."""
    max_retries: int = Field(3, ge=0, le=100)
    """A request hit by more failures than this fails (`retries_exhausted`)."""
    stragglers: list[Nested[Straggler]] = []
    """Instances that run slow for a while."""
    link_degradations: list[Nested[LinkDegradation]] = []
    """Periods of reduced KV-link bandwidth."""


class MigrationConfig(Section):
    policy: Component = "load"
    """Rebalancing policy: `load`, `fragmentation`, `priority`, `module:Class`, or
    `{name: ..., <params>}`."""
    interval_s: float = Field(0.5, ge=0.01, le=3600)
    """Seconds between two rebalancing decisions (at least 10 ms, as autoscaling's)."""
    bandwidth_gb_s: float = Field(50.0, gt=0, le=1e6)
    """Bandwidth of the link migrations move KV over, 10^9 bytes per second."""
    latency_s: float = Field(1e-3, ge=0, le=60)
    """Fixed time of each migration (handshake, final stop-and-copy), seconds."""
    channels: int = Field(1, ge=1, le=4096)
    """Migrations in flight at once; more wait in a FIFO queue."""
    drain: bool = True
    """Also move the decoding requests of draining instances to serving ones (scale-down
    finishes sooner: Llumnix's migration for autoscaling)."""
