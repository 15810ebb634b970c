"""The power model: work counts, energy of steps and runs, caps and clock limits, calibration."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.catalog.specs import get_hardware, get_model
from servesim.core.errors import InputFileError
from servesim.cost import RooflineCostModel
from servesim.cost.base import StepShape
from servesim.cost.layout import Layout
from servesim.cost.power import (
    ClockedCostModel,
    PowerLimit,
    PowerModel,
    board_watts,
    load_power_profile,
    power_profile,
)
from servesim.cost.power_calibrate import (
    default_state,
    fit_power_profile,
    predicted_watts,
    read_power_points,
)
from servesim.cost.profile import family_profile
from servesim.cost.work import WorkModel

ROOT = Path(__file__).resolve().parents[2]
POWER_CSV = ROOT / "data" / "measurements" / "h200-power" / "power.csv"


def model_for(name="llama3-70b", hw="h100-sxm", tp=4, limit=None):
    hardware, model = get_hardware(hw), get_model(name)
    cost = RooflineCostModel(model, hardware, tp=tp)
    work = WorkModel(Layout(model, tp), cost.profile)
    return cost, PowerModel(cost, work, hardware, power_profile(hardware.family), tp=tp, limit=limit)


def test_decode_work_is_linear_in_the_context_sum():
    cost, power = model_for()
    f0, f1, b0, b1, link = power.work_model.decode_coeffs(32)
    for ctx in (0, 5_000, 80_000):
        w = power.work_model.work(StepShape([], 32, ctx, 32))
        assert w.flops == pytest.approx(f0 + f1 * ctx, rel=1e-12)
        assert w.hbm_bytes == pytest.approx(b0 + b1 * ctx, rel=1e-12)
        assert w.link_bytes == pytest.approx(link)


def test_prefill_flops_count_every_weight_twice_per_token():
    model = get_model("llama3-8b")
    work = WorkModel(Layout(model), family_profile("hopper")).work(StepShape([(1000, 0)], 0, 0, 1))
    linear = 2 * (model.layer_params * 1000 + model.vocab_size * model.hidden_size)
    attention = model.num_layers * 4 * model.num_heads * model.head_dim * 1000 * 1001 / 2
    assert work.flops == pytest.approx(linear + attention, rel=1e-9)


def test_step_energy_is_the_floor_plus_work_and_stops_at_the_board_limit():
    cost, power = model_for(tp=4)
    decode = StepShape([], 16, 16_000, 16)
    t = cost.step_time(decode)
    w = power.work_model.work(decode)
    dynamic = power._j_per_flop * w.flops + power._j_per_byte * (w.hbm_bytes + w.link_bytes)
    expected = power._floor_w * t + dynamic
    assert power.step_energy(decode, t) == pytest.approx(expected)
    prefill = StepShape([(8000, 0)], 0, 0, 1)
    t = cost.step_time(prefill)
    assert power.step_energy(prefill, t) == pytest.approx(4 * 700 * t)  # compute-bound: at TDP


def test_run_energies_equal_step_energies():
    cost, power = model_for()
    ctx = 40_000 + 64 * np.arange(50.0)
    seconds = cost.decode_step_times(64, ctx)
    run = power.decode_energies(64, ctx, seconds)
    single = [power.step_energy(StepShape([], 64, int(c), 64), s) for c, s in zip(ctx, seconds)]
    np.testing.assert_allclose(run, single, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    chunk=st.integers(0, 8192), decodes=st.integers(0, 256), ctx=st.integers(0, 4000),
    cap=st.floats(150, 700), clock=st.one_of(st.none(), st.floats(0.2, 1.0)),
)
def test_a_capped_step_never_draws_more_than_the_cap_nor_runs_faster(chunk, decodes, ctx, cap, clock):
    cost, power = model_for(limit=PowerLimit(cap_w=cap, clock_frac=clock))
    shape = StepShape([(chunk, 0)] if chunk else [], decodes, decodes * ctx)
    if not shape.num_tokens:
        return
    t0 = cost.step_time(shape)
    t = power.step_time(shape)
    watts = power.step_energy(shape, t) / t / 4
    assert t >= t0 * (1 - 1e-9)
    floor = power.gpu_idle_w  # a cap below the idle power cannot be met; the clock bottoms out
    assert watts <= max(cap, floor) * (1 + 1e-6) or math.isclose(power.clock_of(shape), 0.1, abs_tol=1e-6)


def test_a_cap_slows_compute_bound_prefill_much_more_than_memory_bound_decode():
    cost, capped = model_for(limit=PowerLimit(cap_w=490))
    prefill, decode = StepShape([(4096, 0)], 0, 0, 1), StepShape([], 64, 64 * 800, 64)
    slow_prefill = capped.step_time(prefill) / cost.step_time(prefill)
    slow_decode = capped.step_time(decode) / cost.step_time(decode)
    assert slow_prefill > 1.12
    assert slow_decode < 1.02


def test_clock_limit_stretches_compute_bound_time_by_its_inverse():
    cost, free = model_for(name="llama3-8b", tp=1)
    _, limited = model_for(name="llama3-8b", tp=1, limit=PowerLimit(clock_frac=0.5))
    prefill = StepShape([(8192, 0)], 0, 0, 1)
    c = cost.breakdown(prefill)
    default_clock = free.clock_of(prefill)  # below 1: this prefill runs at the board limit
    assert default_clock < 1
    expected = c.compute_s * default_clock / 0.5 + c.memory_s + (c.total_s - c.compute_s - c.memory_s)
    assert limited.step_time(prefill) == pytest.approx(expected, rel=1e-9)
    decode = StepShape([], 8, 8000, 8)  # memory-bound, clock above the knee: unchanged
    assert limited.step_time(decode) == pytest.approx(cost.step_time(decode), rel=1e-9)


def test_clocked_cost_model_agrees_with_the_power_model_and_passes_extras_through():
    cost, power = model_for(limit=PowerLimit(cap_w=400))
    clocked = ClockedCostModel(power)
    shape = StepShape([(2048, 0)], 8, 8000, 9)
    assert clocked.step_time(shape) == power.step_time(shape)
    assert clocked.breakdown(shape).total_s == pytest.approx(power.step_time(shape))
    assert clocked.profile is cost.profile and clocked.tp == cost.tp  # extras of the inner model
    ctx = np.array([1000.0, 1008.0, 1016.0])
    np.testing.assert_allclose(clocked.decode_step_times(8, ctx), power.decode_step_times(8, ctx))


# -- calibration on the committed H200 measurements ------------------------------------------------------
@pytest.fixture(scope="module")
def h200_points():
    hw = get_hardware("h200-sxm")
    return hw, read_power_points(POWER_CSV, hw, family_profile(hw.family))


def test_shipped_profile_predicts_the_measured_step_loops_within_ten_percent(h200_points):
    hw, points = h200_points
    profile = power_profile("hopper")
    steps = [p for p in points if p.is_step]
    assert len(steps) >= 12
    for p in steps:  # at the measured clock and duration
        # 12.5%: the core-rail byte share chosen on published caps (Samsi et al.) puts the one decode
        # the firmware throttled hardest (64 x 4,096 at 1,548 MHz) 12.2% low; 7.6% with a share of 0
        assert abs(predicted_watts(profile, hw, p) / p.watts - 1) < 0.125, p.point
    for p in steps:  # the simulator's chain: cost-model time, board limit
        cost = RooflineCostModel(get_model(p.model), hw)
        watts, _ = default_state(profile, hw, p, cost.step_time(p.shape))
        assert abs(watts / p.watts - 1) < 0.10, p.point


def test_refitting_reproduces_the_shipped_profile(h200_points):
    hw, points = h200_points
    shipped = power_profile("hopper")
    fitted = fit_power_profile(points, hw, voltage_floor=shipped.voltage_floor,
                               memory_core_share=shipped.memory_core_share)
    for key in ("idle_frac", "active_frac", "compute_frac", "memory_frac"):
        assert getattr(fitted, key) == pytest.approx(getattr(shipped, key), rel=1e-6)


def test_the_core_rail_share_of_byte_energy_falls_with_the_clock_and_the_rest_does_not():
    hw, profile = get_hardware("h200-sxm"), power_profile("hopper")
    assert 0 < profile.memory_core_share < 1
    traffic = 2e12  # bytes/s, no FLOPs: the clock moves only the floor and the core-rail byte share
    floor = board_watts(profile, hw, 0.5, 0.0, 0.0)
    byte_w = board_watts(profile, hw, 1.0, 0.0, traffic) - board_watts(profile, hw, 1.0, 0.0, 0.0)
    expected = byte_w * (1 - profile.memory_core_share + profile.memory_core_share * profile.v(0.5) ** 2)
    assert board_watts(profile, hw, 0.5, 0.0, traffic) - floor == pytest.approx(expected, rel=1e-9)
    flat = replace(profile, memory_core_share=0.0)
    flat_floor = board_watts(flat, hw, 0.5, 0.0, 0.0)
    assert board_watts(flat, hw, 0.5, 0.0, traffic) - flat_floor == pytest.approx(byte_w, rel=1e-9)


def test_a_capped_decode_slows_less_when_part_of_its_byte_energy_is_on_the_core_rail():
    """Samsi et al.'s 4x A100 decode lost 6-7% at 175 W against 250 W; with all byte energy off the
    core rail the model needs 16-22% (the clock alone cannot shed HBM power)."""
    shape = StepShape([], 64, 64 * 384, 64)
    cost, power = model_for(name="llama-65b", hw="a100-pcie-80gb", tp=4)

    def slowdown(profile):
        at = [PowerModel(cost, power.work_model, power.hardware, profile, tp=4, limit=PowerLimit(cap_w=cap))
              for cap in (175, 250)]
        return at[0].step_time(shape) / at[1].step_time(shape)

    shipped = power_profile("hopper")
    assert slowdown(replace(shipped, memory_core_share=0.0)) > 1.12
    assert slowdown(shipped) < 1.10


def test_a_board_limit_above_the_tdp_lets_a_step_run_at_full_clock():
    cost, _ = model_for(name="opt-175b", hw="a100-80gb", tp=8)
    shape = StepShape([(2048, 0)] * 8, 0, 0, 8)
    _, at_tdp = model_for(name="opt-175b", hw="a100-80gb", tp=8, limit=PowerLimit(clock_frac=0.6))
    assert at_tdp.clock_of(shape) == pytest.approx(0.6)
    free = PowerModel(cost, at_tdp.work_model, at_tdp.hardware, at_tdp.profile, tp=8)
    high = PowerModel(cost, at_tdp.work_model, at_tdp.hardware, at_tdp.profile, tp=8, board_limit_w=1000)
    seconds = cost.step_time(shape)
    assert free.step_energy(shape, seconds) == pytest.approx(400 * 8 * seconds)  # held at the 400 W TDP
    assert high.step_energy(shape, seconds) > free.step_energy(shape, seconds)


def test_board_power_rises_with_work_and_clock():
    hw, profile = get_hardware("h200-sxm"), power_profile("hopper")
    idle = board_watts(profile, hw, 1.0, 0.0, 0.0)  # clocks up, nothing to do: the launch-only loop
    assert idle == pytest.approx(hw.idle_w + hw.tdp_w * profile.active_frac)
    assert board_watts(profile, hw, 1.0, 3e14, 1e12) > board_watts(profile, hw, 0.7, 3e14, 1e12) > idle


def test_a_malformed_measurement_row_names_the_file_and_line(tmp_path):
    hw = get_hardware("h200-sxm")
    bad = tmp_path / "power.csv"
    lines = POWER_CSV.read_text().splitlines()
    lines[3] = lines[3].replace("414.41", "lots")
    bad.write_text("\n".join(lines))
    with pytest.raises(InputFileError) as err:
        read_power_points(bad, hw, family_profile(hw.family))
    assert "power.csv:4" in str(err.value) and "power_w" in str(err.value)


@pytest.mark.parametrize("value, message", [
    (1.5, "parameters.memory_core_share: expected a share between 0 and 1, got 1.5"),
    (-0.1, "parameters.memory_core_share: expected a number >= 0, got -0.1"),
])
def test_a_power_profile_with_a_core_share_outside_zero_to_one_names_the_key(tmp_path, value, message):
    bad = tmp_path / "profile.yaml"
    bad.write_text(f"parameters:\n  memory_frac: 0.9\n  memory_core_share: {value}\n")
    with pytest.raises(InputFileError) as err:
        load_power_profile(bad)
    assert "profile.yaml" in str(err.value) and message in str(err.value)
