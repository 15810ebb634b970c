"""`power:` caps, clock limits and a cluster power budget; `pricing:` dollars and carbon."""

from pydantic import Field, model_validator

from servesim.config.base import Nested, Section


class PoolPowerConfig(Section):
    cap_w: float | None = Field(None, gt=0)
    """Power cap per GPU of this pool's instances, W (the board throttles its clock to stay under)."""
    clock_mhz: float | None = Field(None, gt=0)
    """SM clock limit of this pool's GPUs, MHz (needs the hardware's `max_clock_mhz`)."""


class PowerBudgetConfig(Section):
    budget_w: float = Field(gt=0)
    """Power the cluster is provisioned for, W (all boards); may be less than the sum of their TDPs."""
    interval_s: float = Field(1.0, ge=0.01, le=3600)
    """How often the controller reads the cluster's average power and acts, seconds (at least 10 ms:
    board telemetry itself updates about every 100 ms, and a shorter loop only multiplies events)."""
    engage_frac: float = Field(1.0, gt=0, le=2)
    """Cap when the last interval's power exceeds this fraction of the budget."""
    release_frac: float = Field(0.9, gt=0, le=2)
    """Lift the cap when the last interval's power falls below this fraction of the budget."""
    cap_w: float | None = Field(None, gt=0)
    """Per-GPU power cap applied while engaged, W."""
    clock_mhz: float | None = Field(None, gt=0)
    """SM clock limit applied while engaged, MHz (POLCA's frequency capping)."""
    pools: list[str] | None = None
    """Pools the controller may cap (default: every pool)."""

    @model_validator(mode="after")
    def _check(self):
        if self.cap_w is None and self.clock_mhz is None:
            raise ValueError("give cap_w or clock_mhz: what to apply when over the budget")
        if self.release_frac > self.engage_frac:
            raise ValueError("release_frac must not exceed engage_frac")
        return self


class PowerConfig(Section):
    profile: str | None = None
    """Power profile YAML (see docs/energy.md); default: the hardware family's shipped profile."""
    cap_w: float | None = Field(None, gt=0)
    """Power cap per GPU of every instance, W."""
    clock_mhz: float | None = Field(None, gt=0)
    """SM clock limit of every GPU, MHz."""
    pools: dict[str, Nested[PoolPowerConfig]] = {}
    """Per-pool caps and clock limits by pool name (`default`, `prefill`, `decode` or a
    `cluster.pools` name); they replace the cluster-wide values for that pool."""
    budget: Nested[PowerBudgetConfig] | None = None
    """A cluster power budget that caps instances while it is exceeded (POLCA-style)."""

    @property
    def limited(self) -> bool:
        """Whether any instance may run under a cap or clock limit."""
        return bool(
            self.cap_w or self.clock_mhz or self.budget
            or any(p.cap_w or p.clock_mhz for p in self.pools.values())
        )


class PricingConfig(Section):
    usd_per_gpu_hour: float | dict[str, float] | None = None
    """Rental price per GPU-hour: one number for every pool, or per hardware name; default the
    catalog's `usd_per_hour` of each device."""
    carbon_g_per_kwh: float = Field(387.0, ge=0, le=5000)
    """Grid carbon intensity, gCO2e per kWh. Default: US average, EIA 2020 (854 lb CO2/MWh)."""
    carbon_trace: str | None = None
    """CSV `time_s,g_per_kwh` (simulated seconds): intensity over time, each value holding until the
    next row; replaces `carbon_g_per_kwh`."""
    pue: float = Field(1.0, ge=1, le=5)
    """Power usage effectiveness: facility energy per unit of IT (GPU) energy."""

    @model_validator(mode="after")
    def _check(self):
        prices = self.usd_per_gpu_hour
        if isinstance(prices, dict) and any(v < 0 for v in prices.values()):
            raise ValueError("usd_per_gpu_hour: prices must be >= 0")
        if isinstance(prices, (int, float)) and prices < 0:
            raise ValueError("usd_per_gpu_hour must be >= 0")
        return self
