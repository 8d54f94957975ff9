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
from cachesvc.routing.pools import AdapterPools
from cachesvc.server.cache_warmup import CacheWarmup
from cachesvc.server.completions import CompletionsService
from cachesvc.server.drain import IN_FLIGHT, InFlight
from cachesvc.server.middlewares import reject_undecodable_headers, request_ids, stamp_request_id
from cachesvc.server.rate_limits import TenantRateLimits
from cachesvc.server.routes import add_routes
from cachesvc.server.services import SERVICES, ProxyServices
from cachesvc.server.tenants import TenantResolver
from cachesvc.upstreams.pool import UpstreamPool
from cachesvc.verifier.agreement import AgreementMonitor
from cachesvc.verifier.judge import Judge
from cachesvc.verifier.runtime import VerifierRuntime


def create_app(config: Config, *, embedder: Embedder | None = None, model: tuple[Any, Any] | None = None
               ) -> web.Application:
    """Build the proxy; the cache comes online in the background while requests already pass through. Without
    upstreams the reference model server runs in-process (``model``: an already loaded ``(model, tokenizer)``)."""
    cache_config = config.cache
    embedder = embedder or Embedder(cache_config.embedding)
    verifier = VerifierRuntime(cache_config, embedder.encoder)  # fails on an unknown verifier name before any port
    store = create_store(cache_config.store)  # fails on an unknown store name before any port opens
    metrics = Metrics()
    tenants = TenantResolver(config.tenants, metrics)  # fails on a key variable that is not set, likewise
    limits = TenantRateLimits.from_config(config, metrics)
    in_flight = InFlight()
    app = web.Application(client_max_size=config.server.max_body_bytes,
                          # undecodable headers first: nothing after may have to encode one
                          middlewares=[in_flight.track, reject_undecodable_headers, request_ids, errors_as_json,
                                       tenants.middleware])
    app[IN_FLIGHT] = in_flight
    app.on_response_prepare.append(stamp_request_id)
    engine = None
    if config.embedded_model_server:
        from cachesvc.upstreams.embedded import embed_model_server

        engine, serve_model = embed_model_server(config, model)
        app.cleanup_ctx.append(serve_model)
    upstreams = UpstreamPool(config.upstreams, cache_config.load_policy, metrics)
    pools = AdapterPools(config.adapter_pools, cache_config.load_policy, metrics)
    categorizer = Categorizer()
    cache = SemanticCache(cache_config, store, verifier, metrics, tenant_quota=tenants.max_entries)
    flights: SingleFlight[Answer] = SingleFlight()
    judge = Judge(cache_config.judge) if cache_config.judge is not None else None
    agreement = AgreementMonitor(cache_config, metrics, verifier, embedder.embed, judge)
    completions = CompletionsService(config, cache=cache, embedder=embedder, categorizer=categorizer,
                                     upstreams=upstreams, flights=flights, metrics=metrics, judge=judge,
                                     agreement=agreement, pools=pools, tenants=tenants, limits=limits)
    warmup = CacheWarmup(cache_config, embedder, categorizer, cache, verifier, embeddings_needed=bool(pools))
    app[SERVICES] = ProxyServices(config=config, metrics=metrics, upstreams=upstreams, embedder=embedder, cache=cache,
                                  flights=flights, warmup=warmup, completions=completions, model_engine=engine,
                                  verifier=verifier, judge=judge, agreement=agreement, pools=pools,
                                  tenants=tenants, limits=limits)
    add_routes(app)
    app.cleanup_ctx.append(_upstreams)
    app.cleanup_ctx.append(_verification)
    app.cleanup_ctx.append(warmup.lifetime)
    app.cleanup_ctx.append(limits.lifetime)
    return app


async def _verification(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    if services.judge is not None:
        await services.judge.open()
    yield
    await services.agreement.close()
    if services.judge is not None:
        await services.judge.close()


async def _upstreams(app: web.Application) -> AsyncIterator[None]:
    upstreams, pools = app[SERVICES].upstreams, app[SERVICES].pools
    await upstreams.open()
    await pools.open()
    yield
    await pools.close()
    await upstreams.close()
