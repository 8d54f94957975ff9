"""Baselines that never page while serving: LinUCB restricted to the resident adapters.

- ``greedy-resident``: the resident set is whatever the pool starts with (its first ``capacity`` adapters) and
  never changes.
- ``static-top-k``: a warm-up epoch routes like cache-unaware LinUCB with LRU paging; then the ``capacity`` most
  used adapters become resident for good (static top-K by popularity).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .paging_baselines import LinUCBLRURouter
from .router import LinUCBRouter


class GreedyResidentRouter(LinUCBRouter):
    name: ClassVar[str] = "greedy-resident"

    def choose(self, context: np.ndarray, resident: np.ndarray) -> int:
        return self._argmax(self.model.upper_bounds(context), allowed=resident)


class StaticTopKRouter(LinUCBLRURouter):
    name: ClassVar[str] = "static-top-k"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frozen = False

    def choose(self, context: np.ndarray, resident: np.ndarray) -> int:
        if not self.frozen:
            return super().choose(context, resident)
        return self._argmax(self.model.upper_bounds(context), allowed=resident)

    def plan(self, resident: np.ndarray) -> np.ndarray | None:
        if self.frozen or self.steps < self.settings.epoch:
            return None
        self.frozen = True
        mask = np.zeros(self.settings.arms, dtype=bool)
        mask[np.argsort(-self.uses, kind="stable")[: self.settings.capacity]] = True
        return mask

    def _extra_state(self) -> dict[str, Any]:
        return {"frozen": self.frozen}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self.frozen = bool(extra.get("frozen", False))
