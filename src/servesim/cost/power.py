"""Power and energy of engine steps: the time model's sibling, priced in joules.

A GPU running a step draws a floor (idle power plus the clocks' own switching, which scales with the
SM clock) and, on top, energy per unit of work: per tensor FLOP at the GEMM datatype's rate and per
byte moved in HBM or over the link (an energy roofline: Choi et al., IPDPS 2013):

    P = TDP · [ idle + active · g(φ) ]
        + TDP · [ compute · v(φ)² · F / peak + memory · m(φ) · (B + B_link) / BW ] / T

F, B are the step's FLOPs and bytes (`cost.work`), T its seconds (the time model), `peak` and `BW`
the spec sheet's FLOP/s and HBM bandwidth, and the four fractions of TDP the family's fitted power
profile (`power_profiles/<family>.yaml`). φ is the SM clock relative to its maximum, v(φ) the relative
core voltage (linear from `voltage_floor` at zero clock to 1) and g(φ) = φ · v(φ)²: dynamic power of
switching logic; m(φ) = 1 - s + s · v(φ)²: of the energy per HBM byte, a share s
(`memory_core_share`: L2, crossbar, load/store paths) sits on the core rail and falls with v(φ)²;
the DRAM's own share does not depend on the clock.

Default state: the time model's seconds are as calibrated, at φ = 1; a step whose predicted power
exceeds the board limit (TDP) runs at the limit, i.e. the clock the firmware would pick, which the
calibrated time already reflects. Under a user power cap or clock limit the step runs at the highest
clock φ that meets both: its compute-bound seconds stretch by 1/φ, memory-bound seconds only below
`memory_clock_knee` (loads can no longer be issued fast enough), communication and host overhead not
at all. The clock is solved per step from the step's own breakdown, so capped prefill (compute-bound,
near TDP) slows while capped decode (memory-bound, far below TDP) runs as before. docs/energy.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from servesim.catalog.specs import HardwareSpec
from servesim.core.errors import ConfigError, InputFileError
from servesim.core.files import read_yaml
from servesim.core.sums import pairwise_sum
from servesim.cost.base import CostModel, StepCost, StepShape
from servesim.cost.work import WorkModel

POWER_PROFILE_DIR = Path(__file__).parent / "power_profiles"
_SOLVE_STEPS = 30
_CONTEXT_GRID = np.concatenate(([0.0], np.geomspace(8.0, 2.0**18, 64)))
"""Mean contexts per decode at which a capped decode step's clock is solved (then interpolated)."""
MIN_CLOCK_FRAC = 0.1
"""Lowest SM clock a cap may force, relative to the maximum (~200 MHz of ~2 GHz on Hopper)."""


@dataclass(frozen=True)
class PowerProfile:
    """A device family's power model: idle, active and compute shares of TDP, and clock scaling."""

    idle_frac: float = 0.18
    """Board power of a device with nothing running, as a fraction of TDP, where the catalog has no
    measured `idle_w`."""
    active_frac: float = 0.15
    """Extra board power while a step runs at full clock but does no work (clock tree, schedulers,
    launch gaps), fraction of TDP; scales with g(φ) under a clock limit."""
    compute_frac: float = 0.8
    """Extra power at the spec sheet's peak tensor FLOP/s, fraction of TDP (scales with v(φ)²)."""
    memory_frac: float = 0.45
    """Extra power at the spec sheet's HBM bandwidth, fraction of TDP."""
    memory_core_share: float = 0.0
    """Share of that HBM-traffic power drawn on the core rail (L2, crossbar, the SMs' load/store
    paths), which scales with v(φ)² as FLOPs do; the rest (the DRAM and its interface) does not
    depend on the SM clock. 0: all of it clock-independent."""
    voltage_floor: float = 0.6
    """Relative core voltage extrapolated to zero clock: v(φ) = floor + (1 - floor) φ."""
    memory_clock_knee: float = 0.3
    """Relative clock below which memory-bound kernels slow down as knee / φ."""
    source: str = ""
    """What the profile was fitted on."""

    def v(self, phi):
        return self.voltage_floor + (1.0 - self.voltage_floor) * phi

    def g(self, phi):
        return phi * self.v(phi) ** 2

    def byte_scale(self, phi):
        """Relative energy per byte at clock φ: the core-rail share falls with v(φ)²."""
        return 1.0 - self.memory_core_share + self.memory_core_share * self.v(phi) ** 2


