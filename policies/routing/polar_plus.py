"""POLAR+: POLAR with doubling epochs, forced exploration and a better resident-set optimiser.

- Epoch j lasts ``epoch * 2**j`` requests, up to ``max_epoch`` (the cap is ours: it keeps a drifting workload
  followed; the regret analysis assumes a stationary one).
- Forced exploration: an adapter with fewer than ``explore_floor * sqrt(t / arms)`` rewards is under-sampled.
  While any is, one slot (never the only one) is the exploration slot: every ``epoch`` requests it passes to the
  most under-sampled adapter. Once resident it pays no paging charge, so LinUCB's optimism routes the contexts it
  is unsure about to it. Exploring thus runs at the base cadence while the exploiting set settles into long epochs.
- The resident set is chosen by greedy selection followed by single swaps while they improve the objective.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from .polar import PolarRouter
from .router import RouterSettings


class PolarPlusRouter(PolarRouter):
    name: ClassVar[str] = "polar+"
    local_search: ClassVar[bool] = True

    def __init__(self, settings: RouterSettings) -> None:
        super().__init__(settings)
        self.epoch_index = 0
        self.epoch_end = settings.epoch
        self.exploring: int | None = None  # the adapter in the exploration slot

    def epoch_length(self) -> int:
        return min(self.settings.epoch * 2 ** self.epoch_index, self.settings.max_epoch)

    def epoch_ended(self) -> bool:
        return self.steps >= self.epoch_end

    def plan(self, resident: np.ndarray) -> np.ndarray | None:
        resident = np.asarray(resident, dtype=bool)
        if self.epoch_ended():
            self.epoch_index += 1
            self.epoch_end = self.steps + self.epoch_length()
            self.exploring = self._next_explored(resident)
            return self.resident_for_next_epoch(resident, forced=() if self.exploring is None else (self.exploring,))
        if self.steps % self.settings.epoch != 0:
            return None
        explore = self._next_explored(resident)
        if explore == self.exploring:
            return None
        mask = resident.copy()
        if self.exploring is not None and mask[self.exploring]:
            mask[self.exploring] = False
        elif explore is not None and mask.sum() >= self.settings.capacity:
            mask[self.victim(mask, explore)] = False
        if explore is not None:
            mask[explore] = True
        self.exploring = explore
        return mask

    def _next_explored(self, resident: np.ndarray) -> int | None:
        """The most under-sampled adapter, the one exploring now excepted while another one needs it."""
        candidates = [a for a in self.under_sampled() if a != self.exploring] or list(self.under_sampled())
        return candidates[0] if candidates else None

    def under_sampled(self) -> tuple[int, ...]:
        """Adapters below the exploration floor, the least rewarded first (none with a single slot)."""
        if self.settings.capacity < 2:
            return ()
        floor = self.settings.explore_floor * math.sqrt(self.steps / self.settings.arms)
        counts = self.model.counts
        order = np.argsort(counts, kind="stable")
        return tuple(int(a) for a in order if counts[a] < floor)

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "epoch_index": self.epoch_index, "epoch_end": self.epoch_end,
                "exploring": self.exploring}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        super()._load_extra_state(extra)
        self.epoch_index = int(extra.get("epoch_index", 0))
        self.epoch_end = int(extra.get("epoch_end", self.settings.epoch))
        exploring = extra.get("exploring")
        self.exploring = None if exploring is None else int(exploring)
