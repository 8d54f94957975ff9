"""POLAR: a cache-aware LinUCB router and a fixed-epoch cache controller.

Route: a resident adapter scores its upper confidence bound ``theta_a.x + alpha*width_a(x)``; a non-resident one
its plain estimate ``theta_a.x`` minus its paging charge (``cost_weight * page_s[a]``, shared by the requests a
page-in can expect to serve). Paging in on demand is for exploiting what is known, at a price; exploring an
adapter the router is unsure about is the controller's job: every ``epoch`` requests it re-chooses the resident
set greedily from the window of recent contexts with optimistic values (resident_set.choose_resident), charging
each planned page-in its estimated cost, which is what lets an untried adapter earn a slot. The cache sets the
cost of exploring.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .resident_set import choose_resident
from .router import LinUCBRouter

USES_REFRESH = 16


class PolarRouter(LinUCBRouter):
    name: ClassVar[str] = "polar"
    local_search: ClassVar[bool] = False
    _uses: np.ndarray | None = None
    _uses_at = 0

    def choose(self, context: np.ndarray, resident: np.ndarray) -> int:
        optimistic = self.model.upper_bounds(context)
        charge = self.cost.penalties(resident) / self.expected_uses()
        return self._argmax(np.where(resident, optimistic, self.model.means(context) - charge))

    def expected_uses(self) -> np.ndarray:
        """Requests a page-in would serve before the next plan, per adapter, at least 1: its share of the recent
        contexts where it is the best estimate, times the epoch (a page-in's cost is shared by the requests that
        follow it). Recomputed every USES_REFRESH requests: it moves slowly, and it costs a pass over the window."""
        if self._uses is not None and self.steps - self._uses_at < USES_REFRESH:
            return self._uses
        contexts = self.recent[: min(self.recent_count, self.settings.window)]
        if not len(contexts):
            return np.ones(self.settings.arms)
        best = np.bincount(np.argmax(self.model.means(contexts), axis=1), minlength=self.settings.arms)
        self._uses = np.maximum(1.0, best / len(contexts) * min(self.settings.epoch, self.settings.window))
        self._uses_at = self.steps
        return self._uses

    def plan(self, resident: np.ndarray) -> np.ndarray | None:
        if not self.epoch_ended():
            return None
        return self.resident_for_next_epoch(np.asarray(resident, dtype=bool), forced=())

    def epoch_ended(self) -> bool:
        return self.steps > 0 and self.steps % self.settings.epoch == 0

    def epoch_length(self) -> int:
        return self.settings.epoch

    def _extra_state(self) -> dict[str, Any]:
        return {"uses": None if self._uses is None else self._uses.tolist(), "uses_at": self._uses_at}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        uses = extra.get("uses")
        self._uses = None if uses is None else np.asarray(uses, dtype=np.float64).reshape(self.settings.arms)
        self._uses_at = int(extra.get("uses_at", 0))

    def resident_for_next_epoch(self, resident: np.ndarray, forced: tuple[int, ...]) -> np.ndarray:
        values = self.window_values()
        scale = self.epoch_length() / max(1, len(values))  # the window stands for the epoch ahead
        page_cost = self.settings.switch_weight * self.settings.cost_weight * self.cost.seconds
        return choose_resident(values, self.settings.capacity, resident, page_cost, scale=scale, forced=forced,
                               local_search=self.local_search)
