"""What paging an adapter in costs, per adapter: a running mean of measured page-in seconds (the load call plus
the extra time to first token of a cold adapter). An adapter not measured yet is assumed to cost what the measured
ones cost on average (adapters of one pool share a base model and a server), and the prior only until anything is
measured. The router charges it, in reward units, to adapters that are not resident."""

from __future__ import annotations

from typing import Any

import numpy as np


class PagingCost:
    """Exponentially weighted page-in seconds per adapter, times ``weight`` (reward given up per second)."""

    def __init__(self, arms: int, *, prior_s: float = 1.0, weight: float = 0.1, smoothing: float = 0.2) -> None:
        if prior_s < 0 or weight < 0 or not 0 < smoothing <= 1:
            raise ValueError("prior_s and weight must be >= 0, smoothing in (0, 1]")
        self.weight, self.smoothing = weight, smoothing
        self.seconds = np.full(arms, float(prior_s))
        self.measured = np.zeros(arms, dtype=np.int64)

    def record(self, arm: int, seconds: float) -> None:
        """One measured page-in of ``arm``; the first replaces the prior, later ones are blended in."""
        if not np.isfinite(seconds) or seconds < 0:
            return
        if self.measured[arm] == 0:
            self.seconds[arm] = seconds
        else:
            self.seconds[arm] += self.smoothing * (seconds - self.seconds[arm])
        self.measured[arm] += 1
        unmeasured = self.measured == 0
        if unmeasured.any():
            self.seconds[unmeasured] = float(self.seconds[~unmeasured].mean())

    def penalties(self, resident: np.ndarray) -> np.ndarray:
        """Reward charged per arm: ``weight * seconds`` where not resident, 0 where resident (a bool mask)."""
        return np.where(resident, 0.0, self.weight * self.seconds)

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds.tolist(), "measured": self.measured.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        seconds = np.asarray(state["seconds"], dtype=np.float64)
        measured = np.asarray(state["measured"], dtype=np.int64)
        if seconds.shape != self.seconds.shape or measured.shape != self.measured.shape:
            raise ValueError("paging cost state is for another number of adapters")
        self.seconds, self.measured = seconds, measured
