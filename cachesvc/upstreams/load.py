"""How loaded an upstream is, from what the proxy sees: requests in flight, latency, and 429/503 answers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from cachesvc.config import LoadPolicyConfig


@dataclass
class UpstreamLoad:
    config: LoadPolicyConfig
    inflight: int = 0
    latency_ewma_s: float = 0.0
    overloaded_until: float = 0.0  # monotonic time until which a 429/503 keeps the upstream counted as full
    completed: int = 0
    overload_signals: int = 0
    _alpha: float = field(default=0.2, repr=False)

    def started(self) -> None:
        self.inflight += 1

    def finished(self, latency_s: float, status: int) -> None:
        self.inflight = max(0, self.inflight - 1)
        self.completed += 1
        self.latency_ewma_s = latency_s if self.completed == 1 else (
            self._alpha * latency_s + (1 - self._alpha) * self.latency_ewma_s
        )
        if status in (429, 503):
            self.overload_signals += 1
            self.overloaded_until = time.monotonic() + self.config.overload_hold_s

    def level(self, now: float | None = None) -> float:
        """0 = idle, 1 = at or past capacity: the largest of the in-flight, latency and overload signals."""
        now = time.monotonic() if now is None else now
        if now < self.overloaded_until:
            return 1.0
        by_inflight = self.inflight / self.config.target_inflight
        by_latency = self.latency_ewma_s / self.config.target_latency_s
        return min(1.0, max(by_inflight, by_latency))

    def pressure(self, now: float | None = None) -> float:
        """How far past `start_at` the load is, scaled to 0..1: how much the cache policy relaxes."""
        if not self.config.enabled:
            return 0.0
        start = self.config.start_at
        return max(0.0, min(1.0, (self.level(now) - start) / (1.0 - start)))
