"""Where the resident adapters live when a pool has several replicas: the controller chooses a set of adapters
for all ``replicas x capacity`` slots, and placement spreads it with as few page-ins as possible.

1. Each chosen adapter already on a replica stays there (on its first such replica).
2. Each chosen adapter on none goes to the replica with the most room (adapters not chosen make room).
3. Slots still free take second copies of the busiest chosen adapters (``demand``), so that adapter affinity
   can still spread their load.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def place(chosen: Sequence[int], current: Sequence[set[int]], capacity: int,
          demand: np.ndarray | None = None) -> list[set[int]]:
    """Target adapter sets, one per replica, each of at most ``capacity``; ``chosen`` in priority order."""
    replicas = len(current)
    chosen = list(dict.fromkeys(int(a) for a in chosen))[: replicas * capacity]
    target: list[set[int]] = [set() for _ in range(replicas)]
    homeless = []
    for arm in chosen:
        home = next((r for r in range(replicas) if arm in current[r] and len(target[r]) < capacity), None)
        if home is None:
            homeless.append(arm)
        else:
            target[home].add(arm)
    for arm in homeless:
        room = max(range(replicas), key=lambda r: (capacity - len(target[r]), -r))
        if len(target[room]) < capacity:
            target[room].add(arm)
    if demand is not None and chosen:
        busiest = sorted(chosen, key=lambda a: -float(demand[a]))
        for r in range(replicas):
            for arm in busiest:
                if len(target[r]) >= capacity:
                    break
                if arm not in target[r] and (arm in current[r] or float(demand[arm]) > 0):
                    target[r].add(arm)
    return target