def board_idle_w(hardware: HardwareSpec, profile: PowerProfile) -> float:
    """One board's idle power: the catalog's measured value, else the profile's fraction of TDP."""
    if hardware.idle_w is not None:
        return float(hardware.idle_w)
    return profile.idle_frac * float(hardware.tdp_w or 0.0)


def board_watts(profile: PowerProfile, hardware: HardwareSpec, phi, flops_per_s, bytes_per_s, dtype="bf16"):
    """One board's power at relative clock phi doing `flops_per_s` and moving `bytes_per_s` (the
    equation of the module doc; the fit and the power model both use it)."""
    tdp = float(hardware.tdp_w)  # type: ignore[arg-type]  # a priced board has a TDP
    return (
        board_idle_w(hardware, profile)
        + tdp * profile.active_frac * profile.g(phi)
        + tdp * profile.compute_frac * profile.v(phi) ** 2 * flops_per_s / hardware.peak_flops(dtype)
        + tdp * profile.memory_frac * profile.byte_scale(phi) * bytes_per_s / hardware.hbm_bytes_per_s
    )


def power_profile(family: str, path: str | Path | None = None) -> PowerProfile:
    """A profile file, else the family's shipped one, else `generic`."""
    if path is not None:
        return load_power_profile(path)
    for name in (family, "generic"):
        p = POWER_PROFILE_DIR / f"{name}.yaml"
        if p.exists():
            return load_power_profile(p)
    # a broken install: never price energy silently with uncalibrated defaults
    raise RuntimeError(f"the shipped power profiles are missing from {POWER_PROFILE_DIR}; reinstall servesim")


@lru_cache(maxsize=32)
def _load(path: str) -> PowerProfile:
    p = Path(path)
    data = read_yaml(p, "power profile")
    params = (data or {}).get("parameters") if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise InputFileError(p, "expected a mapping under 'parameters'")
    known = {f.name for f in fields(PowerProfile)}
    for key, value in params.items():
        if key not in known:
            raise InputFileError(p, f"parameters.{key}: unknown key; valid: {', '.join(sorted(known))}")
        if key != "source" and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
            raise InputFileError(p, f"parameters.{key}: expected a number >= 0, got {value!r}")
        if key == "memory_core_share" and value > 1:
            raise InputFileError(p, f"parameters.{key}: expected a share between 0 and 1, got {value!r}")
    return PowerProfile(**params)


def load_power_profile(path: str | Path) -> PowerProfile:
    return _load(str(Path(path).resolve()))


def dump_power_profile(profile: PowerProfile, header: str = "") -> str:
    lines = "".join(f"# {line}\n" for line in header.splitlines())
    return lines + yaml.safe_dump({"parameters": asdict(profile)}, sort_keys=False)


@dataclass
class PowerLimit:
    """What an instance may draw: a per-GPU cap (W) and an SM clock limit (fraction of maximum).
    Mutable: a cluster power budget tightens and relaxes it while the simulation runs."""

    cap_w: float | None = None
    clock_frac: float | None = None

    @property
    def active(self) -> bool:
        return self.cap_w is not None or self.clock_frac is not None


def _total(seconds: np.ndarray | list, steps: int) -> float:
    """Sum of the first `steps` durations, as numpy sums the array slice (a list: bit for bit)."""
    if isinstance(seconds, list):
        return pairwise_sum(seconds[:steps])
    return float(np.add.reduce(seconds[:steps]))  # (`ndarray.sum` without its Python wrapper)


