"""One vector index per cache partition, so isolation between partitions is structural.

A partition key (tenant + model + system prompt + history + params) names its own index; a search
only ever looks at that one index, so no filter callback exists that could leak entries between
tenants. Small partitions are exact FlatIndexes; a partition is promoted to an HnswIndex once it
holds `promote_at` live entries, and dropped when it becomes empty.

Locking (thread-safe; called from executor threads, never touches asyncio):
  - `_lock` (global) guards only the two dicts and is held for dict operations, never for a search
    or an index mutation;
  - each partition's `mu` serializes that partition's mutations (and its promotion);
  - searches take neither: they use the index's own readers/writer lock.
Order is always `mu` before `_lock`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from cachesvc.cache.vector_index import FlatIndex, HnswIndex, HnswParams

__all__ = ["PartitionedIndex"]


@dataclass(eq=False)
class _Partition:
    index: FlatIndex | HnswIndex
    mu: threading.Lock = field(default_factory=threading.Lock)
    dropped: bool = False  # set under mu once the partition left the map; writers must retry


class PartitionedIndex:
    """Maps partition key -> vector index; ids are globally unique across partitions."""

    def __init__(self, dim: int, *, promote_at: int = 2048, hnsw_params: HnswParams | None = None) -> None:
        if promote_at < 1:
            raise ValueError("promote_at must be >= 1")
        self.dim = dim
        self.promote_at = promote_at
        self.hnsw_params = hnsw_params or HnswParams()
        self._lock = threading.Lock()
        self._parts: dict[str, _Partition] = {}
        self._where: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._where)

    def add(self, partition: str, id: int, vector: np.ndarray) -> None:
        """Insert or replace `id` in `partition`; an id living in another partition is moved."""
        id = int(id)
        with self._lock:
            old = self._where.get(id)
        if old is not None and old != partition:
            self.delete(id)
        while True:
            with self._lock:
                part = self._parts.get(partition)
                if part is None:
                    part = self._parts[partition] = _Partition(FlatIndex(self.dim))
            with part.mu:
                if part.dropped:
                    continue  # emptied or dropped between lookup and lock: use the new one
                part.index.add([id], vector)
                with self._lock:
                    # clear() may have detached this partition while we waited for mu.
                    if self._parts.get(partition) is part:
                        self._where[id] = partition
                if isinstance(part.index, FlatIndex) and len(part.index) >= self.promote_at:
                    self._promote(part)
                return

    def _promote(self, part: _Partition) -> None:
        """Rebuild a flat partition as HNSW; caller holds part.mu, so no writes race the rebuild."""
        ids, vecs = part.index.items()
        hnsw = HnswIndex(self.dim, self.hnsw_params, capacity=max(2 * len(ids), self.hnsw_params.initial_capacity))
        hnsw.add(ids, vecs)
        part.index = hnsw  # searches still running on the flat index finish there and re-check

    def search(self, partition: str, vector: np.ndarray, k: int = 4) -> list[tuple[int, float]]:
        """Top-k (id, cosine similarity) within one partition, best first."""
        with self._lock:
            part = self._parts.get(partition)
        if part is None:
            return []
        while True:
            index = part.index
            hits = index.search(vector, k)
            if part.dropped:
                return []
            if part.index is index:
                return hits
            # Promoted meanwhile: a delete may already have gone to the new index only.

    def delete(self, id: int) -> None:
        """Remove `id` from whichever partition holds it; unknown ids are ignored."""
        id = int(id)
        with self._lock:
            name = self._where.get(id)
            part = self._parts.get(name) if name is not None else None
        if name is None:
            return
        if part is None:  # stale mapping to a partition that no longer exists
            with self._lock:
                if self._where.get(id) == name and name not in self._parts:
                    del self._where[id]
            return
        with part.mu:
            if part.dropped:
                return
            part.index.delete(id)
            with self._lock:
                if self._where.get(id) == name:
                    del self._where[id]
                if len(part.index) == 0:
                    part.dropped = True
                    if self._parts.get(name) is part:
                        del self._parts[name]

    def drop_partition(self, partition: str) -> list[int]:
        """Remove a whole partition; returns the ids it held."""
        with self._lock:
            part = self._parts.pop(partition, None)
        if part is None:
            return []
        with part.mu:
            part.dropped = True
            ids = part.index.items()[0].tolist()
            with self._lock:
                for i in ids:
                    if self._where.get(i) == partition:
                        del self._where[i]
        return ids

    def clear(self) -> None:
        """Remove every partition."""
        with self._lock:
            parts = list(self._parts.values())
            self._parts = {}
            self._where = {}
        for part in parts:
            with part.mu:
                part.dropped = True

    def partition_of(self, id: int) -> str | None:
        """The partition currently holding `id`, if any."""
        with self._lock:
            return self._where.get(int(id))

    def stats(self) -> dict[str, int]:
        """Counts for /stats and logs: partitions, entries, and how many are HNSW vs flat."""
        with self._lock:
            parts = list(self._parts.values())
            entries = len(self._where)
        hnsw = sum(1 for p in parts if isinstance(p.index, HnswIndex))
        return {
            "partitions": len(parts),
            "entries": entries,
            "hnsw_partitions": hnsw,
            "flat_partitions": len(parts) - hnsw,
            "promote_at": self.promote_at,
        }
