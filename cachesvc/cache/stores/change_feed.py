"""The protocol of a store that several replicas share: besides the documents, a change feed (every put and delete,
in the order the store applied them) that each replica follows to keep its in-memory index in step.

Positions are opaque strings the store hands out; a replica keeps the last one it applied and reads on from there.
A feed is finite: a replica that fell further behind than the feed keeps, or a store that lost its data, gets a
batch with ``gap`` set, and must rescan the documents instead of reading on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from cachesvc.cache.entry import CacheEntry
from cachesvc.cache.stores.base import DocumentStore

START = "0-0"  # the position before the first change


@dataclass(frozen=True)
class Change:
    """One applied write: ``put`` (the entry now exists, fetch it by id) or ``delete``."""

    op: Literal["put", "delete"]
    entry_id: int
    origin: str  # the writing store instance's id: a replica skips its own changes
    at: float  # when the store applied it, unix seconds (the store's clock)


@dataclass(frozen=True)
class FeedBatch:
    changes: Sequence[Change]
    position: str  # where to read on from (the last change's position, or the one asked for when none came)
    gap: bool = False  # changes after the asked position are lost: rescan, then follow from ``position``


@runtime_checkable
class SharedStore(DocumentStore, Protocol):
    """A document store with a change feed; `SemanticCache` follows it when the store is one."""

    origin: str

    async def feed_position(self) -> str:
        """The position of the newest change (START when none yet): follow from here after a scan begun now."""

    async def read_feed(self, position: str, *, block_s: float, count: int) -> FeedBatch:
        """Changes after ``position``, waiting up to ``block_s`` for the first, at most ``count``."""

    async def get_many(self, entry_ids: Iterable[int]) -> list[CacheEntry | None]:
        """The entries in one round trip, None for each that is gone."""

    async def ping(self) -> None:
        """Return when the store answers; raise when it cannot."""
