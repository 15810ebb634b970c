"""Synthetic generators: arrival processes hit their rate and CV, schedules shape the rate,
length laws have their moments, and every draw is keyed to a named sub-stream."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servesim.config.workload import ArrivalConfig, LengthDist, RateSchedule
from servesim.core.rng import stream
from servesim.workload.schedule import RateCurve
from servesim.workload.stats import interarrival_cv
from servesim.workload.streams import substream
from servesim.workload.synthetic import arrival_times, lengths, weibull_shape_for_cv

N = 20_000


@pytest.mark.parametrize(
    "process, rate, cv",
    [("gamma", 10.0, 2.0), ("gamma", 3.0, 0.5), ("weibull", 5.0, 1.5), ("poisson", 7.0, 1.0)],
)
def test_generated_arrivals_hit_rate_and_cv_at_20000_requests(process, rate, cv):
    cfg = ArrivalConfig(process=process, rate=rate, cv=cv)
    t = arrival_times(cfg, stream(11, "workload"), count=N)
    assert len(t) == N
    assert N / t[-1] == pytest.approx(rate, rel=0.04)
    assert interarrival_cv(t) == pytest.approx(cv, rel=0.05)


def test_constant_arrivals_are_evenly_spaced():
    t = arrival_times(ArrivalConfig(process="constant", rate=4.0), stream(0, "w"), count=8)
    np.testing.assert_allclose(t, np.arange(1, 9) / 4.0)


def test_duration_mode_stops_at_the_duration():
    t = arrival_times(ArrivalConfig(rate=50.0), stream(0, "w"), duration=100.0)
    assert t.max() < 100.0 and len(t) == pytest.approx(5000, rel=0.05)


@pytest.mark.parametrize("cv", [0.3, 1.0, 2.5, 6.0])
def test_weibull_shape_inverts_the_cv(cv):
    k = weibull_shape_for_cv(cv)
    g1, g2 = math.gamma(1 + 1 / k), math.gamma(1 + 2 / k)
    assert math.sqrt(g2 / g1**2 - 1) == pytest.approx(cv, rel=1e-6)


# -- time-varying rates ---------------------------------------------------------------------------


def test_piecewise_schedule_rates_per_segment():
    sched = RateSchedule(kind="piecewise", points=[(0, 1.0), (100, 3.0), (200, 0.0), (250, 0.5)])
    cfg = ArrivalConfig(process="gamma", rate=20.0, cv=2.0, rate_schedule=sched)
    t = arrival_times(cfg, stream(5, "workload"), duration=450.0)
    counts = np.histogram(t, bins=[0, 100, 200, 250, 450])[0]
    assert counts[0] == pytest.approx(2000, rel=0.12)
    assert counts[1] == pytest.approx(6000, rel=0.08)
    assert counts[2] == 0
    assert counts[3] == pytest.approx(2000, rel=0.12)


def test_piecewise_schedule_ending_at_zero_limits_the_count():
    sched = RateSchedule(kind="piecewise", points=[(0, 1.0), (10, 0.0)])
    t = arrival_times(ArrivalConfig(rate=10.0, rate_schedule=sched), stream(0, "w"), count=1000)
    assert len(t) < 200 and t.max() < 10


def test_diurnal_schedule_peaks_where_asked():
    sched = RateSchedule(kind="diurnal", period_s=1000, amplitude=0.8, peak_s=250)
    t = arrival_times(ArrivalConfig(rate=40.0, rate_schedule=sched), stream(9, "w"), duration=4000.0)
    assert len(t) == pytest.approx(40 * 4000, rel=0.02)  # the cosine averages out over whole periods
    phase = np.histogram(t % 1000, bins=10, range=(0, 1000))[0]
    assert np.argmax(phase) == 2  # bin [200, 300) holds the peak
    assert phase.max() / phase.min() > 5


@settings(max_examples=40, deadline=None)
@given(
    amplitude=st.floats(0, 1),
    peak=st.floats(0, 999),
    u=st.lists(st.floats(0, 5e4), min_size=1, max_size=50),
)
def test_diurnal_inverse_inverts_the_cumulative_rate(amplitude, peak, u):
    curve = RateCurve(7.0, RateSchedule(kind="diurnal", period_s=1000, amplitude=amplitude, peak_s=peak))
    u = np.sort(np.array(u))
    t = curve.inverse(u)
    np.testing.assert_allclose(curve.cumulative(t), u, atol=1e-6 * max(1.0, u.max()))
    assert np.all(np.diff(t) >= -1e-9)


@settings(max_examples=20, deadline=None)
@given(amplitude=st.floats(0, 1), u=st.lists(st.floats(0, 5e4), min_size=1, max_size=50))
def test_diurnal_inverse_with_a_period_tiny_against_the_run(amplitude, u):
    """Thousands of periods are inverted within one period and shifted (the one grid over all of
    them took periods x 1024 points: a 1e-300 s period asked numpy for more than memory)."""
    curve = RateCurve(7.0, RateSchedule(kind="diurnal", period_s=0.01, amplitude=amplitude, peak_s=0.003))
    u = np.sort(np.array(u))
    t = curve.inverse(u)
    np.testing.assert_allclose(curve.cumulative(t), u, atol=1e-6 * max(1.0, u.max()))
    assert np.all(np.diff(t) >= -1e-9)
    tiny = RateCurve(7.0, RateSchedule(kind="diurnal", period_s=1e-300, amplitude=amplitude))
    np.testing.assert_allclose(tiny.inverse(u), u / 7.0, rtol=1e-6, atol=1e-9)  # the mean rate


def test_piecewise_inverse_inverts_the_cumulative_rate():
    curve = RateCurve(2.0, RateSchedule(kind="piecewise", points=[(0, 0.5), (10, 0), (20, 4)]))
    t = np.array([0.5, 3.0, 9.99, 20.0, 25.0, 100.0])
    np.testing.assert_allclose(curve.inverse(curve.cumulative(t)), t)


@pytest.mark.parametrize(
    "points, match",
    [([(5, 1.0)], "first point must start at 0"), ([(0, 1.0), (0, 2.0)], "increase strictly"),
     ([(0, 0.0)], "at least one > 0"), (None, "needs `points")],
)
def test_bad_piecewise_schedule(points, match):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=match):
        RateSchedule(kind="piecewise", points=points)


# -- lengths --------------------------------------------------------------------------------------


def test_length_laws():
    rng = stream(1, "w")
    assert np.all(lengths(LengthDist(dist="fixed", value=7), 10, rng) == 7)
    u = lengths(LengthDist(dist="uniform", min=5, max=9), 5000, rng)
    assert set(np.unique(u)) == {5, 6, 7, 8, 9}
    ln = lengths(LengthDist(dist="lognormal", mean=800, sigma=0.7), 50_000, rng)
    assert ln.mean() == pytest.approx(800, rel=0.03)
    z = lengths(LengthDist(dist="zipf", alpha=2.0, min=10, max=500), 5000, rng)
    assert z.min() == 10 and z.max() <= 500 and np.all(z % 10 == 0)


def test_substreams_are_keyed_by_name_not_by_order():
    base = stream(4, "workload")
    a = substream(base, "class", "chat").random(3)
    base.random(100)  # drawing from the parent changes nothing
    assert np.array_equal(substream(base, "class", "chat").random(3), a)
    assert not np.array_equal(substream(base, "class", "batch").random(3), a)
    assert not np.array_equal(substream(stream(5, "workload"), "class", "chat").random(3), a)


@pytest.mark.parametrize("dist", [
    {"dist": "uniform", "min": 54, "max": 2**70},
    {"dist": "fixed", "value": 2**63},
    {"dist": "lognormal", "mean": 1e300},
])
def test_a_count_past_the_draws_integers_is_a_config_error(dist, tmp_path, capsys):
    """A uniform output length up to 2**70 was drawn with numpy's 64-bit integers and failed as an
    internal error; counts are bounded in the config instead (exit 2 naming the key)."""
    from servesim.cli import main

    with pytest.raises(ValueError):
        LengthDist(**dist)
    config = tmp_path / "c.yaml"
    config.write_text("model: llama3-8b\nhardware: h100-sxm\nworkload:\n  num_requests: 3\n"
                      f"  lengths:\n    prompt: {{dist: fixed, value: 100}}\n    output: {dist}\n")
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: workload.lengths.output.") and "1000000000" in err and "\n" not in err


@pytest.mark.parametrize("key", ["workload.sessions.system_prompt_tokens",
                                 "workload.sessions.max_context_tokens"])
def test_a_session_token_count_past_the_integers_is_a_config_error(key, capsys):
    """A system prompt of 2**70 tokens overflowed numpy's integers when the turns were summed."""
    from servesim.cli import main

    assert main(["validate", "configs/quickstart.yaml", "--set", f"{key}={2**70}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {key}: ") and "1000000000" in err
