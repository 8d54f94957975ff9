from __future__ import annotations

from cachesvc.config import LoadPolicyConfig
from cachesvc.upstreams.load import UpstreamLoad


def test_load_level_from_inflight_latency_and_overload() -> None:
    load = UpstreamLoad(LoadPolicyConfig(target_inflight=10, target_latency_s=2.0, start_at=0.5, overload_hold_s=5))
    assert load.level() == 0 and load.pressure() == 0
    for _ in range(5):
        load.started()
    assert load.level() == 0.5 and load.pressure() == 0
    for _ in range(5):
        load.started()
    assert load.level() == 1 and load.pressure() == 1
    for _ in range(10):
        load.finished(0.1, 200)
    assert load.level() < 0.1
    load.started()
    load.finished(0.1, 429)
    assert load.level() == 1.0
    assert load.level(now=load.overloaded_until + 1) < 1.0


def test_disabled_load_policy_never_relaxes() -> None:
    load = UpstreamLoad(LoadPolicyConfig(enabled=False, target_inflight=1))
    load.started()
    assert load.level() == 1 and load.pressure() == 0
