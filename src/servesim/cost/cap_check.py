"""The cap model against published power-cap and clock-limit points.

Each point (data/measurements/published/cap_points.csv, README there) is one step shape run on one
device under one cap or clock limit, with the latency ratio a publication reports against the same
step uncapped. The model's ratio is `PowerModel.step_time` under the limit over the cost model's
uncapped time, the same chain a capped instance runs in the simulator.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from servesim.catalog.specs import get_hardware, get_model
from servesim.core.errors import ConfigError, InputFileError
from servesim.core.files import read_text
from servesim.cost.base import StepShape
from servesim.cost.layout import Layout
from servesim.cost.power import PowerLimit, PowerModel, power_profile
from servesim.cost.roofline import RooflineCostModel
from servesim.cost.work import WorkModel

COLUMNS = ("point", "source", "location", "hardware", "model", "tp", "phase", "prompt_tokens", "batch",
           "context", "cap_w", "clock_mhz", "latency_ratio", "basis", "scored")
PHASES = ("prompt", "token")


@dataclass(frozen=True)
class CapPoint:
    point: str
    source: str
    location: str
    hardware: str
    model: str
    tp: int
    phase: str
    prompt_tokens: int
    batch: int
    context: int
    cap_w: float | None
    clock_mhz: float | None
    latency_ratio: float
    basis: str
    scored: bool

    def shape(self) -> StepShape:
        """A prompt point prefills `batch` prompts in one step; a token point decodes `batch`
        requests of `context` tokens each."""
        if self.phase == "prompt":
            return StepShape([(self.prompt_tokens, 0)] * self.batch, 0, 0, self.batch)
        return StepShape([], self.batch, self.batch * self.context, self.batch)


@dataclass(frozen=True)
class CapPrediction:
    point: CapPoint
    ratio: float
    """The model's capped over uncapped step time."""
    uncapped_w: float
    """Predicted power per GPU of the uncapped step."""
    clock_frac: float
    """Relative SM clock the model runs the capped step at."""

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.ratio - self.point.latency_ratio) / self.point.latency_ratio


def read_cap_points(path: str | Path) -> list[CapPoint]:
    """Rows of a published-points CSV; a malformed row exits naming the file and line."""
    p = Path(path)
    reader = csv.DictReader(read_text(p, "published cap points").splitlines())
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InputFileError(p, f"missing column(s) {', '.join(missing)}", 1)
    points = []
    for line, row in enumerate(reader, start=2):
        try:
            points.append(_cap_point(row))
        except (ValueError, ConfigError) as exc:
            raise InputFileError(p, str(exc), line) from None
    if not points:
        raise InputFileError(p, "no points")
    return points


def _number(row: dict, key: str, positive: bool = True) -> float | None:
    raw = (row.get(key) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{key}: expected a number, got {raw!r}") from None
    if not math.isfinite(value) or (positive and value <= 0) or value < 0:
        raise ValueError(f"{key}: expected a number {'> 0' if positive else '>= 0'}, got {raw!r}")
    return value


def _required(row: dict, key: str, positive: bool = True) -> float:
    value = _number(row, key, positive)
    if value is None:
        raise ValueError(f"{key}: expected a number, got ''")
    return value


def _cap_point(row: dict) -> CapPoint:
    phase = row["phase"].strip()
    if phase not in PHASES:
        raise ValueError(f"phase: expected one of {', '.join(PHASES)}, got {phase!r}")
    cap, clock = _number(row, "cap_w"), _number(row, "clock_mhz")
    if cap is None and clock is None:
        raise ValueError("cap_w, clock_mhz: give a cap, a clock limit or both")
    scored = row["scored"].strip()
    if scored not in ("yes", "no"):
        raise ValueError(f"scored: expected yes or no, got {scored!r}")
    get_hardware(row["hardware"].strip(), "hardware")
    get_model(row["model"].strip(), "model")
    return CapPoint(
        point=row["point"].strip(), source=row["source"].strip(), location=row["location"].strip(),
        hardware=row["hardware"].strip(), model=row["model"].strip(), tp=int(_required(row, "tp")),
        phase=phase, prompt_tokens=int(_required(row, "prompt_tokens")), batch=int(_required(row, "batch")),
        context=int(_required(row, "context", positive=False)), cap_w=cap, clock_mhz=clock,
        latency_ratio=_required(row, "latency_ratio"), basis=row["basis"].strip(), scored=scored == "yes",
    )


def predict(point: CapPoint, profile_path: str | Path | None = None) -> CapPrediction:
    """The model's latency ratio for one published point (default: the family's shipped profile)."""
    hw, model = get_hardware(point.hardware), get_model(point.model)
    profile = power_profile(hw.family, profile_path)
    cost = RooflineCostModel(model, hw, tp=point.tp)
    work = WorkModel(Layout(model, point.tp), cost.profile)
    clock = None if point.clock_mhz is None else point.clock_mhz / _max_clock(point, hw)
    limit = PowerLimit(cap_w=point.cap_w, clock_frac=clock)
    free = PowerModel(cost, work, hw, profile, tp=point.tp)
    capped = PowerModel(cost, work, hw, profile, tp=point.tp, limit=limit)
    shape = point.shape()
    seconds = cost.step_time(shape)
    return CapPrediction(
        point=point, ratio=capped.step_time(shape) / seconds,
        uncapped_w=free.step_energy(shape, seconds) / seconds / point.tp, clock_frac=capped.clock_of(shape),
    )


def _max_clock(point: CapPoint, hw) -> float:
    if not hw.max_clock_mhz:
        raise ConfigError("clock_mhz", f"{point.point}: {hw.name} has no max_clock_mhz in the catalog")
    return float(hw.max_clock_mhz)


def compare(points: list[CapPoint], profile_path: str | Path | None = None) -> list[CapPrediction]:
    return [predict(p, profile_path) for p in points]
