"""Whether the shared store answers: while it does not, the cache stays out of the request path (every request goes
straight upstream, nothing waits on a dead store's time-out) and /healthz says why."""

from __future__ import annotations

import logging
import time

from cachesvc.metrics import Metrics

log = logging.getLogger(__name__)


class StoreHealth:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self.reason: str | None = None  # why the store is considered down; None: it answers
        self.since: float | None = None  # monotonic time it went down

    @property
    def degraded(self) -> bool:
        return self.reason is not None

    def down(self, reason: str) -> None:
        """The store failed a call: stay out of its way until `up`; logged once per outage."""
        if self.reason is None:
            self.since = time.monotonic()
            log.warning("shared store unavailable, serving from the upstream until it returns: %s", reason)
            self._metrics.set_store_degraded(True)
        self.reason = reason

    def up(self) -> None:
        """The store answers again and the cache has caught up with it."""
        if self.reason is not None:
            log.info("shared store back after %.1f s; cache resynchronised", time.monotonic() - (self.since or 0.0))
            self._metrics.set_store_degraded(False)
        self.reason, self.since = None, None

    def status(self) -> dict[str, object] | None:
        """For /healthz: None while healthy."""
        if self.reason is None:
            return None
        return {"reason": self.reason, "for_s": round(time.monotonic() - (self.since or 0.0), 1)}
