"""Brings the cache online in the background while requests already pass through: loads the embedding model, fits
the category classifier, loads the verifier (WordNet, the pair model), opens the store and rebuilds the index; then
sweeps expired entries now and then."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from cachesvc.cache.categorizer import Categorizer
from cachesvc.cache.semantic_cache import SemanticCache
from cachesvc.cache.stores.base import StoreUnavailable
from cachesvc.config import CacheConfig
from cachesvc.embedding.embedder import Embedder
from cachesvc.verifier.runtime import VerifierRuntime

log = logging.getLogger("cachesvc")
SWEEP_INTERVAL_S = 60.0


class CacheWarmup:
    def __init__(self, config: CacheConfig, embedder: Embedder, categorizer: Categorizer,
                 cache: SemanticCache, verifier: VerifierRuntime, *, embeddings_needed: bool = False) -> None:
        self._config = config
        self._embeddings_needed = embeddings_needed  # adapter pools route on query embeddings, cache or not
        self._embedder = embedder
        self._categorizer = categorizer
        self._cache = cache
        self._verifier = verifier
        self.error: str | None = None  # why the cache failed to start; requests then pass through uncached

    @property
    def ready(self) -> bool:
        return self._cache.ready

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        """An aiohttp cleanup context: start in the background, sweep while the app runs, close in order."""
        if not self._config.enabled:
            started = asyncio.create_task(self._start_embedder()) if self._embeddings_needed else None
            yield
            if started is not None:
                started.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await started
                await self._embedder.close()
            return
        tasks = [asyncio.create_task(self._start()), asyncio.create_task(self._sweep())]
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._cache.ready:
            await self._cache.close()
        await self._embedder.close()

    async def _start(self) -> None:
        try:
            await self._embedder.start()
            await self._categorizer.start(self._embedder.encode_now)
            await asyncio.to_thread(self._verifier.load)
            loaded = await self._start_cache()
            log.info("cache ready: %d entries from the %s store", loaded, self._config.store.kind)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = f"{exc.__class__.__name__}: {exc}"
            log.exception("the cache failed to start; requests pass through uncached")

    async def _start_cache(self) -> int:
        """Open the store and rebuild the index; a shared store that cannot be reached is retried (capped backoff)
        while requests go straight upstream and /healthz says degraded."""
        backoff = 0.1
        health = self._cache.health
        while True:
            try:
                loaded = await self._cache.start(self._embedder.dim)
            except StoreUnavailable as exc:
                health.down(str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._config.store.resync_max_backoff_s)
                continue
            health.up()
            return loaded

    async def _start_embedder(self) -> None:
        try:
            await self._embedder.start()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = f"{exc.__class__.__name__}: {exc}"
            log.exception("the embedding model failed to load; adapter pools route without query context")

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            if self._cache.ready:
                await self._cache.sweep_expired()
