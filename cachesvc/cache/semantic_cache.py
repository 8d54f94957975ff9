"""The two-tier cache: an exact tier keyed by the normalized request, then a semantic tier over per-partition vector
indexes, with a verifier between "similar" and "served". Quotas are per category; TTLs per entry.

Eviction within a category over quota: expired entries first, then least recently used. LRU because repetition
in cached workloads is skewed (power-law for code): recently hit entries are the likely next hits, and LRU needs
O(1) bookkeeping and no tuning, unlike frequency counts that keep a once-popular answer forever.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from cachesvc.cache.entry import CacheEntry, EntryDraft, EntryScope
from cachesvc.cache.partitioned_index import PartitionedIndex
from cachesvc.cache.selector import Selector
from cachesvc.cache.stores.base import DocumentStore
from cachesvc.cache.vector_index import HnswParams
from cachesvc.config import CacheConfig
from cachesvc.metrics import Metrics
from cachesvc.openai.answer import Answer
from cachesvc.policies.cache.load_adaptive import EffectivePolicy
from cachesvc.policies.verify.judgement import PairJudge


@dataclass(frozen=True)
class Hit:
    entry: CacheEntry
    tier: str  # "exact" or "semantic"
    similarity: float
    confidence: float | None = None  # the verifier's probability that the answer serves the query (semantic)


class _Live(NamedTuple):
    """What the cache keeps in memory per entry: enough to enforce quotas and invalidate without the store."""

    scope: EntryScope
    expires_at: float


@dataclass
class LookupTimings:
    search_s: float = 0.0
    verify_s: float = 0.0
    fetch_s: float = 0.0
    rejections: list[str] = field(default_factory=list)
    best_rejected: tuple[CacheEntry, float, float] | None = None  # (entry, similarity, probability) of a near miss


class SemanticCache:
    def __init__(
        self,
        config: CacheConfig,
        store: DocumentStore,
        verifier: PairJudge,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock  # wall-clock seconds; injectable so benchmarks can simulate hours of traffic
        self._config = config
        self._store = store
        self._verifier = verifier
        self._metrics = metrics
        self._index: PartitionedIndex | None = None  # made by start(), once the embedding width is known
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vector-index")
        self._live: dict[int, _Live] = {}
        self._lru: dict[str, OrderedDict[int, None]] = {}
        self._by_exact: dict[str, int] = {}
        self._lock = asyncio.Lock()  # serializes writes (insert, evict, invalidate) on the loop

    @property
    def index(self) -> PartitionedIndex:
        if self._index is None:
            raise RuntimeError("SemanticCache used before start()")
        return self._index

    @property
    def ready(self) -> bool:
        """Started: the store is open and the index rebuilt."""
        return self._index is not None

    async def start(self, dim: int) -> int:
        """Open the store and rebuild the index of ``dim``-wide vectors from it (oldest first, so LRU order ≈
        age); returns the entries loaded."""
        index = PartitionedIndex(dim, promote_at=self._config.index.promote_at, hnsw_params=HnswParams(
            M=self._config.index.m, ef_construction=self._config.index.ef_construction,
            ef_search=self._config.index.ef_search))
        await self._store.open()
        entries = [entry async for entry in self._store.scan()]
        entries.sort(key=lambda e: e.created_at)
        now = self._clock()
        for entry in entries:
            if entry.is_expired(now):
                continue
            self._remember(entry)
            if entry.vector is not None:
                index.add(entry.scope.partition, entry.entry_id, entry.vector)
        self._index = index
        self._update_gauges()
        return len(self._live)

    async def close(self) -> None:
        await self._store.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- lookup -------------------------------------------------------------------------------------------

    async def lookup_exact(self, exact_key: str, policies: Callable[[str], EffectivePolicy],
                           max_age_s: float | None) -> Hit | None:
        entry_id = self._by_exact.get(exact_key)
        if entry_id is None:
            return None
        start = time.perf_counter()
        entry = await self._store.get(entry_id)
        self._metrics.record_lookup_stage("fetch", time.perf_counter() - start)
        if entry is None:
            return None
        if not self._servable(entry, policies(entry.scope.category), max_age_s):
            return None
        self._touch(entry)
        return Hit(entry, "exact", 1.0)

    async def lookup_semantic(
        self, partition: str, query: str, vector: np.ndarray, policy: EffectivePolicy, max_age_s: float | None,
        timings: LookupTimings,
    ) -> Hit | None:
        """Nearest neighbours in the request's partition above the pre-filter threshold, judged in one batch; the
        best-ranked one the verifier accepts is served."""
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        candidates = await loop.run_in_executor(
            self._executor, self.index.search, partition, vector, self._config.index.candidates
        )
        timings.search_s = time.perf_counter() - t0
        shortlist: list[tuple[CacheEntry, float]] = []
        t1 = time.perf_counter()
        for entry_id, similarity in candidates:
            if similarity < policy.threshold:
                break
            live = self._live.get(entry_id)
            if live is None or live.scope.partition != partition:
                continue
            entry = await self._store.get(entry_id)
            if entry is not None and entry.query is not None and self._servable(entry, policy, max_age_s):
                shortlist.append((entry, float(similarity)))
        timings.fetch_s = time.perf_counter() - t1
        if not shortlist:
            return None
        t2 = time.perf_counter()  # off the loop: the verifier's cost grows with the questions
        judged = await loop.run_in_executor(
            self._executor, functools.partial(self._verifier.judge, query,
                                              [(entry.query or "", sim) for entry, sim in shortlist],
                                              policy.category, pressure=policy.pressure))
        timings.verify_s = time.perf_counter() - t2
        for (entry, similarity), judgement in zip(shortlist, judged, strict=True):
            if judgement.accepted:
                self._touch(entry)
                return Hit(entry, "semantic", similarity, judgement.probability)
            reason = judgement.verdict().reason
            timings.rejections.append(reason)
            self._metrics.record_verifier_rejection(reason)
            if timings.best_rejected is None or judgement.probability > timings.best_rejected[2]:
                timings.best_rejected = (entry, similarity, judgement.probability)
        return None

    def verifier_bar(self, category: str, pressure: float = 0.0) -> float:
        """The probability the verifier asks of a candidate in ``category`` at this upstream pressure."""
        return self._verifier.bar(category, pressure)

    def _servable(self, entry: CacheEntry, policy: EffectivePolicy, max_age_s: float | None) -> bool:
        now = self._clock()
        age = entry.age(now)
        if entry.is_expired(now) or age > entry.ttl_s * policy.ttl_factor:
            return False
        return max_age_s is None or age <= max_age_s

    def _touch(self, entry: CacheEntry) -> None:
        order = self._lru.get(entry.scope.category)
        if order is not None and entry.entry_id in order:
            order.move_to_end(entry.entry_id)

    # ---- insert -------------------------------------------------------------------------------------------

    async def insert(self, draft: EntryDraft, answer: Answer) -> CacheEntry | None:
        """Store a complete answer; replaces an entry with the same exact key. Returns None if it is too large."""
        if len(answer.to_json()) > self._config.max_entry_bytes:
            self._metrics.record_write_skipped("too_large")
            return None
        entry = CacheEntry.from_draft(secrets.randbits(62), draft, answer, self._clock())
        scope = entry.scope
        async with self._lock:
            previous = self._by_exact.get(scope.exact_key)
            if previous is not None:
                await self._remove([previous], "replaced")
            await self._store.put(entry)
            self._remember(entry)
            if entry.vector is not None:
                await asyncio.get_running_loop().run_in_executor(
                    self._executor, self.index.add, scope.partition, entry.entry_id, entry.vector
                )
            await self._enforce_quota(scope.category)
        self._update_gauges()
        return entry

    def _remember(self, entry: CacheEntry) -> None:
        self._live[entry.entry_id] = _Live(entry.scope, entry.expires_at)
        self._lru.setdefault(entry.scope.category, OrderedDict())[entry.entry_id] = None
        self._by_exact[entry.scope.exact_key] = entry.entry_id

    async def _enforce_quota(self, category: str) -> None:
        policy = self._config.category(category)
        order = self._lru.get(category)
        if order is None or len(order) <= policy.max_entries:
            return
        now = self._clock()
        expired = [i for i in order if self._live[i].expires_at <= now]
        await self._remove(expired, "expired")
        excess = len(order) - policy.max_entries
        if excess > 0:
            await self._remove(list(order)[:excess], "quota")

    async def _remove(self, entry_ids: Iterable[int], reason: str) -> list[int]:
        ids = [i for i in entry_ids if i in self._live]
        if not ids:
            return []
        await self._store.delete(ids)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, _delete_all, self.index, ids)
        for entry_id in ids:
            scope = self._live.pop(entry_id).scope
            self._lru.get(scope.category, OrderedDict()).pop(entry_id, None)
            if self._by_exact.get(scope.exact_key) == entry_id:
                del self._by_exact[scope.exact_key]
            self._metrics.record_eviction(scope.category, reason)
        return ids

    # ---- maintenance --------------------------------------------------------------------------------------

    async def invalidate(self, selector: Selector, dry_run: bool = False) -> list[int]:
        async with self._lock:
            ids = [i for i, live in self._live.items() if selector.matches(i, live.scope)]
            if not dry_run:
                await self._remove(ids, "invalidated")
        self._update_gauges()
        return ids

    async def sweep_expired(self) -> int:
        async with self._lock:
            now = self._clock()
            removed = await self._remove([i for i, live in self._live.items() if live.expires_at <= now], "expired")
        self._update_gauges()
        return len(removed)

    def entries_by_category(self) -> dict[str, int]:
        return {category: len(order) for category, order in self._lru.items() if order}

    def stats(self) -> dict[str, Any]:
        """What admin shows of the cache: entries by category, the index and the store."""
        return {"entries": len(self), "entries_by_category": self.entries_by_category(),
                "index": self.index.stats() if self.ready else None, "store": self._store.name}

    def __len__(self) -> int:
        return len(self._live)

    def _update_gauges(self) -> None:
        for category in self._config.categories:
            self._metrics.set_entries(category, len(self._lru.get(category, ())))


def _delete_all(index: PartitionedIndex, ids: list[int]) -> None:
    for entry_id in ids:
        index.delete(entry_id)
