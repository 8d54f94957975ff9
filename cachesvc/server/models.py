"""GET /v1/models: the union of every upstream's models, and each adapter pool with its adapters (an adapter's
``parent`` is its pool)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from cachesvc.openai.errors import RequestError
from cachesvc.openai.http import json_response
from cachesvc.server.services import SERVICES
from cachesvc.upstreams.upstream import Upstream


async def list_models(request: web.Request) -> web.Response:
    """An upstream that fails is left out unless all fail; an upstream restricted to some models lists those."""

    async def fetch(upstream: Upstream) -> list[dict[str, Any]]:
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

    services = request.app[SERVICES]
    pooled = [{"id": model, "object": "model", "created": 0, "owned_by": "cachesvc", "root": parent or model,
               "parent": parent} for model, parent in services.pools.models()]
    upstreams = services.upstreams.upstreams
    if not upstreams:
        return json_response({"object": "list", "data": pooled})
    results = await asyncio.gather(*(fetch(u) for u in upstreams), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if len(failures) == len(results):
        first = failures[0]
        if isinstance(first, RequestError):
            raise first
        raise RequestError(502, "No upstream answered /models.", code="upstream_unavailable")
    seen: dict[str, dict[str, Any]] = {str(m["id"]): m for m in pooled}
    for result in results:
        if not isinstance(result, BaseException):
            for model in result:
                seen.setdefault(str(model.get("id")), model)
    return json_response({"object": "list", "data": list(seen.values())})
