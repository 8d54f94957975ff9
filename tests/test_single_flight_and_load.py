from __future__ import annotations

import asyncio

from cachesvc.config import LoadPolicyConfig
from cachesvc.policies.categories import DEFAULT_CATEGORIES
from cachesvc.policies.load_adaptive import effective_policy
from cachesvc.single_flight import SingleFlight
from cachesvc.upstream_load import UpstreamLoad


async def test_single_flight_one_leader_many_followers() -> None:
    flights: SingleFlight[str] = SingleFlight()
    calls = 0

    async def work() -> str | None:
        nonlocal calls
        flight = flights.join("k")
        if not flight.leader:
            return await flights.wait(flight)
        calls += 1
        await asyncio.sleep(0.05)
        flights.land(flight, "answer")
        return "answer"

    assert await asyncio.gather(*(work() for _ in range(10))) == ["answer"] * 10
    assert calls == 1 and len(flights) == 0


async def test_followers_of_a_failed_leader_get_none_and_next_call_leads() -> None:
    flights: SingleFlight[str] = SingleFlight()
    leader = flights.join("k")
    follower = flights.join("k")
    assert leader.leader and not follower.leader
    flights.land(leader, None)
    assert await flights.wait(follower) is None
    assert flights.join("k").leader


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


def test_effective_policy_moves_within_bounds() -> None:
    policy = DEFAULT_CATEGORIES["volatile"]
    calm, busy, half = effective_policy(policy, 0), effective_policy(policy, 1), effective_policy(policy, 0.5)
    assert calm.threshold == policy.similarity_threshold and calm.ttl_factor == 1
    assert busy.threshold == policy.threshold_floor and busy.ttl_factor == policy.max_ttl_factor
    assert busy.threshold <= half.threshold <= calm.threshold
    assert effective_policy(policy, 7).threshold == busy.threshold
