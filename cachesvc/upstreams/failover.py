"""Several upstreams serving one model, seen as one ``Upstream``: each request tries them in order of health.

The order is taken afresh for every request: upstreams whose breaker lets a request through first (closed before
half-open, an open one last), then those not full (load level below 1: under their target in-flight count and
latency, no 429/503 within ``overload_hold_s``) before full ones, then config order. So the first listed is the
primary and the others take over while it fails or is full; load is not spread evenly between healthy upstreams.
The attempt loop (``upstream.send_with_failover``) moves to the next one when an upstream fails before its first
byte: no connection, a retried status once its own retries are spent, an open breaker.

A group holds no connection of its own: its members are the pool's upstreams, opened and closed by the pool. Its
``config`` is the first member's, but for ``name`` (the members' names joined by ``+``) and ``stream_usage``
(only if every member takes the option); its ``load`` reads as the least loaded member that would be tried.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import aiohttp

from cachesvc.metrics import Metrics
from cachesvc.upstreams.load import UpstreamLoad
from cachesvc.upstreams.upstream import Upstream, UpstreamTrace, send_with_failover

_BREAKER_RANK = {"closed": 0, "half_open": 1}


class GroupLoad(UpstreamLoad):
    """The load a request to the group meets: the least loaded member whose breaker would let it through."""

    def __init__(self, members: Sequence[Upstream]) -> None:
        super().__init__(members[0].load.config)
        self._members = members

    def level(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        return min((m.load.level(now) for m in self._members if m.breaker.ready()), default=1.0)


class FailoverUpstream(Upstream):
    def __init__(self, members: Sequence[Upstream], metrics: Metrics) -> None:
        if len(members) < 2:
            raise ValueError("a failover group needs at least two upstreams")
        first = members[0]
        config = dataclasses.replace(first.config, name="+".join(m.name for m in members),
                                     stream_usage=all(m.config.stream_usage for m in members))
        super().__init__(config, first.load.config, metrics)
        self.members = list(members)
        self.load = GroupLoad(self.members)

    async def open(self) -> None:
        """Nothing to open: the members are the pool's."""

    async def close(self) -> None:
        """Nothing to close: the members are the pool's."""

    def stats(self) -> dict[str, object]:
        return {"members": [m.name for m in self.members], "order": [m.name for m in self.ranked()]}

    def ranked(self) -> list[Upstream]:
        """The members in the order this request tries them (see the module)."""
        now = time.monotonic()

        def key(item: tuple[int, Upstream]) -> tuple[int, bool, int]:
            index, upstream = item
            breaker = upstream.breaker
            rank = _BREAKER_RANK.get(breaker.state, 1) if breaker.ready() else 2
            return rank, upstream.load.level(now) >= 1.0, index

        return [upstream for _, upstream in sorted(enumerate(self.members), key=key)]

    @asynccontextmanager
    async def request(
        self, method: str, path: str, *, data: bytes | None, client_headers: Mapping[str, str],
        params: Mapping[str, str] | None = None, query: str = "", idempotent: bool = True,
        trace: UpstreamTrace | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """As ``Upstream.request``, over the members in ``ranked`` order."""
        async with send_with_failover(self.ranked(), method, path, data=data, client_headers=client_headers,
                                      params=params, query=query, idempotent=idempotent,
                                      trace=trace) as response:
            yield response
