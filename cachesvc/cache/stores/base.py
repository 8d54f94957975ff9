"""The document store protocol: where entries live, apart from the in-memory vector index."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Protocol

from cachesvc.cache.entry import CacheEntry


class StoreUnavailable(OSError):
    """The store could not be reached or refused the command (a networked store); the message names where it is
    without any password. The cache then serves straight from the upstream until the store answers again."""


class DocumentStore(Protocol):
    """Async so that a networked store (Redis) fits; an entry is written whole or not at all."""

    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, entry: CacheEntry) -> None:
        """Insert or replace by entry_id."""

    async def get(self, entry_id: int) -> CacheEntry | None: ...

    async def get_by_exact_key(self, exact_key: str) -> CacheEntry | None: ...

    async def delete(self, entry_ids: Iterable[int]) -> int:
        """Remove entries; returns how many existed."""

    def scan(self) -> AsyncIterator[CacheEntry]:
        """Every stored entry, for rebuilding the index at start-up."""

    async def count(self) -> int: ...
