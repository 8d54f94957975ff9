"""The proxy's aiohttp application: its parts built once, routes, middlewares, and resources opened and closed in
order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from cachesvc.cache.categorizer import Categorizer
from cachesvc.cache.semantic_cache import SemanticCache
from cachesvc.cache.single_flight import SingleFlight
from cachesvc.cache.stores import create_store
from cachesvc.config import Config
from cachesvc.embedding.embedder import Embedder
from cachesvc.metrics import Metrics
from cachesvc.openai.answer import Answer
from cachesvc.openai.http import errors_as_json
from cachesvc.policies.verify.verifier import VERIFIERS
from cachesvc.server.cache_warmup import CacheWarmup
from cachesvc.server.completions import CompletionsService
from cachesvc.server.middlewares import reject_undecodable_headers
from cachesvc.server.routes import add_routes
from cachesvc.server.services import SERVICES, ProxyServices
from cachesvc.upstreams.pool import UpstreamPool


def create_app(config: Config, *, embedder: Embedder | None = None, model: tuple[Any, Any] | None = None
               ) -> web.Application:
    """Build the proxy; the cache comes online in the background while requests already pass through. Without
    upstreams the reference model server runs in-process (``model``: an already loaded ``(model, tokenizer)``)."""
    cache_config = config.cache
    if cache_config.verifier not in VERIFIERS:
        raise ValueError(f"cache.verifier: unknown verifier {cache_config.verifier!r} (known: {sorted(VERIFIERS)})")
    store = create_store(cache_config.store)  # fails on an unknown store name before any port opens
    app = web.Application(client_max_size=config.server.max_body_bytes,
                          middlewares=[errors_as_json, reject_undecodable_headers])
    engine = None
    if config.embedded_model_server:
        from cachesvc.upstreams.embedded import embed_model_server

        engine, serve_model = embed_model_server(config, model)
        app.cleanup_ctx.append(serve_model)
    metrics = Metrics()
    upstreams = UpstreamPool(config.upstreams, cache_config.load_policy, metrics)
    embedder = embedder or Embedder(cache_config.embedding)
    categorizer = Categorizer()
    cache = SemanticCache(cache_config, store, VERIFIERS[cache_config.verifier]().verify, metrics)
    flights: SingleFlight[Answer] = SingleFlight()
    completions = CompletionsService(config, cache=cache, embedder=embedder, categorizer=categorizer,
                                     upstreams=upstreams, flights=flights, metrics=metrics)
    warmup = CacheWarmup(cache_config, embedder, categorizer, cache)
    app[SERVICES] = ProxyServices(config=config, metrics=metrics, upstreams=upstreams, embedder=embedder, cache=cache,
                                  flights=flights, warmup=warmup, completions=completions, model_engine=engine)
    add_routes(app)
    app.cleanup_ctx.append(_upstreams)
    app.cleanup_ctx.append(warmup.lifetime)
    return app


async def _upstreams(app: web.Application) -> AsyncIterator[None]:
    upstreams = app[SERVICES].upstreams
    await upstreams.open()
    yield
    await upstreams.close()
