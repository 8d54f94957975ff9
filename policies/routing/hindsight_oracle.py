"""The best fixed resident set in hindsight (offline only): given every request's true expected reward per
adapter, the set of ``capacity`` adapters that, routing each request to its best member, earns the most. Exact by
enumeration when sets x requests is small enough, else greedy plus swaps (resident_set), which can only
under-estimate the best set's reward."""

from __future__ import annotations

import itertools
import math

import numpy as np

from .resident_set import choose_resident

MAX_ENUMERATED_CELLS = 2_000_000_000  # sets x requests x capacity: past it, greedy plus swaps


def best_fixed_set(expected: np.ndarray, capacity: int) -> tuple[np.ndarray, float]:
    """(bool mask, total expected reward) of the best fixed set for ``expected`` (T, N)."""
    arms = expected.shape[1]
    capacity = min(capacity, arms)
    if math.comb(arms, capacity) * expected.shape[0] * capacity <= MAX_ENUMERATED_CELLS:
        best_set, best_total = None, -np.inf
        for subset in itertools.combinations(range(arms), capacity):
            total = float(expected[:, subset].max(axis=1).sum())
            if total > best_total:
                best_set, best_total = subset, total
        mask = np.zeros(arms, dtype=bool)
        mask[list(best_set or ())] = True
        return mask, best_total
    mask = choose_resident(expected, capacity, np.zeros(arms, dtype=bool), np.zeros(arms), local_search=True)
    return mask, float(expected[:, mask].max(axis=1).sum())
