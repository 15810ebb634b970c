"""`workload:` where requests come from: synthetic arrivals and lengths, real traces, classes, sessions."""

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from servesim.config.base import Component, Nested, Section
from servesim.core.errors import ConfigError


class RateSchedule(Section):
    """A time-varying arrival rate: `rate(t) = arrival.rate * factor(t)`."""

    kind: Literal["piecewise", "diurnal"]
    """`piecewise`: step factors at given times; `diurnal`: a cosine around 1."""
    points: list[tuple[float, float]] | None = None
    """`piecewise`: `[start_s, factor]` pairs, first at 0, times increasing; the last factor holds."""
    period_s: float = Field(86_400.0, gt=0)
    """`diurnal`: length of one cycle, seconds."""
    amplitude: float = Field(0.5, ge=0, le=1)
    """`diurnal`: relative swing; the factor runs between 1 - amplitude and 1 + amplitude."""
    peak_s: float = Field(0.0, ge=0)
    """`diurnal`: time of the daily peak within the period, seconds."""

    @model_validator(mode="after")
    def _check(self):
        if self.kind == "diurnal":
            return self
        pts = self.points
        if not pts:
            raise ValueError("piecewise rate_schedule needs `points: [[start_s, factor], ...]`")
        if pts[0][0] != 0:
            raise ValueError(f"the first point must start at 0 s, got {pts[0][0]}")
        if any(b[0] <= a[0] for a, b in zip(pts, pts[1:])):
            raise ValueError("point times must increase strictly")
        if any(f < 0 for _, f in pts) or not any(f > 0 for _, f in pts):
            raise ValueError("factors must be >= 0 and at least one > 0")
        return self


MAX_REQUESTS = 50_000_000
"""Most requests one run generates (a run holds every request in memory)."""


class ArrivalConfig(Section):
    process: Literal["poisson", "gamma", "weibull", "constant"] = "poisson"
    """Inter-arrival law."""
    rate: float = Field(10.0, gt=0, le=1e6)
    """Mean arrival rate, requests per second (with `sessions`: new conversations per second)."""
    cv: float = Field(1.0, ge=0.001, le=100)
    """Coefficient of variation of inter-arrival times (gamma, weibull); below 0.001 use `constant`."""
    rate_schedule: Nested[RateSchedule] | None = None
    """Optional time-varying rate (piecewise or diurnal), as factors of `rate`."""

    def peak_rate(self) -> float:
        """The highest rate the schedule reaches, requests per second."""
        s = self.rate_schedule
        if s is None:
            return self.rate
        if s.kind == "diurnal":
            return self.rate * (1 + s.amplitude)
        return self.rate * max(f for _, f in s.points or [(0.0, 1.0)])


MAX_COUNT = 1_000_000_000
"""Most a count of the workload (tokens, turns, calls, requests) may be: far past any model's
context, and inside the 64-bit integers the draws and sums are made in."""


class LengthDist(Section):
    dist: Literal["fixed", "uniform", "lognormal", "zipf"] = "fixed"
    """Distribution family of a token count."""
    value: int | None = Field(None, ge=1, le=MAX_COUNT)
    """`fixed`: the count."""
    mean: float | None = Field(None, gt=0, le=MAX_COUNT)
    """`lognormal`: mean of the distribution (not of its log)."""
    sigma: float = Field(1.0, ge=0, le=5)
    """`lognormal`: standard deviation of the log."""
    min: int = Field(1, ge=1, le=MAX_COUNT)
    """Lower clip (and `uniform` low end, and `zipf` unit)."""
    max: int = Field(1_000_000, ge=1, le=MAX_COUNT)
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


def _mean_count(d: LengthDist) -> float:
    """Rough mean of a count distribution (turns per conversation), for size checks."""
    if d.dist == "fixed":
        return float(d.value or 1)
    if d.dist == "uniform":
        return (d.min + d.max) / 2
    if d.dist == "lognormal":
        return min(float(d.mean or 1), d.max)
    return float(d.min)


