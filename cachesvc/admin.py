"""Admin endpoints behind the admin key: cache statistics and invalidation by category, namespace, tenant or entry."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from aiohttp import web

from cachesvc.errors import RequestError
from cachesvc.semantic_cache import Selector
from cachesvc.state import STATE, ProxyState


def _require_admin(request: web.Request) -> ProxyState:
    state = request.app[STATE]
    key = state.config.server.admin_key
    if not key:
        raise RequestError(403, "Admin endpoints are disabled: set server.admin_key (or CACHESVC__SERVER__ADMIN_KEY).",
                           code="admin_disabled")
    given = request.headers.get("x-admin-key") or request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not hmac.compare_digest(given.encode(), key.encode()):
        raise RequestError(401, "Missing or wrong admin key.", code="invalid_admin_key")
    if not state.ready:
        raise RequestError(503, "The cache is still starting.", code="starting")
    return state


async def stats(request: web.Request) -> web.Response:
    state = _require_admin(request)
    cache = state.cache
    assert cache is not None
    return web.json_response({
        "entries": len(cache),
        "entries_by_category": cache.entries_by_category(),
        "index": cache.index.stats(),
        "store": state.config.cache.store.kind,
        "embedder": {"backend": state.embedder.backend, "batches": state.embedder.batches,
                     "texts": state.embedder.texts},
        "inflight_misses": len(state.flights),
        "upstreams": {
            u.name: {"url": u.config.url, "inflight": u.load.inflight, "load": round(u.load.level(), 3),
                     "pressure": round(u.load.pressure(), 3), "latency_ewma_s": round(u.load.latency_ewma_s, 4),
                     "overload_signals": u.load.overload_signals}
            for u in state.upstreams.upstreams
        },
        "categories": {
            name: {"similarity_threshold": p.similarity_threshold, "ttl_s": p.ttl_s, "max_entries": p.max_entries,
                   "enabled": p.enabled, "semantic": p.semantic}
            for name, p in state.config.cache.categories.items()
        },
    })


async def invalidate(request: web.Request) -> web.Response:
    """Body: any of category, namespace, tenant, api_key, model, entry_id; or {"all": true}. dry_run lists only."""
    state = _require_admin(request)
    try:
        body: Any = await request.json()
    except ValueError:
        raise RequestError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    known = {"category", "namespace", "tenant", "api_key", "model", "entry_id", "all", "dry_run"}
    unknown = set(body) - known
    if unknown:
        raise RequestError(400, f"Unknown field(s) {sorted(unknown)}; known: {sorted(known)}.")
    for name in ("category", "namespace", "tenant", "api_key", "model"):
        if name in body and not isinstance(body[name], str):
            raise RequestError(400, f"'{name}' must be a string.", param=name)
    if "entry_id" in body and (isinstance(body["entry_id"], bool) or not isinstance(body["entry_id"], (int, str))):
        raise RequestError(400, "'entry_id' must be an integer.", param="entry_id")
    tenant = body.get("tenant")
    if tenant is not None and not tenant.startswith(("tenant:", "key:", "anonymous")):
        tenant = "tenant:" + tenant
    if "api_key" in body:
        tenant = "key:" + hashlib.sha256(f"Bearer {body['api_key']}".encode()).hexdigest()[:32]
    try:
        entry_id = int(body["entry_id"]) if "entry_id" in body else None
    except ValueError:
        raise RequestError(400, "'entry_id' must be an integer.", param="entry_id") from None
    selector = Selector(category=body.get("category"), namespace=body.get("namespace"), tenant=tenant,
                        model=body.get("model"), entry_id=entry_id, everything=body.get("all") is True)
    if not selector.everything and selector == Selector():
        raise RequestError(400, "Say what to invalidate (category, namespace, tenant, api_key, model, entry_id) "
                                "or send {\"all\": true}.")
    dry_run = body.get("dry_run") is True
    assert state.cache is not None
    removed = await state.cache.invalidate(selector, dry_run=dry_run)
    return web.json_response({"dry_run": dry_run, "matched": len(removed), "entry_ids": [str(i) for i in removed[:1000]]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/stats", stats)
    app.router.add_post("/admin/invalidate", invalidate)
