"""The aiohttp application: routes, middlewares, and resources opened and closed in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, AsyncIterator

from aiohttp import web

from cachesvc.config import Config
from cachesvc.embedder import Embedder
from cachesvc.metrics import Metrics
from cachesvc.policies.category_classifier import CategoryClassifier
from cachesvc.policies.verifier import VERIFIERS
from cachesvc.errors import errors_as_json
from cachesvc.routes import add_routes
from cachesvc.semantic_cache import SemanticCache
from cachesvc.state import STATE, ProxyState
from cachesvc.stores import create_store
from cachesvc.upstream import UpstreamPool

log = logging.getLogger("cachesvc")
SWEEP_INTERVAL_S = 60.0


def create_app(config: Config, *, embedder: Embedder | None = None, model: tuple[Any, Any] | None = None
               ) -> web.Application:
    """Build the proxy; the cache comes online in the background while requests already pass through. Without
    upstreams the reference model server runs in-process (``model``: an already loaded ``(model, tokenizer)``)."""
    if config.cache.verifier not in VERIFIERS:
        raise ValueError(f"cache.verifier: unknown verifier {config.cache.verifier!r} (known: {sorted(VERIFIERS)})")
    create_store(config.cache.store)  # fail at start-up on an unknown store name, before any port opens
    app = web.Application(client_max_size=config.server.max_body_bytes, middlewares=[errors_as_json])
    engine = None
    if config.embedded_model_server:
        from cachesvc.embedded_upstream import embed_model_server

        engine, serve_model = embed_model_server(config, model)
        app.cleanup_ctx.append(serve_model)
    metrics = Metrics()
    app[STATE] = ProxyState(
        config=config, metrics=metrics, upstreams=UpstreamPool(config.upstreams, config.cache.load_policy, metrics),
        embedder=embedder or Embedder(config.cache.embedding), model_engine=engine,
    )
    add_routes(app)
    app.cleanup_ctx.append(_upstreams)
    app.cleanup_ctx.append(_cache)
    return app


async def _upstreams(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    await state.upstreams.open()
    yield
    await state.upstreams.close()


async def _cache(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    if not state.config.cache.enabled:
        yield
        return
    starting = asyncio.create_task(_start_cache(state))
    sweeper = asyncio.create_task(_sweep(state))
    yield
    for task in (starting, sweeper):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if state.cache is not None:
        await state.cache.close()
    await state.embedder.close()


async def _start_cache(state: ProxyState) -> None:
    """Load the embedding model and classifier, open the store, rebuild the index; then serve from cache."""
    config = state.config.cache
    try:
        await state.embedder.start()
        state.classifier = await asyncio.to_thread(CategoryClassifier.from_embedder, state.embedder.encode_now)
        verifier = VERIFIERS[config.verifier]()
        cache = SemanticCache(config, create_store(config.store), verifier.verify, state.metrics, state.embedder.dim)
        loaded = await cache.start()
        state.cache = cache
        log.info("cache ready: %d entries from the %s store", loaded, config.store.kind)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        state.startup_error = f"{exc.__class__.__name__}: {exc}"
        log.exception("the cache failed to start; requests pass through uncached")


async def _sweep(state: ProxyState) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        if state.cache is not None:
            await state.cache.sweep_expired()
