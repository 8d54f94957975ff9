"""What every adapter router is: it picks the adapter for a request from its context and from which adapters are
resident, learns from rewards, says which resident adapter to evict when one must come in, and (at an epoch's
end, for the cache-aware ones) proposes a new resident set. Arms are adapter indices; ``resident`` is a bool mask.

``LinUCBRouter`` is the shared base: the LinUCB estimates, the paging cost model, a window of recent contexts (the
cache controller plans from it) and per-arm use statistics (for LRU/LFU baselines). Subclasses differ only in how
they route, evict and plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .linucb import LinUCB
from .paging_cost import PagingCost

STATE_VERSION = 1


@dataclass(frozen=True)
class RouterSettings:
    """A router's shape and knobs (one pool's: its adapters, context size and resident slots in all replicas)."""

    arms: int
    dim: int  # context length, bias included
    capacity: int  # resident slots over all replicas
    alpha: float = 0.5  # LinUCB's exploration weight when routing
    plan_alpha: float = 0.5  # the same, when the controller values adapters for the resident set
    ridge: float = 1.0
    cost_weight: float = 0.1  # reward given up per second of paging
    prior_page_s: float = 1.0  # assumed page-in time until one is measured
    epoch: int = 64  # requests per epoch (POLAR), first epoch (POLAR+)
    max_epoch: int = 1024  # POLAR+: doubling stops here, so that a drifting workload is still followed
    window: int = 256  # recent contexts the cache controller plans from
    switch_weight: float = 1.0  # multiplies the paging cost of a planned page-in
    explore_floor: float = 1.0  # POLAR+: an adapter with fewer than this * sqrt(t / arms) rewards is under-sampled
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arms < 1 or self.dim < 1 or self.capacity < 1:
            raise ValueError("a router needs at least one adapter, one context dimension and one resident slot")
        if self.epoch < 1 or self.max_epoch < self.epoch or self.window < 1:
            raise ValueError("epoch >= 1, max_epoch >= epoch and window >= 1 are required")
        if min(self.alpha, self.cost_weight, self.prior_page_s, self.switch_weight, self.explore_floor) < 0:
            raise ValueError("alpha, cost_weight, prior_page_s, switch_weight and explore_floor must be >= 0")


class LinUCBRouter:
    """Shared state and defaults; ``route`` is cache-unaware LinUCB, eviction is least-valuable, no plans."""

    name: ClassVar[str] = "linucb"

    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.model = LinUCB(settings.arms, settings.dim, alpha=settings.alpha, ridge=settings.ridge)
        self.cost = PagingCost(settings.arms, prior_s=settings.prior_page_s, weight=settings.cost_weight)
        self.rng = np.random.default_rng(settings.seed)
        self.steps = 0  # requests routed
        self.recent = np.zeros((settings.window, settings.dim))
        self.recent_count = 0
        self.uses = np.zeros(settings.arms, dtype=np.int64)
        self.last_used = np.full(settings.arms, -1, dtype=np.int64)

    # -- the fast path ---------------------------------------------------------------------------------------
    def route(self, context: np.ndarray, resident: np.ndarray) -> int:
        """The adapter for one request (and the request is counted: windows, uses, epochs)."""
        x = self._check(context)
        arm = self.choose(x, np.asarray(resident, dtype=bool))
        self._remember(x, arm)
        return arm

    def choose(self, context: np.ndarray, resident: np.ndarray) -> int:
        return self._argmax(self.model.upper_bounds(context))

    def learn(self, arm: int, context: np.ndarray, reward: float) -> None:
        """A reward in [0, 1] for a request ``arm`` served at ``context``."""
        if not 0.0 <= reward <= 1.0:
            raise ValueError("reward must be in [0, 1]")
        self.model.update(self._arm(arm), self._check(context), reward)

    def record_page_in(self, arm: int, seconds: float) -> None:
        self.cost.record(self._arm(arm), seconds)

    def observe_direct(self, context: np.ndarray, arm: int) -> None:
        """A request that named ``arm`` itself (not routed): it still counts for residency and epochs."""
        self._remember(self._check(context), self._arm(arm))

    # -- residency ---------------------------------------------------------------------------------------------
    def victim(self, resident: np.ndarray, incoming: int) -> int:
        """The resident adapter to evict so that ``incoming`` fits: the one whose loss costs least over recent
        contexts (its marginal coverage with ``incoming`` in the set; ties: the least recently used)."""
        candidates = [int(a) for a in np.flatnonzero(resident) if a != incoming]
        if not candidates:
            raise ValueError("nothing resident to evict")
        values = self.window_values()
        if not len(values):
            return min(candidates, key=lambda a: (self.last_used[a], a))
        members = values[:, candidates + [incoming]]
        top = members.max(axis=1)
        losses = []
        for i in range(len(candidates)):
            without = np.delete(members, i, axis=1).max(axis=1)
            losses.append(float((top - without).sum()))
        best = min(range(len(candidates)), key=lambda i: (losses[i], self.last_used[candidates[i]]))
        return candidates[best]

    def plan(self, resident: np.ndarray) -> np.ndarray | None:
        """A new resident set (bool mask, at most ``capacity``), or None for no change. Called after each route."""
        return None

    def window_values(self, alpha: float | None = None) -> np.ndarray:
        """Estimated reward of every arm at each recent context, (M, N), clipped at 0: ``mean + alpha * width``
        (``alpha`` defaults to the controller's, ``plan_alpha``)."""
        contexts = self.recent[: min(self.recent_count, self.settings.window)]
        if not len(contexts):
            return np.zeros((0, self.settings.arms))
        alpha = self.settings.plan_alpha if alpha is None else alpha
        return np.clip(self.model.upper_bounds(contexts, alpha), 0.0, None)

    # -- state -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "router": self.name, "model": self.model.state_dict(),
                "cost": self.cost.state_dict(), "steps": self.steps, "recent": self.recent.tolist(),
                "recent_count": self.recent_count, "uses": self.uses.tolist(), "last_used": self.last_used.tolist(),
                "extra": self._extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION or state.get("router") != self.name:
            raise ValueError(f"router state is for {state.get('router')!r} (version {state.get('version')}), "
                             f"not {self.name!r}")
        self.model.load_state_dict(state["model"])
        self.cost.load_state_dict(state["cost"])
        recent = np.asarray(state["recent"], dtype=np.float64)
        if recent.shape != self.recent.shape:
            raise ValueError("router state has another window or context size")
        self.recent, self.recent_count = recent, int(state["recent_count"])
        self.steps = int(state["steps"])
        self.uses = np.asarray(state["uses"], dtype=np.int64).reshape(self.settings.arms)
        self.last_used = np.asarray(state["last_used"], dtype=np.int64).reshape(self.settings.arms)
        self._load_extra_state(state.get("extra") or {})

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        return None

    # -- helpers -----------------------------------------------------------------------------------------------
    def _remember(self, context: np.ndarray, arm: int) -> None:
        self.recent[self.recent_count % self.settings.window] = context
        self.recent_count += 1
        self.uses[arm] += 1
        self.last_used[arm] = self.steps
        self.steps += 1

    def _argmax(self, scores: np.ndarray, allowed: np.ndarray | None = None) -> int:
        """Best arm; ties broken at random (seeded), so that equal untried arms are not always the first."""
        scores = np.asarray(scores, dtype=np.float64)
        if allowed is not None:
            if not allowed.any():
                allowed = np.ones_like(allowed)
            scores = np.where(allowed, scores, -np.inf)
        best = np.flatnonzero(scores >= scores.max() - 1e-12)
        return int(best[0] if len(best) == 1 else self.rng.choice(best))

    def _check(self, context: np.ndarray) -> np.ndarray:
        x = np.asarray(context, dtype=np.float64)
        if x.shape != (self.settings.dim,):
            raise ValueError(f"context has shape {x.shape}, expected ({self.settings.dim},)")
        return x

    def _arm(self, arm: int) -> int:
        if not 0 <= int(arm) < self.settings.arms:
            raise ValueError(f"adapter index {arm} out of range")
        return int(arm)
