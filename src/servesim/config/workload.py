"""`workload:` where requests come from: synthetic arrivals and lengths, or a trace."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from servesim.config.base import Section


class ArrivalConfig(Section):
    process: Literal["poisson", "gamma", "weibull", "constant"] = "poisson"
    """Inter-arrival law."""
    rate: float = Field(10.0, gt=0, le=1e6)
    """Mean arrival rate, requests per second."""
    cv: float = Field(1.0, gt=0, le=100)
    """Coefficient of variation of inter-arrival times (gamma, weibull)."""


class LengthDist(Section):
    dist: Literal["fixed", "uniform", "lognormal", "zipf"] = "fixed"
    """Distribution family of a token count."""
    value: int | None = Field(None, ge=1)
    """`fixed`: the count."""
    mean: float | None = Field(None, gt=0)
    """`lognormal`: mean of the distribution (not of its log)."""
    sigma: float = Field(1.0, ge=0, le=5)
    """`lognormal`: standard deviation of the log."""
    min: int = Field(1, ge=1)
    """Lower clip (and `uniform` low end)."""
    max: int = Field(1_000_000, ge=1)
    """Upper clip (and `uniform` high end)."""
    alpha: float = Field(1.5, gt=1)
    """`zipf`: exponent."""

    @model_validator(mode="after")
    def _needs(self):
        if self.dist == "fixed" and self.value is None:
            raise ValueError("dist fixed needs `value`")
        if self.dist == "lognormal" and self.mean is None:
            raise ValueError("dist lognormal needs `mean`")
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self


class LengthsConfig(Section):
    prompt: LengthDist = LengthDist(dist="lognormal", mean=1000, sigma=1.0)
    """Prompt length distribution, tokens."""
    output: LengthDist = LengthDist(dist="lognormal", mean=250, sigma=1.0)
    """Output length distribution, tokens."""


class WorkloadConfig(Section):
    num_requests: int | None = Field(None, ge=1, le=50_000_000)
    """Number of requests to generate (or the cap on a trace)."""
    duration_s: float | None = Field(None, gt=0)
    """Generate arrivals for this long instead of a count."""
    arrival: ArrivalConfig = ArrivalConfig()
    """Arrival process."""
    lengths: LengthsConfig = LengthsConfig()
    """Prompt and output lengths."""

    @model_validator(mode="after")
    def _count_or_duration(self):
        if self.num_requests is None and self.duration_s is None:
            object.__setattr__(self, "num_requests", 1000)
        return self
