"""Load-adaptive category policy: under upstream pressure, serve a little more from cache, within set bounds.

At pressure p in [0, 1] the similarity threshold moves linearly from its normal value down to the category's
floor, and entries stay servable up to ttl * (1 + p * (max_ttl_factor - 1)). At p = 0 nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from cachesvc.policies.cache.categories import CategoryPolicy


@dataclass(frozen=True)
class EffectivePolicy:
    category: str
    threshold: float
    ttl_factor: float  # an entry is served while its age <= its ttl_s * ttl_factor
    pressure: float


def effective_policy(policy: CategoryPolicy, pressure: float) -> EffectivePolicy:
    p = max(0.0, min(1.0, pressure))
    threshold = policy.similarity_threshold - p * (policy.similarity_threshold - policy.threshold_floor)
    return EffectivePolicy(policy.name, threshold, 1.0 + p * (policy.max_ttl_factor - 1.0), p)
