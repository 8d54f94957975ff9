"""Identical concurrent misses go upstream once: the first is the leader, the rest wait for its answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Flight(Generic[T]):
    key: str
    leader: bool
    future: asyncio.Future[T | None]


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[T | None]] = {}

    def join(self, key: str) -> Flight[T]:
        """Lead a new flight for `key`, or follow the one already in the air."""
        future = self._inflight.get(key)
        if future is not None:
            return Flight(key, False, future)
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        return Flight(key, True, future)

    def land(self, flight: Flight[T], result: T | None) -> None:
        """The leader's outcome: a shareable result, or None (followers then go upstream themselves)."""
        if not flight.leader:
            return
        if self._inflight.get(flight.key) is flight.future:
            del self._inflight[flight.key]
        if not flight.future.done():
            flight.future.set_result(result)

    async def wait(self, flight: Flight[T]) -> T | None:
        """A follower's wait; shielded so one follower giving up does not cancel the others."""
        return await asyncio.shield(flight.future)

    def __len__(self) -> int:
        return len(self._inflight)
