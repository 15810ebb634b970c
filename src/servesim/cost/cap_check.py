"""The cap model against published power-cap and clock-limit points.

Each point (data/measurements/published/cap_points.csv, README there) is one step shape run on one
device under one cap or clock limit, with the latency ratio a publication reports against the same
step at a reference setting (uncapped, or the publication's own baseline cap or clock) and, where
published, the power ratio. The model's ratios come from `PowerModel.step_time` and `step_energy`
under both settings, the same chain a capped instance runs in the simulator.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from servesim.catalog.specs import get_hardware, get_model
from servesim.core.errors import ConfigError, InputFileError
from servesim.core.files import read_text
from servesim.cost.base import StepShape
from servesim.cost.layout import Layout
from servesim.cost.power import PowerLimit, PowerModel, PowerProfile, power_profile
from servesim.cost.roofline import RooflineCostModel
from servesim.cost.work import WorkModel

COLUMNS = ("point", "source", "location", "hardware", "model", "tp", "phase", "prompt_tokens", "batch",
           "context", "cap_w", "clock_mhz", "latency_ratio", "basis", "scored")
OPTIONAL = ("base_cap_w", "base_clock_mhz", "board_limit_w", "power_ratio", "power_scored", "split")
"""Optional columns: the reference setting (default: uncapped), the board's own power limit where the
publication's boards ran above the catalog TDP, the published power ratio and whether it is held to
the tolerance (default yes), and `fit` for the rows the power profile's core-rail share is chosen on
(`check` or empty: held out)."""
PHASES = ("prompt", "token")
SPLITS = ("fit", "check")


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
    base_cap_w: float | None = None
    base_clock_mhz: float | None = None
    board_limit_w: float | None = None
    power_ratio: float | None = None
    """Published power under the limit over power at the reference, where the source gives it."""
    power_scored: bool = True
    split: str = "check"

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
    """The model's step time under the limit over that at the reference setting."""
    uncapped_w: float
    """Predicted power per GPU of the step at the reference setting."""
    clock_frac: float
    """Relative SM clock the model runs the limited step at."""
    power_ratio: float = 1.0
    """The model's power per GPU under the limit over that at the reference setting."""

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.ratio - self.point.latency_ratio) / self.point.latency_ratio

    @property
    def power_error_pct(self) -> float | None:
        published = self.point.power_ratio
        return None if published is None else 100.0 * (self.power_ratio - published) / published


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
    power_scored = (row.get("power_scored") or "").strip() or "yes"
    if power_scored not in ("yes", "no"):
        raise ValueError(f"power_scored: expected yes, no or empty, got {power_scored!r}")
    split = (row.get("split") or "").strip() or "check"
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {', '.join(SPLITS)} or empty, got {split!r}")
    get_hardware(row["hardware"].strip(), "hardware")
    get_model(row["model"].strip(), "model")
    return CapPoint(
        point=row["point"].strip(), source=row["source"].strip(), location=row["location"].strip(),
        hardware=row["hardware"].strip(), model=row["model"].strip(), tp=int(_required(row, "tp")),
        phase=phase, prompt_tokens=int(_required(row, "prompt_tokens")), batch=int(_required(row, "batch")),
        context=int(_required(row, "context", positive=False)), cap_w=cap, clock_mhz=clock,
        latency_ratio=_required(row, "latency_ratio"), basis=row["basis"].strip(), scored=scored == "yes",
        base_cap_w=_number(row, "base_cap_w"), base_clock_mhz=_number(row, "base_clock_mhz"),
        board_limit_w=_number(row, "board_limit_w"), power_ratio=_number(row, "power_ratio"),
        power_scored=power_scored == "yes", split=split,
    )


def predict(point: CapPoint, profile: PowerProfile | str | Path | None = None) -> CapPrediction:
    """The model's ratios for one published point (default: the family's shipped profile; a profile
    or the path of a profile file otherwise)."""
    hw, model = get_hardware(point.hardware), get_model(point.model)
    if not isinstance(profile, PowerProfile):
        profile = power_profile(hw.family, profile)
    cost = RooflineCostModel(model, hw, tp=point.tp)
    work = WorkModel(Layout(model, point.tp), cost.profile)
    shape = point.shape()

    def run(cap_w: float | None, clock_mhz: float | None) -> tuple[float, float, float]:
        clock = None if clock_mhz is None else clock_mhz / _max_clock(point, hw)
        limit = PowerLimit(cap_w=cap_w, clock_frac=clock)
        power = PowerModel(cost, work, hw, profile, tp=point.tp, limit=limit,
                           board_limit_w=point.board_limit_w)
        seconds = power.step_time(shape)  # the cost model's own time when nothing limits the step
        watts = power.step_energy(shape, seconds) / seconds / point.tp
        return seconds, watts, power.clock_of(shape) if limit.active else 1.0

    seconds, watts, clock_frac = run(point.cap_w, point.clock_mhz)
    base_s, base_w, _ = run(point.base_cap_w, point.base_clock_mhz)
    return CapPrediction(point=point, ratio=seconds / base_s, uncapped_w=base_w, clock_frac=clock_frac,
                         power_ratio=watts / base_w)


def _max_clock(point: CapPoint, hw) -> float:
    if not hw.max_clock_mhz:
        raise ConfigError("clock_mhz", f"{point.point}: {hw.name} has no max_clock_mhz in the catalog")
    return float(hw.max_clock_mhz)


def choose_core_share(
    refit: Callable[[float], PowerProfile], points: list[CapPoint], shares: Sequence[float],
) -> tuple[float, float]:
    """(share, latency MAPE %): the core-rail byte share whose refitted profile best predicts the
    points marked `fit`; the rest stay held out. `refit(share)` returns the family's profile fitted
    with that share (the H200 loops cannot place it: they ran at the board's own clocks)."""
    fit_points = [p for p in points if p.split == "fit"]
    if not fit_points:
        raise ConfigError("cap points", "no point is marked split=fit to choose the core-rail share on")
    scores = [(float(np.mean([abs(r.error_pct) for r in compare(fit_points, refit(s))])), s) for s in shares]
    score, share = min(scores)
    return share, score


def compare(points: list[CapPoint], profile: PowerProfile | str | Path | None = None) -> list[CapPrediction]:
    return [predict(p, profile) for p in points]
