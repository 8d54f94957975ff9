"""The default store: entries in this process's memory, gone at exit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from cachesvc.cache.entry import CacheEntry
from cachesvc.cache.stores import register_store
from cachesvc.config import StoreConfig


@register_store("memory")
class MemoryStore:
    name = "memory"

    def __init__(self, config: StoreConfig | None = None) -> None:
        self._entries: dict[int, CacheEntry] = {}
        self._by_exact: dict[str, int] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def put(self, entry: CacheEntry) -> None:
        old = self._entries.get(entry.entry_id)
        if old is not None and self._by_exact.get(old.scope.exact_key) == old.entry_id:
            del self._by_exact[old.scope.exact_key]
        self._entries[entry.entry_id] = entry
        self._by_exact[entry.scope.exact_key] = entry.entry_id

    async def get(self, entry_id: int) -> CacheEntry | None:
        return self._entries.get(entry_id)

    async def get_by_exact_key(self, exact_key: str) -> CacheEntry | None:
        entry_id = self._by_exact.get(exact_key)
        return None if entry_id is None else self._entries.get(entry_id)

    async def delete(self, entry_ids: Iterable[int]) -> int:
        removed = 0
        for entry_id in entry_ids:
            entry = self._entries.pop(entry_id, None)
            if entry is not None:
                removed += 1
                if self._by_exact.get(entry.scope.exact_key) == entry_id:
                    del self._by_exact[entry.scope.exact_key]
        return removed

    async def scan(self) -> AsyncIterator[CacheEntry]:
        for entry in list(self._entries.values()):
            yield entry

    async def count(self) -> int:
        return len(self._entries)
