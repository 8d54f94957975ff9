"""Baselines that page on demand: the router ignores residency, and a missing adapter is paged in over the
least recently (LRU) or least frequently (LFU) used resident one, as vLLM's and SGLang's own caches do; plus a
uniformly random router with LRU paging."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .router import LinUCBRouter


class LinUCBLRURouter(LinUCBRouter):
    """Cache-unaware LinUCB; evict the least recently used."""

    name: ClassVar[str] = "linucb-lru"

    def victim(self, resident: np.ndarray, incoming: int) -> int:
        candidates = [int(a) for a in np.flatnonzero(resident) if a != incoming]
        if not candidates:
            raise ValueError("nothing resident to evict")
        return min(candidates, key=lambda a: (self.last_used[a], a))


class LinUCBLFURouter(LinUCBRouter):
    """Cache-unaware LinUCB; evict the least frequently used."""

    name: ClassVar[str] = "linucb-lfu"

    def victim(self, resident: np.ndarray, incoming: int) -> int:
        candidates = [int(a) for a in np.flatnonzero(resident) if a != incoming]
        if not candidates:
            raise ValueError("nothing resident to evict")
        return min(candidates, key=lambda a: (self.uses[a], self.last_used[a], a))


class RandomRouter(LinUCBLRURouter):
    """Any adapter, uniformly (seeded); LRU paging. The floor every learning router must beat."""

    name: ClassVar[str] = "random"

    def choose(self, context: np.ndarray, resident: np.ndarray) -> int:
        return int(self.rng.integers(self.settings.arms))
