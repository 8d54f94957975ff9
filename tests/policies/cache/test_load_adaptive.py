from __future__ import annotations

from cachesvc.policies.cache.categories import DEFAULT_CATEGORIES
from cachesvc.policies.cache.load_adaptive import effective_policy


def test_effective_policy_moves_within_bounds() -> None:
    policy = DEFAULT_CATEGORIES["volatile"]
    calm, busy, half = effective_policy(policy, 0), effective_policy(policy, 1), effective_policy(policy, 0.5)
    assert calm.threshold == policy.similarity_threshold and calm.ttl_factor == 1
    assert busy.threshold == policy.threshold_floor and busy.ttl_factor == policy.max_ttl_factor
    assert busy.threshold <= half.threshold <= calm.threshold
    assert effective_policy(policy, 7).threshold == busy.threshold
