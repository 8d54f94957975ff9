"""The cache controller's choice: which adapters to keep resident for the next epoch.

Objective over the recent contexts ``x`` (values ``v[x, a]``, the router's optimistic reward estimates):
``F(C) = scale * sum_x max_{a in C} v[x, a] - sum_{a in C, not resident now} page_cost[a]``, ``|C| <= capacity``.
The first term is monotone submodular (a facility-location sum), the second modular, so greedy selection is within
(1 - 1/e) of the best for the first term; ``local_search`` then swaps one member for one outsider while that
improves ``F`` (POLAR+'s better optimiser). Slots the objective leaves free keep their current adapters: evicting
costs nothing, but neither does keeping.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

MAX_SWAP_ROUNDS = 64


def objective(values: np.ndarray, chosen: Iterable[int], current: np.ndarray, page_cost: np.ndarray,
              scale: float) -> float:
    """``F(C)`` as above (0 coverage for an empty set)."""
    members = sorted(set(chosen))
    if not members or not len(values):
        coverage = 0.0
    else:
        coverage = float(values[:, members].max(axis=1).sum())
    paging = float(sum(page_cost[a] for a in members if not current[a]))
    return scale * coverage - paging


def choose_resident(values: np.ndarray, capacity: int, current: np.ndarray, page_cost: np.ndarray, *,
                    scale: float = 1.0, forced: Iterable[int] = (), local_search: bool = False) -> np.ndarray:
    """The resident set (a bool mask) that (approximately) maximises ``F``; ``forced`` adapters are always in."""
    arms = values.shape[1]
    current = np.asarray(current, dtype=bool)
    chosen = list(dict.fromkeys(int(a) for a in forced))[:capacity]
    best = values[:, chosen].max(axis=1) if chosen and len(values) else np.zeros(len(values))
    added_cost = np.where(current, 0.0, page_cost)
    while len(chosen) < capacity:
        gains = scale * np.maximum(values - best[:, None], 0.0).sum(axis=0) - added_cost
        gains[chosen] = -np.inf
        arm = int(np.argmax(gains))
        if not np.isfinite(gains[arm]) or gains[arm] <= 0:
            break
        chosen.append(arm)
        best = np.maximum(best, values[:, arm])
    if local_search and chosen:
        chosen = _swap(values, chosen, len(set(forced)), current, page_cost, scale)
    mask = np.zeros(arms, dtype=bool)
    mask[chosen] = True
    keep = [a for a in np.flatnonzero(current) if not mask[a]]
    if keep:  # free slots keep what is there, the most valuable first
        worth = values[:, keep].sum(axis=0) if len(values) else np.zeros(len(keep))
        for a in np.asarray(keep)[np.argsort(-worth, kind="stable")][: capacity - int(mask.sum())]:
            mask[a] = True
    return mask


def _swap(values: np.ndarray, chosen: list[int], pinned: int, current: np.ndarray, page_cost: np.ndarray,
          scale: float) -> list[int]:
    """Best single swaps (member out, outsider in) while one improves ``F``; the first ``pinned`` never leave."""
    chosen = list(chosen)
    score = objective(values, chosen, current, page_cost, scale)
    for _ in range(MAX_SWAP_ROUNDS):
        best_move, best_score = None, score + 1e-9
        outsiders = [a for a in range(values.shape[1]) if a not in chosen]
        for i in range(pinned, len(chosen)):
            rest = chosen[:i] + chosen[i + 1:]
            for b in outsiders:
                candidate = objective(values, rest + [b], current, page_cost, scale)
                if candidate > best_score:
                    best_move, best_score = (i, b), candidate
        if best_move is None:
            break
        chosen[best_move[0]] = best_move[1]
        score = best_score
    return chosen
