"""Keeps one replica's cache in step with a shared store: reads the store's change feed from the last position
applied and hands the other replicas' changes to the cache; when the store is unreachable, marks the cache degraded
and reconnects with capped exponential backoff; when the feed cannot continue (a gap), has the cache rescan."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from cachesvc.cache.stores.base import StoreUnavailable
from cachesvc.cache.stores.change_feed import SharedStore
from cachesvc.config import StoreConfig

if TYPE_CHECKING:
    from cachesvc.cache.semantic_cache import SemanticCache

log = logging.getLogger(__name__)
FEED_BATCH = 500  # changes read per call
_FIRST_BACKOFF_S = 0.05


class FeedFollower:
    def __init__(self, cache: SemanticCache, store: SharedStore, config: StoreConfig) -> None:
        self._cache = cache
        self._store = store
        self._block_s = config.feed_block_s
        self._max_backoff_s = config.resync_max_backoff_s

    async def run(self) -> None:
        """Follow until the cache closes (or cancelled); never raises otherwise."""
        backoff = _FIRST_BACKOFF_S
        health = self._cache.health
        while not self._cache.closing:
            try:
                if health.degraded:
                    await self._store.ping()
                await self.step(block_s=0.0 if health.degraded else self._block_s)
                health.up()
                backoff = _FIRST_BACKOFF_S
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:
                health.down(str(exc))
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # jittered: replicas don't reconnect in step
                backoff = min(backoff * 2, self._max_backoff_s)
            except Exception:  # a bug must not stop the replica following: log it, back off, go on
                log.exception("change feed: applying a batch failed; retrying")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)

    async def step(self, *, block_s: float = 0.0) -> int:
        """Read and apply one batch (rescanning on a gap); returns the changes applied."""
        cache = self._cache
        batch = await self._store.read_feed(cache.feed_position, block_s=block_s, count=FEED_BATCH)
        if batch.gap:
            log.warning("change feed: changes after %s are gone from the store (trimmed, or the store lost its data);"
                        " rescanning", cache.feed_position)
            adopted, forgotten = await cache.resync()
            return adopted + forgotten
        applied = await cache.apply_changes(batch.changes) if batch.changes else 0
        cache.feed_position = batch.position
        return applied
