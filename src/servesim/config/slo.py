"""`slo.objectives`: named service-level objectives reported beside the default one.

An objective is a set of per-request limits; a request attains it when it completed and every limit
set holds. The kinds of objective published results use are combinations of these keys:
- absolute latencies (`ttft_s`, `tpot_s`, `e2e_s`, `norm_e2e_s`, `queue_s`);
- per-token deadlines (`tbt_s`: every gap between two tokens of the request within it);
- slowdowns against the request served alone (`ttft_slowdown`, `e2e_slowdown`; the isolated
  latency is priced by the cost model, see docs/metrics.md);
- per-class limits (`per_class: {CLASS: {...}}`: for the requests of a class, each key given there
  replaces the objective's).
"""

import re

from pydantic import Field, model_validator

from servesim.config.base import Nested, Section

NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
LIMIT_KEYS = ("ttft_s", "tpot_s", "e2e_s", "norm_e2e_s", "queue_s", "tbt_s", "ttft_slowdown",
              "e2e_slowdown")


class SLOLimits(Section):
    ttft_s: float | None = Field(None, gt=0)
    """Time to first token, seconds."""
    tpot_s: float | None = Field(None, gt=0)
    """Mean time per output token after the first, seconds."""
    e2e_s: float | None = Field(None, gt=0)
    """End-to-end latency, seconds."""
    norm_e2e_s: float | None = Field(None, gt=0)
    """End-to-end latency divided by output tokens, seconds per token."""
    queue_s: float | None = Field(None, ge=0)
    """Scheduling delay: arrival to the first step that computes the request, seconds."""
    tbt_s: float | None = Field(None, gt=0)
    """Per-token deadline: every gap between two consecutive tokens of the request, seconds."""
    ttft_slowdown: float | None = Field(None, ge=1)
    """TTFT divided by the request's TTFT when served alone."""
    e2e_slowdown: float | None = Field(None, ge=1)
    """End-to-end latency divided by the request's latency when served alone."""

    def limits(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in LIMIT_KEYS if getattr(self, k) is not None}


class SLOObjective(SLOLimits):
    per_class: dict[str, Nested[SLOLimits]] = {}
    """Limits for the requests of a class (a workload.classes name); each key given replaces the
    objective's for that class."""

    @model_validator(mode="after")
    def _some_limit(self):
        if not self.limits() and not any(c.limits() for c in self.per_class.values()):
            raise ValueError(f"an objective needs at least one of {', '.join(LIMIT_KEYS)}")
        return self

    @property
    def uses_slowdown(self) -> bool:
        keys = set(self.limits())
        for c in self.per_class.values():
            keys |= set(c.limits())
        return bool(keys & {"ttft_slowdown", "e2e_slowdown"})


def check_names(objectives: dict) -> dict:
    """Objective names become summary keys (`slo.objectives.NAME.attainment`): no dots."""
    for name in objectives:
        if not re.match(NAME_PATTERN, name):
            raise ValueError(f"objective name {name!r}: use letters, digits, '_' and '-'")
    return objectives