class LengthsConfig(Section):
    prompt: Nested[LengthDist] = Field(
        default_factory=lambda: LengthDist(dist="lognormal", mean=1000, sigma=1.0)
    )
    """Prompt length distribution, tokens (with `sessions`: the new tokens of each turn)."""
    output: Nested[LengthDist] = Field(
        default_factory=lambda: LengthDist(dist="lognormal", mean=250, sigma=1.0)
    )
    """Output length distribution, tokens."""
    empirical: str | None = Field(None, min_length=1)
    """Resample joint (prompt, output) pairs from this trace or length file instead."""
    format: Component | None = None
    """Format of the `empirical` file (a reader name or `{name: ...}`); detected when left out."""

    @model_validator(mode="after")
    def _one_source(self):
        if self.empirical is None:
            if self.format is not None:
                raise ValueError("`format` applies to `empirical` only")
            return self
        # compared with the defaults, not `model_fields_set`, so a dumped config loads again
        defaults = LengthsConfig()
        changed = [k for k in ("prompt", "output") if getattr(self, k) != getattr(defaults, k)]
        if changed:
            raise ValueError(f"give either `empirical` or `{changed[0]}`, not both")
        return self


class TraceConfig(Section):
    path: str = Field(min_length=1)
    """Trace file (or ServeGen folder); relative to the working directory, then the config's folder."""
    format: Component | None = None
    """Reader (azure, mooncake, burstgpt, servegen, lengths, csv, `module:Class`, or
    `{name: ..., <params>}`); detected from the file when left out."""
    time_scale: float = Field(1.0, gt=0)
    """Multiplies the trace's clock: 0.5 replays twice as fast, 2 twice as slow."""
    rate: float | None = Field(None, gt=0)
    """Target mean rate, req/s: sets `time_scale` so the replayed window has this rate."""
    start_s: float = Field(0.0, ge=0)
    """Replay the trace from this time, seconds on the trace's clock (it becomes t = 0)."""
    duration_s: float | None = Field(None, gt=0)
    """Replay this long a window, seconds on the trace's clock (before `time_scale`)."""
    max_requests: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Replay at most this many requests of the window."""
    skip_bad_rows: bool = False
    """Drop malformed rows (counted per reason, warned on stderr) instead of failing."""
    block_size: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Tokens per prefix-hash block of the file (Mooncake: 512); the reader's default when left out."""
    columns: dict[str, str] | None = None
    """`csv` format: file column for arrival, prompt, output (and session, class, priority, ...)."""
    time_unit: Literal["s", "ms", "us", "ns"] = "s"
    """`csv` format: unit of the arrival column."""

    @model_validator(mode="after")
    def _scale_or_rate(self):
        if self.rate is not None and self.time_scale != 1.0:
            raise ValueError("give either `rate` or `time_scale`, not both")
        return self


class ThinkTime(Section):
    dist: Literal["exponential", "fixed", "lognormal", "uniform"] = "exponential"
    """Distribution of the pause between two turns of a conversation."""
    mean: float = Field(30.0, ge=0)
    """Mean think time, seconds (`fixed`: the value)."""
    sigma: float = Field(1.0, ge=0, le=5)
    """`lognormal`: standard deviation of the log."""
    min: float = Field(0.0, ge=0)
    """`uniform`: low end, seconds."""
    max: float = Field(60.0, ge=0)
    """`uniform`: high end, seconds."""


class SessionsConfig(Section):
    """Multi-turn conversations. Arrivals are open-loop: a turn arrives `think_time` after the
    previous turn's arrival, whether or not that turn has finished in the simulation."""

    turns: Nested[LengthDist] = Field(default_factory=lambda: LengthDist(dist="uniform", min=1, max=6))
    """Number of turns per conversation."""
    think_time: Nested[ThinkTime] = Field(default_factory=ThinkTime)
    """Time from one turn's arrival to the next turn's arrival, seconds."""
    system_prompt_tokens: int = Field(0, ge=0, le=MAX_COUNT)
    """Tokens of a system prompt shared by every conversation of this workload (or class)."""
    max_context_tokens: int | None = Field(None, ge=1, le=MAX_COUNT)
    """A conversation ends before a turn whose prompt plus output would exceed this."""
    hash_block_size: int = Field(16, ge=1, le=65536)
    """Tokens per prefix-hash block generated for the turns."""


