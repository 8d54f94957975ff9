"""Open-loop arrival times: on a constant clock, Poisson with the right rate, ramps, limits and validation."""

from __future__ import annotations

import statistics

import pytest

from cachesvc.loadtests.schedule import ArrivalSpec, arrival_times, saturation


def test_constant_arrivals_are_evenly_spaced() -> None:
    times = arrival_times(ArrivalSpec(rate=4, duration_s=2, process="constant"))
    assert times == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75])  # 2.0 is the end, not an arrival


def test_poisson_arrivals_have_the_rate_and_exponential_gaps() -> None:
    times = arrival_times(ArrivalSpec(rate=50, count=5000, seed=3))
    gaps = [b - a for a, b in zip([0.0, *times], times)]
    assert statistics.fmean(gaps) == pytest.approx(1 / 50, rel=0.05)
    assert statistics.pstdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, abs=0.06)  # exponential: CV 1
    assert times == arrival_times(ArrivalSpec(rate=50, count=5000, seed=3))
    assert times != arrival_times(ArrivalSpec(rate=50, count=5000, seed=4))


def test_a_ramp_sends_the_mean_rate_while_it_climbs() -> None:
    spec = ArrivalSpec(rate=10, duration_s=20, process="constant", ramp_s=10)
    times = arrival_times(spec)
    in_ramp = sum(t < 10 for t in times)
    assert in_ramp == 49  # (0 + 10) / 2 per second over 10 s = 50 expected; the 50th lands exactly at 10.0
    assert sum(t >= 10 for t in times) == 100  # 10.0 itself, then every 0.1 s to 19.9 (20.0 is the end)
    early_gap, late_gap = times[1] - times[0], times[-1] - times[-2]
    assert early_gap > 5 * late_gap


def test_count_and_duration_both_bound_the_schedule() -> None:
    assert len(arrival_times(ArrivalSpec(rate=100, duration_s=10, count=7))) == 7
    assert len(arrival_times(ArrivalSpec(rate=1, duration_s=3.5, count=100, process="constant"))) == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"rate": 0, "count": 1}, "rate"),
    ({"rate": float("nan"), "count": 1}, "rate"),
    ({"rate": 1}, "duration or a count"),
    ({"rate": 1, "count": 1, "process": "gamma"}, "poisson"),
    ({"rate": 1e9, "duration_s": 1e9}, "more than"),
    ({"rate": 1, "count": 1, "ramp_s": -1}, "ramp"),
])
def test_bad_schedules_name_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ArrivalSpec(**kwargs)


def test_saturation_verdicts() -> None:
    assert not saturation(10, 9.8, 0.2, 0.1, 0.0).saturated
    assert "offered" in saturation(10, 7.0, 0.2, 0.1, 0.0).reason
    assert "p99" in saturation(10, 9.9, 2.0, 0.1, 0.0).reason
    assert "errors" in saturation(10, 9.9, 0.1, 0.1, 0.2).reason
