"""When requests are sent: open-loop arrival times (Poisson or constant, with a ramp) and the stages of a sweep.

Open loop means arrivals do not wait for answers: a request is due at its arrival time whatever the server does,
and a request sent late counts the time it waited (no coordinated omission; see ``metrics.py``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

ARRIVALS = ("poisson", "constant")
MAX_ARRIVALS = 10_000_000  # bounds the work one schedule causes


@dataclass(frozen=True)
class ArrivalSpec:
    """``rate`` requests per second reached after ``ramp_s`` seconds (linearly from ``start_rate``), for
    ``duration_s`` seconds or ``count`` arrivals, whichever ends first."""

    rate: float
    duration_s: float | None = None
    count: int | None = None
    process: str = "poisson"
    ramp_s: float = 0.0
    start_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate must be a positive number of requests per second, not {self.rate!r}")
        if self.process not in ARRIVALS:
            raise ValueError(f"arrival process must be one of {', '.join(ARRIVALS)}, not {self.process!r}")
        if self.duration_s is None and self.count is None:
            raise ValueError("an arrival schedule needs a duration or a count")
        if self.duration_s is not None and not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ValueError(f"duration must be positive, not {self.duration_s!r}")
        if self.count is not None and not 0 < self.count <= MAX_ARRIVALS:
            raise ValueError(f"count must be in 1..{MAX_ARRIVALS}, not {self.count!r}")
        if self.ramp_s < 0 or not 0 <= self.start_rate <= self.rate:
            raise ValueError("ramp must be >= 0 and start_rate within 0..rate")
        expected = self.rate * (self.duration_s or 0.0)
        if self.count is None and expected > MAX_ARRIVALS:
            raise ValueError(f"rate x duration asks for about {expected:.0f} arrivals, more than {MAX_ARRIVALS}")


def arrival_times(spec: ArrivalSpec) -> list[float]:
    """Seconds after the start at which each request is due, in order.

    Poisson arrivals of a time-varying rate come from unit-rate exponential gaps mapped through the inverse of the
    cumulative rate; constant arrivals are the same map applied to evenly spaced points, so a ramp bends both."""
    rng = random.Random(spec.seed)
    times: list[float] = []
    cumulative = 0.0
    limit = spec.count if spec.count is not None else MAX_ARRIVALS
    while len(times) < limit:
        cumulative += rng.expovariate(1.0) if spec.process == "poisson" else 1.0
        at = _inverse_cumulative(spec, cumulative)
        if spec.duration_s is not None and at >= spec.duration_s:
            break
        times.append(at)
    return times


def _inverse_cumulative(spec: ArrivalSpec, target: float) -> float:
    """The time ``t`` at which the expected number of arrivals, the integral of the rate from 0 to ``t``, is
    ``target``."""
    r0, r1, ramp = spec.start_rate, spec.rate, spec.ramp_s
    in_ramp = (r0 + r1) / 2 * ramp
    if target >= in_ramp:
        return ramp + (target - in_ramp) / r1
    slope = (r1 - r0) / ramp
    if slope == 0:
        return target / r0
    # r0 t + slope t^2 / 2 = target
    return (-r0 + math.sqrt(r0 * r0 + 2 * slope * target)) / slope


@dataclass(frozen=True)
class SweepVerdict:
    """Whether a sweep stage saturated the target, and why (for the report)."""

    saturated: bool
    reason: str


def saturation(offered: float, achieved: float, p99_s: float, first_p99_s: float, error_share: float, *,
               min_share: float = 0.9, max_p99_growth: float = 10.0, max_errors: float = 0.05) -> SweepVerdict:
    """A stage is saturated when the target no longer keeps up: it completes under ``min_share`` of the offered
    load, its p99 latency grew past ``max_p99_growth`` times the first stage's, or errors pass ``max_errors``."""
    if error_share > max_errors:
        return SweepVerdict(True, f"errors {error_share:.1%} > {max_errors:.0%}")
    if offered > 0 and achieved < min_share * offered:
        return SweepVerdict(True, f"achieved {achieved:.2f}/s < {min_share:.0%} of offered {offered:.2f}/s")
    if first_p99_s > 0 and p99_s > max_p99_growth * first_p99_s:
        return SweepVerdict(True, f"p99 {p99_s:.3f} s > {max_p99_growth:g} x the first stage's {first_p99_s:.3f} s")
    return SweepVerdict(False, "keeping up")