class ProgramsConfig(Section):
    """Agentic programs: chains (or DAGs, with fan-out) of LLM calls separated by tool calls. Each
    call's prompt is the conversation so far plus the new tokens (a tool result); the next call
    arrives when its parents have finished plus a tool time, so arrivals depend on the serving
    (the sampled lengths and tool times never do). `workload.arrival` gives the program starts."""

    path: str | None = Field(None, min_length=1)
    """Recorded programs, JSONL (docs/kv.md): replayed instead of generating them."""
    num_programs: int = Field(200, ge=1, le=1_000_000)
    """Programs to generate."""
    calls: Nested[LengthDist] = Field(default_factory=lambda: LengthDist(dist="uniform", min=10, max=50))
    """LLM calls per program."""
    tool_time: Nested[ThinkTime] = Field(default_factory=lambda: ThinkTime(dist="uniform", min=0.5, max=10.0))
    """Tool-call time between a call's end and the next call, seconds."""
    system_prompt_tokens: int = Field(1000, ge=0, le=MAX_COUNT)
    """Tokens of the prompt every call of every program starts with."""
    new_tokens: Nested[LengthDist] = Field(
        default_factory=lambda: LengthDist(dist="lognormal", mean=300, sigma=0.8, max=8192))
    """Tokens a call adds to the conversation (the task, then each tool's result)."""
    output: Nested[LengthDist] = Field(
        default_factory=lambda: LengthDist(dist="lognormal", mean=120, sigma=0.8, max=2048))
    """Output tokens of a call."""
    fan_out: int = Field(1, ge=1, le=64)
    """Parallel calls at a fan-out step (they extend the same parent; the next call joins them)."""
    fan_out_prob: float = Field(0.0, ge=0, le=1)
    """Probability that a step fans out."""
    hash_block_size: int = Field(128, ge=1, le=65536)
    """Tokens per prefix-hash block generated for the calls (the unit of cache sharing; long
    conversations hash fast with coarser blocks)."""


class ClassSLO(Section):
    ttft_s: float | None = Field(None, gt=0)
    """Time-to-first-token objective of this class; the global `slo.ttft_s` when left out."""
    tpot_s: float | None = Field(None, gt=0)
    """Time-per-output-token objective of this class; the global `slo.tpot_s` when left out."""


class ClassConfig(Section):
    name: str = Field(min_length=1)
    """Class name (unique); written to requests.csv's `class` column."""
    priority: int = 0
    """Scheduling priority (higher is more urgent for priority-aware schedulers)."""
    slo: Nested[ClassSLO] = Field(default_factory=ClassSLO)
    """Per-class latency objectives."""
    arrival: Nested[ArrivalConfig] | None = None
    """Arrival process of this class; the workload's `arrival` when left out."""
    lengths: Nested[LengthsConfig] | None = None
    """Lengths of this class; the workload's `lengths` when left out."""
    sessions: Nested[SessionsConfig] | None = None
    """Multi-turn conversations of this class; the workload's `sessions` when left out."""
    trace: Nested[TraceConfig] | None = None
    """Replay a trace as this class instead of generating arrivals."""


class LengthFilter(Section):
    """Caps on request lengths and what happens to requests beyond them (workload/filters.py)."""

    max_total_tokens: Annotated[int, Field(ge=2)] | Literal["model"] | None = None
    """Largest prompt + output, tokens; `model`: the model's context length."""
    max_prompt_tokens: int | None = Field(None, ge=1, le=MAX_COUNT)
    """Largest prompt, tokens."""
    action: Literal["drop", "clip", "reject"] = "drop"
    """`drop`: the request never arrives; `clip`: its prompt (then output) is cut to fit; `reject`:
    it arrives and is rejected (`exceeds_length_filter`)."""

    @model_validator(mode="after")
    def _some_limit(self):
        if self.max_total_tokens is None and self.max_prompt_tokens is None:
            raise ValueError("give max_total_tokens and/or max_prompt_tokens")
        return self


