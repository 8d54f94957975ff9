"""GET /healthz and GET /metrics."""

from __future__ import annotations

from aiohttp import web

from cachesvc.openai.http import json_response
from cachesvc.server.services import SERVICES


async def healthz(request: web.Request) -> web.Response:
    """200 once the embedding model is loaded and the index rebuilt (and the embedded model server, if any, has
    its model); 503 (with the reason) before that. 200 with status "degraded" and the reason while a shared store
    is unreachable: requests are then served straight from the upstream."""
    services = request.app[SERVICES]
    engine = services.model_engine
    if engine is not None and engine.status != "ready":
        body = {"status": "error" if engine.load_error else "starting", "model": engine.status}
        return json_response({**body, "error": engine.load_error} if engine.load_error else body, status=503)
    if not services.config.cache.enabled:
        return json_response({"status": "ok", "cache": "disabled"})
    if services.warmup.error:
        return json_response({"status": "error", "error": services.warmup.error}, status=503)
    degraded = services.cache.health.status()
    if degraded is not None:  # still serving (from the upstream): 200, so a load balancer keeps sending traffic
        return json_response({"status": "degraded", "store": services.config.cache.store.kind, **degraded,
                              "entries": len(services.cache)})
    if not services.ready:
        return json_response({"status": "starting", "loaded": services.cache.loaded}, status=503)
    return json_response({"status": "ok", "entries": len(services.cache)})


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[SERVICES].metrics
    return web.Response(body=registry.render(), headers={"Content-Type": registry.content_type})
