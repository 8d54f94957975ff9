"""One upstream's circuit breaker: closed, open, half-open; the clock injected, no metrics (the caller reports).

- closed: every attempt goes through; ``failures`` failed attempts in a row open it (a success resets the count).
- open: nothing goes through (the caller fails fast) until ``open_s`` have passed since it opened.
- half-open: one attempt at a time goes through as a probe; its success closes the breaker, its failure opens it
  again for another ``open_s``. A probe that ends with no verdict (cancelled) lets the next one through.

``failures == 0`` is no breaker: always closed. An attempt let through while closed that ends after the breaker
changed state still counts: a success closes a half-open breaker, a failure (re)opens it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, failures: int, open_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.open_s = open_s
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0  # in a row, while closed
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """The state as of the last call (an open breaker whose time is up says half_open only once asked)."""
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """May an attempt go now? An open breaker whose ``open_s`` are up turns half-open and lets this one
        through as the probe; a half-open one lets none through while its probe is out."""
        if self._state == "closed":
            return True
        if self._state == "open":
            if self._clock() < self._opened_at + self.open_s:
                return False
            self._state = "half_open"
            self._probing = False
        if self._probing:
            return False
        self._probing = True
        return True

    def ready(self) -> bool:
        """Would ``allow`` let an attempt through now? (Asks without taking the probe.)"""
        if self._state == "closed":
            return True
        if self._state == "open":
            return self._clock() >= self._opened_at + self.open_s
        return not self._probing

    def retry_after_s(self) -> float:
        """Seconds until an attempt may go again: what an open breaker still has to wait (0 when it may go now)."""
        if self._state == "open":
            return max(0.0, self._opened_at + self.open_s - self._clock())
        return 0.0

    def record_success(self) -> None:
        self._failures = 0
        self._state = "closed"
        self._probing = False

    def record_failure(self) -> None:
        if self.threshold <= 0:
            return
        if self._state == "closed":
            self._failures += 1
            if self._failures < self.threshold:
                return
        self._open()

    def release(self) -> None:
        """An attempt ended with no verdict (cancelled): a half-open breaker lets the next probe through."""
        if self._state == "half_open":
            self._probing = False

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._failures = 0
        self._probing = False