class WorkloadConfig(Section):
    num_requests: int | None = Field(None, ge=1, le=MAX_REQUESTS)
    """Number of requests (the first ones in time; with a trace, a cap)."""
    duration_s: float | None = Field(None, gt=0)
    """Keep the requests that arrive within this many seconds instead of (or besides) a count."""
    rate: float | None = Field(None, gt=0, le=1e6)
    """Overall mean arrival rate, req/s: sets `arrival.rate`, or rescales a trace's clock, or scales
    every class in proportion. An alias that `--set workload.rate=...` and capacity searches use."""
    arrival: Nested[ArrivalConfig] = Field(default_factory=ArrivalConfig)
    """Arrival process."""
    lengths: Nested[LengthsConfig] = Field(default_factory=LengthsConfig)
    """Prompt and output lengths (distributions or an empirical file)."""
    trace: Nested[TraceConfig] | None = None
    """Replay a real trace (arrivals and lengths) instead of generating it."""
    sessions: Nested[SessionsConfig] | None = None
    """Multi-turn conversations: each arrival starts one."""
    classes: list[Nested[ClassConfig]] = []
    """Several request classes, each with its own arrivals, lengths, SLO and priority."""
    programs: Nested[ProgramsConfig] | None = None
    """Agentic programs instead of independent requests (with `arrival`; no trace, sessions or
    classes)."""
    filter: Nested[LengthFilter] | None = None
    """Drop, clip or reject requests longer than a limit (counted in summary.json `workload`)."""

    @field_validator("classes")
    @classmethod
    def _unique_names(cls, classes):
        names = [c.name for c in classes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"class names must be unique, repeated: {', '.join(dup)}")
        return classes

    @model_validator(mode="after")
    def _count_or_duration(self):
        if self.programs is not None and (self.classes or self.trace or self.sessions or self.filter):
            raise ValueError(
                "`programs` cannot be combined with `trace`, `sessions`, `classes` or `filter`"
            )
        if self.classes and self.trace is not None:
            raise ValueError("with `classes`, give each class its own `trace`")
        if self.trace is not None and self.sessions is not None:
            raise ValueError("`sessions` apply to generated arrivals, not to a `trace`")
        for c in self.classes:
            if c.trace is not None and c.sessions is not None:
                raise ValueError(
                    f"class {c.name!r}: `sessions` apply to generated arrivals, not to a `trace`"
                )
        if self.num_requests is None and self.duration_s is None and self.has_synthetic_source:
            object.__setattr__(self, "num_requests", 1000)
        if self.num_requests is None and self.duration_s is not None:
            expected = self.duration_s * self._peak_request_rate()
            if expected > MAX_REQUESTS:
                raise ConfigError(
                    "workload.duration_s",
                    f"duration_s x rate asks for up to {expected:.3g} requests, more than the "
                    f"{MAX_REQUESTS:,} one run holds; shorten duration_s, lower the rate or set "
                    "num_requests",
                )
        return self

    def _peak_request_rate(self) -> float:
        """Generated requests per second at the peak of the schedules (turns included)."""
        def of(arrival: ArrivalConfig, sessions: SessionsConfig | None) -> float:
            return arrival.peak_rate() * (_mean_count(sessions.turns) if sessions else 1.0)

        if not self.classes:
            return 0.0 if self.trace is not None else of(self.arrival, self.sessions)
        return sum(
            of(c.arrival or self.arrival, c.sessions or self.sessions)
            for c in self.classes if c.trace is None
        )

    @property
    def has_synthetic_source(self) -> bool:
        """True when some arrivals are generated (they need a count or a duration to stop)."""
        if self.classes:
            return any(c.trace is None for c in self.classes)
        return self.trace is None and self.programs is None