class PowerModel:
    """Energy (and, under a cap or clock limit, duration) of an instance's steps.

    `num_gpus` = tp x pp boards draw the floor for the whole step; the work is done by `tp` ranks.
    `board_limit_w` is the board's own power limit when it differs from the TDP that scales the
    profile (a board sold in a higher-power configuration); default the TDP.
    """

    def __init__(
        self, cost_model: CostModel, work: WorkModel, hardware: HardwareSpec, profile: PowerProfile,
        tp: int = 1, pp: int = 1, limit: PowerLimit | None = None, board_limit_w: float | None = None,
    ):
        if not hardware.tdp_w:
            raise ConfigError("hardware.tdp_w", f"{hardware.name} has no TDP: the power model needs one")
        self.cost_model, self.work_model, self.profile = cost_model, work, profile
        self.hardware, self.tdp = hardware, float(hardware.tdp_w)
        self.num_gpus, self.tp = tp * pp, tp
        self.limit = limit or PowerLimit()
        pr = profile
        self.gpu_idle_w = board_idle_w(hardware, profile)
        self.idle_w = self.num_gpus * self.gpu_idle_w
        """Instance power with nothing running."""
        self._floor_w = self.idle_w + self.num_gpus * self.tdp * pr.active_frac
        self._j_per_flop = tp * self.tdp * pr.compute_frac / hardware.peak_flops(work.layout.gemm_dtype)
        self._j_per_byte = tp * self.tdp * pr.memory_frac / hardware.hbm_bytes_per_s
        self.board_limit_w = float(board_limit_w or self.tdp)
        self._max_w = self.num_gpus * self.board_limit_w
        model = work.model
        self._chunk_work_written = not (model.sliding_window or model.is_mla)
        """`WorkModel.chunk_step_work` writes the steps' work out (not for a sliding window, MLA)."""
        self._split_cache: dict[int, tuple] = {}
        self._clock_cache: dict[tuple, tuple] = {}
        self._energy_cache: dict[int, tuple[float, float]] = {}
        self._memo: tuple = (None, None)
        """The last capped step or run (the engine asks for its time, then for its energy)."""

    # -- default state: energy of a step whose duration the time model gave -----------------------------
    def step_energy(self, shape: StepShape, seconds: float) -> float:
        """Joules of one step lasting `seconds` (at the clock the current limit allows)."""
        if self.limit.active:
            return self._capped(shape)[1]
        flops, hbm, link = self.work_model.work_parts(shape)
        joules = self._floor_w * seconds + self._j_per_flop * flops + self._j_per_byte * (hbm + link)
        return min(joules, self._max_w * seconds)  # the board limit: the firmware throttles

    def chunk_step_energies(
        self, chunk: int, priors: list[int], num_decodes: int, ctx_sums: list[int],
        seconds: list[float], last: int = 0,
    ) -> list[float] | None:
        """Joules of the steps `RooflineCostModel.chunk_step_times` prices (`last` as there),
        lasting `seconds`: `step_energy` of each, float for float. None under a cap or clock
        limit (the clock is solved per step) or where the work is not written out (a sliding
        window, MLA)."""
        if self.limit.active or not self._chunk_work_written:
            return None
        flops, moved = self.work_model.chunk_step_work(chunk, priors, num_decodes, ctx_sums, last)
        floor, jf, jb, top = self._floor_w, self._j_per_flop, self._j_per_byte, self._max_w
        out: list[float] = []
        for j in range(len(seconds)):  # (indexed: compiled, zip is a generic iterator)
            s = seconds[j]
            joules = floor * s + jf * flops[j] + jb * moved[j]
            out.append(joules if joules < top * s else top * s)
        return out

    def decode_energies(
        self, num_decodes: int, ctx_sums: np.ndarray | Sequence, seconds: np.ndarray | Sequence
    ) -> np.ndarray:
        """Joules of consecutive pure-decode steps (as `CostModel.decode_step_times`)."""
        ctx = np.asarray(ctx_sums, dtype=np.float64)
        if self.limit.active:
            return self._capped_decode(num_decodes, ctx)[1]
        f0, f1, b0, b1, link = self.work_model.decode_coeffs(num_decodes)
        return self._default_energy(np.asarray(seconds), f0 + f1 * ctx, b0 + b1 * ctx + link)

    def decode_run_energy(
        self, num_decodes: int, ctx_sums: np.ndarray | Sequence, seconds: np.ndarray | list, steps: int
    ) -> float:
        """Joules of the first `steps` steps of a decode run (as `decode_energies(...)[:steps].sum()`).
        Arrays, or sequences and a list of seconds for a short run priced in plain Python (the
        same joules, bit for bit).

        Uncapped, power is monotone along a run (work and time are both linear in the context), so
        its two ends tell whether every step, none or some run at the board limit; in the first two
        cases the sum has a closed form: O(1) however long the run."""
        if steps <= 0:
            return 0.0
        if self.limit.active:
            return float(self.decode_energies(num_decodes, ctx_sums[:steps], seconds[:steps]).sum())
        e0, e1 = self._run_coeffs(num_decodes)
        floor, top = self._floor_w, self._max_w
        c0, c1 = float(ctx_sums[0]), float(ctx_sums[steps - 1])
        t0, t1 = float(seconds[0]), float(seconds[steps - 1])
        over0 = floor * t0 + e0 + e1 * c0 > top * t0
        over1 = floor * t1 + e0 + e1 * c1 > top * t1
        busy = t0 if steps == 1 else _total(seconds, steps)
        if over0 and over1:
            return top * busy
        if over0 or over1:
            return float(self.decode_energies(num_decodes, ctx_sums[:steps], seconds[:steps]).sum())
        return floor * busy + e0 * steps + e1 * (c0 + c1) * steps / 2  # contexts grow linearly

    def _run_coeffs(self, n: int) -> tuple[float, float]:
        """Dynamic joules of a pure-decode step of n requests: e0 + e1 x context sum."""
        hit = self._energy_cache.get(n)
        if hit is None:
            f0, f1, b0, b1, link = self.work_model.decode_coeffs(n)
            jf, jb = self._j_per_flop, self._j_per_byte
            hit = self._energy_cache[n] = (jf * f0 + jb * (b0 + link), jf * f1 + jb * b1)
        return hit

    def _default_energy(self, seconds, flops, nbytes):
        dynamic = self._j_per_flop * flops + self._j_per_byte * nbytes
        joules = self._floor_w * seconds + dynamic
        return np.minimum(joules, self._max_w * seconds)  # the board limit: the firmware throttles

    # -- capped or clock-limited: the clock is solved per step ----------------------------------------------
    def step_time(self, shape: StepShape) -> float:
        if not self.limit.active:
            return self.cost_model.step_time(shape)
        return self._capped(shape)[0]

    def decode_step_times(
        self, num_decodes: int, ctx_sums: np.ndarray, max_ctxs: np.ndarray | None = None
    ) -> np.ndarray:
        """Uncapped: the cost model's. Capped: solved on the context sum (the longest context of a
        step, which some decode kernels wait for, is not part of the clock solution)."""
        if not self.limit.active:
            return self.cost_model.decode_step_times(num_decodes, ctx_sums, max_ctxs)
        return self._capped_decode(num_decodes, np.asarray(ctx_sums, dtype=np.float64))[0]

    def clock_of(self, shape: StepShape) -> float:
        """Relative SM clock the step runs at under the current limit (1 = maximum)."""
        c = self.cost_model.breakdown(shape)
        w = self.work_model.work(shape)
        return float(self._solve(*self._parts(c), w.flops, w.hbm_bytes + w.link_bytes)[0])

    def _capped(self, shape: StepShape) -> tuple[float, float]:
        key = (tuple(shape.prefill_chunks), shape.num_decodes, shape.decode_ctx_sum,
               shape.num_logit_tokens, self.limit.cap_w, self.limit.clock_frac)
        if self._memo[0] == key:
            return self._memo[1]
        c = self.cost_model.breakdown(shape)
        w = self.work_model.work(shape)
        _, seconds, joules = self._solve(*self._parts(c), w.flops, w.hbm_bytes + w.link_bytes)
        self._memo = (key, (float(seconds), float(joules)))
        return self._memo[1]

    def _capped_decode(self, n: int, ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-bound seconds and work are linear in the context sum, so the clock is a smooth
        function of it: solved once per batch size on a grid of contexts, interpolated per step."""
        key = (n, float(ctx[0]) if len(ctx) else 0.0, self.limit.cap_w, self.limit.clock_frac)
        memo_key, memo = self._memo
        if memo_key == key and len(memo[2]) >= len(ctx) and np.array_equal(memo[2][: len(ctx)], ctx):
            return memo[0][: len(ctx)], memo[1][: len(ctx)]
        grid, phi_grid = self._decode_clocks(n)
        args = self._decode_args(n, ctx)
        seconds, joules = self._at_clock(*args, np.interp(ctx, grid, phi_grid))  # type: ignore[call-arg]
        result = (np.asarray(seconds, dtype=float), np.asarray(joules, dtype=float), np.array(ctx))
        self._memo = (key, result)
        return result[0], result[1]

    def _decode_args(self, n: int, ctx: np.ndarray) -> tuple[Any, ...]:
        """(compute s, memory s, other s, hidden FLOP s, FLOPs, bytes) of pure-decode steps with context
        sums ctx."""
        lo, hi = self._decode_split(n)
        f0, f1, b0, b1, link = self.work_model.decode_coeffs(n)
        parts = [a + (b - a) * (ctx / 1e6) for a, b in zip(lo, hi)]
        return (*parts, f0 + f1 * ctx, b0 + b1 * ctx + link)

    def _decode_clocks(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        key = (n, self.limit.cap_w, self.limit.clock_frac)
        hit = self._clock_cache.get(key)
        if hit is None:
            grid = n * _CONTEXT_GRID
            hit = self._clock_cache[key] = (grid, self._solve(*self._decode_args(n, grid))[0])
        return hit

    def _decode_split(self, n: int):
        hit = self._split_cache.get(n)
        if hit is None:
            lo = self._parts(self.cost_model.breakdown(StepShape([], n, 0, n)))
            hi = self._parts(self.cost_model.breakdown(StepShape([], n, 1_000_000, n)))
            hit = self._split_cache[n] = (lo, hi)
        return hit

    @staticmethod
    def _parts(c: StepCost) -> tuple[float, float, float, float]:
        """(compute-bound s, memory-bound s, clock-independent s: communication and overhead, FLOP s
        hidden under the memory-bound s)."""
        return c.compute_s, c.memory_s, c.total_s - c.compute_s - c.memory_s, c.hidden_compute_s

    def _solve(self, compute_s, memory_s, other_s, hidden_s, flops, nbytes):
        """Highest clock within the board limit, the cap and the clock limit: (φ, seconds, joules)."""
        at = self._evaluator(compute_s, memory_s, other_s, hidden_s, flops, nbytes)
        ones = np.ones(np.broadcast(compute_s, flops).shape)
        # The default clock: the time model's seconds hold there; above the board limit, lower.
        base = self._highest(lambda p: at(p, p)[1] - self._max_w, ones)
        limit_w = self.board_limit_w
        per_gpu = limit_w if self.limit.cap_w is None else min(self.limit.cap_w, limit_w)
        top = base if self.limit.clock_frac is None else np.minimum(base, self.limit.clock_frac)
        phi = self._highest(lambda p: at(p, base)[1] - per_gpu * self.num_gpus, top)
        seconds, watts = at(phi, base)
        return phi, seconds, watts * seconds

    def _at_clock(self, compute_s, memory_s, other_s, hidden_s, flops, nbytes, phi):
        """(seconds, joules) at a given clock (the default clock taken as the board limit's)."""
        at = self._evaluator(compute_s, memory_s, other_s, hidden_s, flops, nbytes)
        base = self._highest(lambda p: at(p, p)[1] - self._max_w, np.ones_like(phi))
        seconds, watts = at(np.minimum(phi, base), base)
        return seconds, watts * seconds

    def _evaluator(self, compute_s, memory_s, other_s, hidden_s, flops, nbytes):
        """at(φ, base): seconds and watts at clock φ, the calibrated step taking its time at `base`."""
        pr = self.profile
        values = (compute_s, memory_s, other_s, hidden_s, flops, nbytes)
        scalar = all(np.ndim(x) == 0 for x in values)
        # One step: plain floats, as numpy's per-call overhead dominates such small sums.
        convert = float if scalar else (lambda x: np.asarray(x, dtype=float))
        compute_s, memory_s, other_s, hidden_s, flops, nbytes = (convert(x) for x in values)
        larger = max if scalar else np.maximum
        byte_j = self._j_per_byte * nbytes
        core_byte_j = byte_j * pr.memory_core_share  # on the core rail: falls with v(φ)² like FLOPs
        hbm_byte_j = byte_j - core_byte_j
        flop_j = self._j_per_flop * flops
        active_w = self.num_gpus * self.tdp * pr.active_frac
        knee, floor = pr.memory_clock_knee, pr.voltage_floor

        def at(phi, base):
            # A memory-bound operator turns compute-bound once the clock falls below its ridge.
            memory = larger(memory_s * larger(1.0, knee / phi), hidden_s * base / phi)
            seconds = compute_s * base / phi + memory + other_s
            seconds = larger(seconds, 1e-12)
            v = floor + (1.0 - floor) * phi
            dynamic_j = (flop_j + core_byte_j) * v * v + hbm_byte_j
            watts = self.idle_w + active_w * phi * v * v + dynamic_j / seconds
            return seconds, watts

        return at

    @staticmethod
    def _highest(excess, top: np.ndarray) -> np.ndarray | float:
        """Largest φ in [MIN_CLOCK_FRAC, top] with excess(φ) <= 0; excess rises with φ.

        Regula falsi with the Illinois modification on [MIN_CLOCK_FRAC, top]; the lower end of the
        bracket is always feasible and is what is returned, so the result never exceeds the limit."""
        if np.ndim(top) == 0:
            return PowerModel._highest_scalar(excess, float(top))
        top = np.maximum(np.asarray(top, dtype=float), MIN_CLOCK_FRAC)
        f_top = excess(top)
        if np.all(f_top <= 0):
            return top
        lo, hi = np.full_like(top, MIN_CLOCK_FRAC), top.copy()
        f_lo, f_hi = excess(lo), f_top.copy()
        active = (f_top > 0) & (f_lo <= 0)
        last = np.zeros(top.shape, dtype=bool)
        for i in range(_SOLVE_STEPS):
            if not np.any(active & (hi - lo > 1e-6)):
                break
            mid = np.where(active, hi - f_hi * (hi - lo) / np.where(active, f_hi - f_lo, 1.0), lo)
            mid = np.clip(mid, lo, hi)
            f_mid = excess(mid)
            up = f_mid > 0  # infeasible: mid becomes the upper end
            again = (up == last) & (i > 0)
            lo, f_lo = np.where(up, lo, mid), np.where(up, f_lo, f_mid)
            hi, f_hi = np.where(up, mid, hi), np.where(up, f_mid, f_hi)
            f_lo = np.where(up & again, 0.5 * f_lo, f_lo)  # Illinois: the end kept twice is halved
            f_hi = np.where(~up & again, 0.5 * f_hi, f_hi)
            last = up
        return np.where(f_top <= 0, top, lo)

    @staticmethod
    def _highest_scalar(excess, top: float) -> float:
        """`_highest` for one step, in plain floats (numpy's per-call overhead dominates there)."""
        hi = max(top, MIN_CLOCK_FRAC)
        f_hi = float(excess(hi))
        if f_hi <= 0:
            return hi
        lo = MIN_CLOCK_FRAC
        f_lo = float(excess(lo))
        if f_lo > 0:
            return lo
        last = None
        for _ in range(_SOLVE_STEPS):
            if hi - lo <= 1e-6:
                break
            mid = min(max(hi - f_hi * (hi - lo) / (f_hi - f_lo), lo), hi)
            f_mid = float(excess(mid))
            up = f_mid > 0
            if up:
                hi, f_hi = mid, f_mid
                if last is True:
                    f_lo *= 0.5
            else:
                lo, f_lo = mid, f_mid
                if last is False:
                    f_hi *= 0.5
            last = up
        return lo


class ClockedCostModel:
    """The cost model as a capped or clock-limited instance sees it (the engine's `CostModel`)."""

    def __init__(self, power: PowerModel):
        self.power = power
        self.inner = power.cost_model

    def step_time(self, shape: StepShape) -> float:
        return self.power.step_time(shape)

    def decode_step_times(
        self, num_decodes: int, ctx_sums: np.ndarray, max_ctxs: np.ndarray | None = None
    ) -> np.ndarray:
        return self.power.decode_step_times(num_decodes, ctx_sums, max_ctxs)

    def chunk_step_times(self, *args, **kwargs) -> np.ndarray | None:
        """The inner model's, while no cap or clock limit applies (then: price step by step)."""
        inner = getattr(self.inner, "chunk_step_times", None)
        return None if self.power.limit.active or inner is None else inner(*args, **kwargs)

    def decode_run_times(self, *args) -> list[float] | None:
        """The inner model's, while no cap or clock limit applies (then: the clock solve's arrays)."""
        inner = getattr(self.inner, "decode_run_times", None)
        return None if self.power.limit.active or inner is None else inner(*args)

    def breakdown(self, shape: StepShape) -> StepCost:
        c = self.inner.breakdown(shape)
        if not self.power.limit.active:
            return c
        seconds = self.power.step_time(shape)
        extra = seconds - c.total_s
        return StepCost(seconds, {**c.by_op, "clock_limit": extra}, c.compute_s + extra, c.memory_s,
                        c.comm_s, c.overhead_s)

    def __getattr__(self, name):  # the inner model's other attributes (profile, tp, ...)
        return getattr(self.inner, name)
