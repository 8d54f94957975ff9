from __future__ import annotations

import asyncio

from cachesvc.cache.single_flight import SingleFlight


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
