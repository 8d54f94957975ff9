"""Routes besides the cached completions: models, health, metrics, and plain pass-through of other /v1 calls."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from cachesvc import admin
from cachesvc.errors import RequestError, error_response
from cachesvc.proxy import cache_endpoint
from cachesvc.state import STATE
from cachesvc.upstream import HOP_BY_HOP


async def healthz(request: web.Request) -> web.Response:
    """200 once the embedding model is loaded and the index rebuilt (and the embedded model server, if any, has
    its model); 503 (with the reason) before that."""
    state = request.app[STATE]
    engine = state.model_engine
    if engine is not None and engine.status != "ready":
        body = {"status": "error" if engine.load_error else "starting", "model": engine.status}
        return web.json_response({**body, "error": engine.load_error} if engine.load_error else body, status=503)
    if not state.config.cache.enabled:
        return web.json_response({"status": "ok", "cache": "disabled"})
    if state.startup_error:
        return web.json_response({"status": "error", "error": state.startup_error}, status=503)
    if not state.ready:
        return web.json_response({"status": "starting"}, status=503)
    assert state.cache is not None
    return web.json_response({"status": "ok", "entries": len(state.cache)})


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.Response(body=state.metrics.render(), headers={"Content-Type": state.metrics.content_type})


async def list_models(request: web.Request) -> web.Response:
    """The union of every upstream's /models; an upstream that fails is left out unless all fail."""
    state = request.app[STATE]

    async def fetch(upstream):  # type: ignore[no-untyped-def]
        async with upstream.request("GET", "models", data=None, client_headers=request.headers) as response:
            if response.status != 200:
                raise RequestError(response.status, f"Upstream {upstream.name!r} answered {response.status}.")
            body = await response.json(content_type=None)
        models = body.get("data", []) if isinstance(body, dict) else []
        if upstream.config.models:
            listed = {m.get("id") for m in models}
            models = [m for m in models if m.get("id") in upstream.config.models] + [
                {"id": name, "object": "model", "created": 0, "owned_by": upstream.name}
                for name in upstream.config.models if name not in listed
            ]
        return models

    results = await asyncio.gather(*(fetch(u) for u in state.upstreams.upstreams), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if len(failures) == len(results):
        first = failures[0]
        if isinstance(first, RequestError):
            raise first
        raise RequestError(502, "No upstream answered /models.", code="upstream_unavailable")
    seen: dict[str, dict] = {}
    for result in results:
        if not isinstance(result, BaseException):
            for model in result:
                seen.setdefault(str(model.get("id")), model)
    return web.json_response({"object": "list", "data": list(seen.values())})


async def passthrough(request: web.Request) -> web.StreamResponse:
    """Any other /v1 call goes to the default upstream untouched, streamed both ways."""
    state = request.app[STATE]
    upstream = state.upstreams.default
    body = await request.read() if request.can_read_body else None
    if body and request.content_type == "application/json":
        try:
            model = json.loads(body).get("model")
        except (ValueError, AttributeError):
            model = None
        if isinstance(model, str):
            upstream = state.upstreams.for_model(model)
    tail = request.match_info["tail"]
    async with upstream.request(request.method, tail, data=body, client_headers=request.headers,
                                params=request.query) as upstream_response:
        headers = {k: v for k, v in upstream_response.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["x-cachesvc-cache"] = "bypass"
        response = web.StreamResponse(status=upstream_response.status, headers=headers)
        await response.prepare(request)
        try:
            async for chunk in upstream_response.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            upstream_response.close()
        return response


async def _post_only(request: web.Request) -> web.Response:
    return error_response(405, f"{request.method} is not allowed on {request.path}; use POST.",
                          headers={"Allow": "POST"})


def add_routes(app: web.Application) -> None:
    for path, endpoint in (("/v1/chat/completions", "chat"), ("/v1/completions", "completions")):
        app.router.add_post(path, cache_endpoint(endpoint))  # type: ignore[arg-type]
        app.router.add_route("*", path, _post_only)
    app.router.add_get("/v1/models", list_models)
    app.router.add_route("*", "/v1/{tail:.*}", passthrough)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    admin.add_routes(app)
