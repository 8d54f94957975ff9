"""When to retry a request to an upstream, and how long to wait first: pure, with the randomness and clock injected.

A retry waits for the upstream's ``Retry-After`` when it sent one (seconds or an HTTP date), else a full-jitter
exponential backoff: retry ``n`` (counted from 0) waits ``uniform(0, min(cap, base * 2**n))``, so clients that
failed together do not come back together. No retry is made past ``retries``, for a ``Retry-After`` longer than
``max_retry_after_s``, or when the wait would end past ``budget_s`` after the request's first attempt: the caller
then passes the upstream's answer on (a 429 with its own ``Retry-After``) or fails over.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from cachesvc.config import UpstreamRetryConfig


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta seconds (decimals accepted) or an HTTP date, measured
    from ``now`` (epoch seconds; default the wall clock) and never below 0. None: absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when: datetime = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; a zone-less one ("-0000") is read as such
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    config: UpstreamRetryConfig
    random: Callable[[], float] = field(default=random.random, repr=False)  # uniform in [0, 1)

    def retries_status(self, status: int, *, idempotent: bool = True) -> bool:
        """An answer with this status is retried (a non-idempotent call only on 429, which was not served)."""
        return status in self.config.statuses and (idempotent or status == 429)

    def backoff_s(self, retry: int) -> float:
        """The full-jitter wait before retry number ``retry`` (0 for the first)."""
        config = self.config
        ceiling = min(config.backoff_cap_s, config.backoff_base_s * 2.0 ** min(retry, 62))
        return self.random() * ceiling

    def delay_s(self, retry: int, retry_after_s: float | None, elapsed_s: float) -> float | None:
        """How long to wait before retry number ``retry``, given the upstream's Retry-After (None: it sent none)
        and the seconds since the request's first attempt; None: do not retry."""
        config = self.config
        if retry >= config.retries:
            return None
        if retry_after_s is not None:
            if retry_after_s > config.max_retry_after_s:
                return None
            delay = retry_after_s
        else:
            delay = self.backoff_s(retry)
        if elapsed_s + delay > config.budget_s:
            return None
        return delay
