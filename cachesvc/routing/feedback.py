"""Response ids that may still be rewarded: ``POST /v1/feedback {"id", "reward"}`` finds the routed request behind
an id and hands its reward to the pool's router once. Bounded in entries (oldest dropped) and in time (``ttl_s``);
an id belongs to the tenant that asked, and another tenant's feedback finds nothing."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cachesvc.openai.errors import RequestError

MAX_ID_CHARS = 256


@dataclass
class Pending:
    tenant: str
    pool: str
    adapter: str
    arm: int
    context: np.ndarray
    expires_at: float
    rewarded: bool = False


class FeedbackBook:
    """Routed response ids awaiting a reward."""

    def __init__(self, ttl_s: float, max_ids: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s, self._max_ids, self._clock = ttl_s, max_ids, clock
        self._pending: OrderedDict[str, Pending] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def record(self, response_id: str, tenant: str, pool: str, adapter: str, arm: int, context: np.ndarray,
               ttl_s: float | None = None) -> None:
        if not response_id or len(response_id) > MAX_ID_CHARS:
            return
        expires = self._clock() + (self._ttl_s if ttl_s is None else ttl_s)
        self._pending[response_id] = Pending(tenant, pool, adapter, arm, context, expires)
        self._pending.move_to_end(response_id)
        while len(self._pending) > self._max_ids:
            self._pending.popitem(last=False)

    def claim(self, response_id: str, tenant: str) -> Pending:
        """The pending request behind ``response_id``, marked rewarded; a clear 4xx when there is none."""
        entry = self._pending.get(response_id)
        if entry is None or entry.tenant != tenant:
            raise RequestError(404, f"No routed response with id {response_id[:MAX_ID_CHARS]!r} awaits feedback "
                               "(unknown, or answered from the cache).", param="id", code="feedback_unknown_id")
        if self._clock() > entry.expires_at:
            del self._pending[response_id]
            raise RequestError(410, f"Feedback for {response_id!r} came after its window closed.", param="id",
                               code="feedback_expired")
        if entry.rewarded:
            raise RequestError(409, f"Response {response_id!r} has already been rewarded.", param="id",
                               code="feedback_already_given")
        entry.rewarded = True
        return entry
