"""The two-tier cache: an exact tier keyed by the normalized request, then a semantic tier over per-partition vector
indexes, with a verifier between "similar" and "served". Quotas are per category; TTLs per entry.

Eviction within a category (or a tenant) over quota: expired entries first, then least recently used. LRU because
repetition in cached workloads is skewed (power-law for code): recently hit entries are the likely next hits, and
LRU needs O(1) bookkeeping and no tuning, unlike frequency counts that keep a once-popular answer forever.

With a shared store (`SharedStore`: Redis) several replicas serve one cache. Each keeps its own exact map and vector
index; it follows the store's change feed (`FeedFollower`) to adopt the others' inserts and drop their deletions, and
an exact-tier miss asks the store before it counts (an answer cached a moment ago elsewhere is already a hit). Only
the replica that inserts enforces the quotas, so replicas never race each other into evicting twice. While the store
is unreachable (`StoreHealth`) the cache stays out of the request path; the follower reconnects, then reads on from
its last position, or rescans when the feed no longer reaches back (or the store lost its data).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import numpy as np

from cachesvc.cache.entry import CacheEntry, EntryDraft, EntryScope
from cachesvc.cache.partitioned_index import PartitionedIndex
from cachesvc.cache.selector import Selector
from cachesvc.cache.store_health import StoreHealth
from cachesvc.cache.stores.base import DocumentStore, StoreUnavailable
from cachesvc.cache.stores.change_feed import START, Change, SharedStore
from cachesvc.cache.vector_index import HnswParams
from cachesvc.config import CacheConfig
from cachesvc.metrics import Metrics
from cachesvc.openai.answer import Answer
from cachesvc.policies.cache.load_adaptive import EffectivePolicy
from cachesvc.policies.verify.judgement import PairJudge

log = logging.getLogger(__name__)
T = TypeVar("T")
TenantQuota = Callable[[str], "int | None"]  # a tenant's most entries (None: no limit of its own)
_PROGRESS_EVERY_S = 2.0  # a long rebuild logs how far it got this often
_LOAD_BATCH = 512  # entries a rebuild or resync indexes at a time


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
    created_at: float


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
        tenant_quota: TenantQuota | None = None,
        follow: bool = True,
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
        self._by_tenant: dict[str, OrderedDict[int, None]] = {}  # LRU per tenant, for the tenants' quotas
        self._tenant_quota = tenant_quota
        self._lock = asyncio.Lock()  # serializes writes (insert, evict, invalidate, other replicas' changes)
        self._shared: SharedStore | None = store if isinstance(store, SharedStore) else None
        self.health = StoreHealth(metrics)
        self.feed_position = START  # the change feed's last position applied here
        self.loaded = 0  # entries loaded so far by a rebuild in progress
        self._follow = follow
        self.closing = False  # close() asks the feed follower to stop
        self._removed_while_scanning: set[int] | None = None  # a resync's scan must not bring these back
        self._follower: asyncio.Task[None] | None = None

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
        if self._shared is not None:  # changes from here on are read from the feed after the scan (again: harmless)
            self.feed_position = await self._shared.feed_position()
        await self._load(index, self._store.scan())
        self._index = index
        self._update_gauges()
        if self._shared is not None and self._follow:
            from cachesvc.cache.feed_follower import FeedFollower

            self._follower = asyncio.create_task(FeedFollower(self, self._shared, self._config.store).run())
        return len(self._live)

    async def _load(self, index: PartitionedIndex, entries: AsyncIterator[CacheEntry],
                    guard: asyncio.Lock | None = None) -> int:
        """Remember the live entries streamed from a scan that are not known here yet and add their vectors to
        ``index`` in batches off the loop, logging progress; afterwards each category's LRU order is by age.
        With ``guard``, each batch is applied holding it, and the scan itself holds nothing, so writers wait for
        one batch at most. Returns the entries loaded."""
        loop = asyncio.get_running_loop()
        started = last_log = time.monotonic()
        batch: list[CacheEntry] = []
        loaded = 0

        async def flush() -> None:
            nonlocal loaded
            async with guard if guard is not None else contextlib.nullcontext():
                removed = self._removed_while_scanning or ()
                fresh = [e for e in batch if e.entry_id not in self._live and e.entry_id not in removed]
                for entry in fresh:
                    self._remember(entry)
                await loop.run_in_executor(self._executor, _add_all, index, fresh)
            loaded += len(fresh)
            self.loaded = loaded
            batch.clear()

        now = self._clock()
        self.loaded = scanned = 0
        async for entry in entries:
            scanned += 1
            if entry.is_expired(now):
                continue
            batch.append(entry)
            if len(batch) >= _LOAD_BATCH:
                await flush()
            if time.monotonic() - last_log >= _PROGRESS_EVERY_S:
                last_log = time.monotonic()
                log.info("rebuilding the cache index from the %s store: %d entries so far (%.0f/s)",
                         self._store.name, scanned, scanned / max(1e-9, last_log - started))
        if batch:
            await flush()
        async with guard if guard is not None else contextlib.nullcontext():
            for orders in (self._lru, self._by_tenant):
                for key, order in orders.items():
                    orders[key] = OrderedDict.fromkeys(sorted(order, key=lambda i: self._live[i].created_at))
        if loaded:
            log.info("loaded %d entries from the %s store in %.2f s", loaded, self._store.name,
                     time.monotonic() - started)
        return loaded

    async def close(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:  # it stops after its current read (cancelling redis-py mid-XREAD can wedge it)
            self.closing = True
            done, _ = await asyncio.wait({follower}, timeout=self._config.store.feed_block_s + 1.0)
            if not done:
                follower.cancel()
                await asyncio.wait({follower}, timeout=1.0)
        await self._store.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def shared(self) -> bool:
        """The store is shared with other replicas (it has a change feed)."""
        return self._shared is not None

    async def _store_call(self, call: Awaitable[T]) -> T:
        """A store call on the request path: an unreachable store marks the cache degraded and raises on."""
        try:
            return await call
        except StoreUnavailable as exc:
            self.health.down(str(exc))
            raise

    # ---- lookup -------------------------------------------------------------------------------------------

    async def lookup_exact(self, exact_key: str, policies: Callable[[str], EffectivePolicy],
                           max_age_s: float | None) -> Hit | None:
        """The entry under the exact key, if servable. With a shared store a local miss asks the store (another
        replica may have cached it since the feed last spoke), and the entry found is adopted here."""
        if self.health.degraded:
            return None
        entry_id = self._by_exact.get(exact_key)
        if entry_id is None and self._shared is None:
            return None
        start = time.perf_counter()
        try:
            if entry_id is not None:
                entry = await self._store_call(self._store.get(entry_id))
            else:
                entry = await self._store_call(self._store.get_by_exact_key(exact_key))
        except StoreUnavailable:
            return None
        self._metrics.record_lookup_stage("fetch", time.perf_counter() - start)
        if entry is None:
            if entry_id is not None and self._shared is not None:
                await self._forget_gone(entry_id)
            return None
        if not self._servable(entry, policies(entry.scope.category), max_age_s):
            return None
        if entry_id is None:
            await self._adopt([entry])
        self._touch(entry)
        return Hit(entry, "exact", 1.0)

    async def lookup_semantic(
        self, partition: str, query: str, vector: np.ndarray, policy: EffectivePolicy, max_age_s: float | None,
        timings: LookupTimings,
    ) -> Hit | None:
        """Nearest neighbours in the request's partition above the pre-filter threshold, judged in one batch; the
        best-ranked one the verifier accepts is served."""
        if self.health.degraded:
            return None
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
            try:
                entry = await self._store_call(self._store.get(entry_id))
            except StoreUnavailable:
                return None
            if entry is None and self._shared is not None:
                await self._forget_gone(entry_id)
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
        for order in (self._lru.get(entry.scope.category), self._by_tenant.get(entry.scope.tenant)):
            if order is not None and entry.entry_id in order:
                order.move_to_end(entry.entry_id)

    # ---- insert -------------------------------------------------------------------------------------------

    async def insert(self, draft: EntryDraft, answer: Answer) -> CacheEntry | None:
        """Store a complete answer; replaces an entry with the same exact key. Returns None if it is too large."""
        if len(answer.to_json()) > self._config.max_entry_bytes:
            self._metrics.record_write_skipped("too_large")
            return None
        if self.health.degraded:
            self._metrics.record_write_skipped("store_unavailable")
            return None
        entry = CacheEntry.from_draft(secrets.randbits(62), draft, answer, self._clock())
        scope = entry.scope
        try:
            async with self._lock:
                previous = self._by_exact.get(scope.exact_key)
                if previous is not None:
                    await self._remove([previous], "replaced")
                await self._store_call(self._store.put(entry))
                self._remember(entry)
                if entry.vector is not None:
                    await asyncio.get_running_loop().run_in_executor(
                        self._executor, self.index.add, scope.partition, entry.entry_id, entry.vector
                    )
                await self._enforce_quota(scope.category, scope.tenant)
        except StoreUnavailable:
            self._metrics.record_write_skipped("store_unavailable")
            return None
        finally:
            self._update_gauges()
        return entry

    def _remember(self, entry: CacheEntry) -> None:
        scope = entry.scope
        self._live[entry.entry_id] = _Live(scope, entry.expires_at, entry.created_at)
        self._lru.setdefault(scope.category, OrderedDict())[entry.entry_id] = None
        self._by_tenant.setdefault(scope.tenant, OrderedDict())[entry.entry_id] = None
        current = self._by_exact.get(scope.exact_key)
        # two replicas that missed at once each stored an answer: every replica names the newer one, the same one
        if current is None or current not in self._live or (
                (self._live[current].created_at, current) <= (entry.created_at, entry.entry_id)):
            self._by_exact[scope.exact_key] = entry.entry_id

    async def _enforce_quota(self, category: str, tenant: str) -> None:
        """The category's quota, then the tenant's: expired entries go first, then the least recently used."""
        await self._enforce(self._lru.get(category), self._config.category(category).max_entries)
        quota = self._tenant_quota(tenant) if self._tenant_quota is not None else None
        if quota is not None:
            await self._enforce(self._by_tenant.get(tenant), quota, "tenant_quota")

    async def _enforce(self, order: OrderedDict[int, None] | None, limit: int, reason: str = "quota") -> None:
        if order is None or len(order) <= limit:
            return
        now = self._clock()
        await self._remove([i for i in order if self._live[i].expires_at <= now], "expired")
        excess = len(order) - limit
        if excess <= 0:
            return
        victims = list(itertools.islice(order, excess))
        existed = await self._store_call(self._store.delete(victims))
        await self._forget(victims, reason)
        # Victims already gone from a shared store were evicted by another replica for its own insert, which this
        # replica has not adopted yet: that many more go, or the store would stay over the quota once it has.
        shortfall = min(len(victims) - existed, len(order))
        if shortfall > 0 and self._shared is not None:
            await self._remove(list(itertools.islice(order, shortfall)), reason)

    async def _remove(self, entry_ids: Iterable[int], reason: str) -> list[int]:
        """Delete from the store, then forget here."""
        ids = [i for i in entry_ids if i in self._live]
        if ids:
            await self._store_call(self._store.delete(ids))
        return await self._forget(ids, reason)

    async def _forget(self, entry_ids: Iterable[int], reason: str) -> list[int]:
        """Drop entries from this replica's maps and index only (the store already lost them, or drops them by
        itself)."""
        ids = [i for i in entry_ids if i in self._live]
        if not ids:
            return []
        if self._removed_while_scanning is not None:
            self._removed_while_scanning.update(ids)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, _delete_all, self.index, ids)
        for entry_id in ids:
            scope = self._live.pop(entry_id).scope
            self._lru.get(scope.category, OrderedDict()).pop(entry_id, None)
            self._by_tenant.get(scope.tenant, OrderedDict()).pop(entry_id, None)
            if self._by_exact.get(scope.exact_key) == entry_id:
                del self._by_exact[scope.exact_key]
            self._metrics.record_eviction(scope.category, reason)
        return ids

    async def _forget_gone(self, entry_id: int) -> None:
        """The shared store no longer has an entry this replica knows (deleted elsewhere, the feed not read yet, or
        evicted by Redis under maxmemory): forget it here."""
        async with self._lock:
            await self._forget([entry_id], "gone")
        self._update_gauges()

    async def _adopt(self, entries: Sequence[CacheEntry]) -> int:
        """Remember entries another replica stored (not already known here, not expired) and index their vectors."""
        now = self._clock()
        fresh = [e for e in entries if e.entry_id not in self._live and not e.is_expired(now)]
        if not fresh:
            return 0
        async with self._lock:
            fresh = [e for e in fresh if e.entry_id not in self._live]
            for entry in fresh:
                self._remember(entry)
            await asyncio.get_running_loop().run_in_executor(self._executor, _add_all, self.index, fresh)
        self._update_gauges()
        return len(fresh)

    # ---- other replicas (a shared store) --------------------------------------------------------------------

    async def apply_changes(self, changes: Sequence[Change]) -> int:
        """Apply other replicas' changes from the feed, in order: their puts fetched in one round trip and adopted,
        their deletions forgotten. StoreUnavailable when the fetch fails (nothing is applied then)."""
        if self._shared is None:
            raise RuntimeError("apply_changes needs a shared store")
        own = self._shared.origin
        theirs = [c for c in changes if c.origin != own]
        puts = [c.entry_id for c in theirs if c.op == "put" and c.entry_id not in self._live]
        fetched = {e.entry_id: e for e in await self._shared.get_many(puts) if e is not None} if puts else {}
        now = self._clock()
        applied = 0
        for change in theirs:
            if change.op == "put":
                entry = fetched.pop(change.entry_id, None)
                done = await self._adopt([entry]) if entry is not None else 0
            else:
                async with self._lock:
                    done = len(await self._forget([change.entry_id], "replica"))
            applied += done
            self._metrics.record_feed_change(change.op, now - change.at, applied=bool(done))
        self._update_gauges()
        return applied

    async def resync(self) -> tuple[int, int]:
        """Rescan the shared store (the feed did not reach back, or the store lost its data): adopt what is new,
        forget what the store no longer has; returns (adopted, forgotten). The feed is followed from the position
        taken before the scan, so changes made during it are applied after. Requests go on during the scan:
        inserts wait for one batch at most, and an entry removed here meanwhile is not brought back."""
        if self._shared is None:
            raise RuntimeError("resync needs a shared store")
        position = await self._shared.feed_position()
        scan_started = self._clock()
        seen: set[int] = set()

        async def stream() -> AsyncIterator[CacheEntry]:
            async for entry in self._store.scan():
                seen.add(entry.entry_id)
                yield entry

        self._removed_while_scanning = set()  # the follower is the one caller: no other feed changes meanwhile
        try:
            adopted = await self._load(self.index, stream(), guard=self._lock)
            async with self._lock:
                # entries stored here since the scan began may not have been scanned: keep those
                gone = [i for i, live in self._live.items() if i not in seen and live.created_at < scan_started]
                forgotten = len(await self._forget(gone, "resync"))
        finally:
            self._removed_while_scanning = None
        self.feed_position = position
        self._metrics.record_feed_resync()
        self._update_gauges()
        log.info("resynchronised with the %s store: %d entries adopted, %d forgotten", self._store.name, adopted,
                 forgotten)
        return adopted, forgotten

    # ---- maintenance --------------------------------------------------------------------------------------

    async def invalidate(self, selector: Selector, dry_run: bool = False) -> list[int]:
        async with self._lock:
            ids = [i for i, live in self._live.items() if selector.matches(i, live.scope)]
            if not dry_run:
                await self._remove(ids, "invalidated")
        self._update_gauges()
        return ids

    async def sweep_expired(self) -> int:
        """Drop expired entries. A shared store expires them by itself (every replica holds the same expiry), so
        only this replica's maps are swept then."""
        async with self._lock:
            now = self._clock()
            expired = [i for i, live in self._live.items() if live.expires_at <= now]
            if self._shared is not None:
                removed = await self._forget(expired, "expired")
            else:
                removed = await self._remove(expired, "expired")
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


def _add_all(index: PartitionedIndex, entries: list[CacheEntry]) -> None:
    for entry in entries:
        if entry.vector is not None:
            index.add(entry.scope.partition, entry.entry_id, entry.vector)


def _delete_all(index: PartitionedIndex, ids: list[int]) -> None:
    for entry_id in ids:
        index.delete(entry_id)
