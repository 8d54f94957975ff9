"""Admin endpoints behind the admin key: cache statistics and invalidation by category, namespace, tenant or entry."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from cachesvc.cache.selector import Selector
from cachesvc.openai.errors import RequestError
from cachesvc.openai.http import json_response, read_json
from cachesvc.server.services import SERVICES, ProxyServices
from cachesvc.server.tenants import api_key_of, tenant_named, tenant_of_api_key

_FIELDS = {"category", "namespace", "tenant", "api_key", "model", "entry_id", "all", "dry_run"}
_TEXT_FIELDS = ("category", "namespace", "tenant", "api_key", "model")


def _require_admin(request: web.Request) -> ProxyServices:
    services = request.app[SERVICES]
    key = services.config.server.admin_key
    if not key:
        raise RequestError(403, "Admin endpoints are disabled: set server.admin_key (or CACHESVC__SERVER__ADMIN_KEY).",
                           code="admin_disabled")
    authorization = {"Authorization": request.headers.get("Authorization", "")}
    given = request.headers.get("x-admin-key") or api_key_of(authorization)
    if not hmac.compare_digest((given or "").encode("utf-8", "surrogateescape"), key.encode()):
        raise RequestError(401, "Missing or wrong admin key.", code="invalid_admin_key")
    if not services.ready:
        raise RequestError(503, "The cache is still starting.", code="starting")
    return services


async def stats(request: web.Request) -> web.Response:
    services = _require_admin(request)
    categories = services.config.cache.categories
    return json_response({
        **services.cache.stats(),
        "embedder": services.embedder.stats(),
        "inflight_misses": len(services.flights),
        "upstreams": services.upstreams.stats(),
        "categories": {name: policy.summary() for name, policy in categories.items()},
    })


async def invalidate(request: web.Request) -> web.Response:
    """Body: any of category, namespace, tenant, api_key, model, entry_id; or {"all": true}. dry_run lists only."""
    services = _require_admin(request)
    selector, dry_run = _selector(await read_json(request, services.config.server.max_body_bytes))
    removed = await services.cache.invalidate(selector, dry_run=dry_run)
    return json_response({"dry_run": dry_run, "matched": len(removed), "entry_ids": [str(i) for i in removed[:1000]]})


def _selector(body: Any) -> tuple[Selector, bool]:
    """The entries an invalidation body names, and whether it only lists them; a clear 400 for anything else."""
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    unknown = set(body) - _FIELDS
    if unknown:
        raise RequestError(400, f"Unknown field(s) {sorted(unknown)}; known: {sorted(_FIELDS)}.")
    for name in _TEXT_FIELDS:
        if name in body and not isinstance(body[name], str):
            raise RequestError(400, f"'{name}' must be a string.", param=name)
    tenant = tenant_named(body["tenant"]) if "tenant" in body else None
    if "api_key" in body:
        tenant = tenant_of_api_key(body["api_key"])
    entry_id = None
    if "entry_id" in body:
        value = body["entry_id"]
        try:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ValueError
            entry_id = int(value)
        except ValueError:
            raise RequestError(400, "'entry_id' must be an integer.", param="entry_id") from None
    selector = Selector(category=body.get("category"), namespace=body.get("namespace"), tenant=tenant,
                        model=body.get("model"), entry_id=entry_id, everything=body.get("all") is True)
    if selector.empty:
        raise RequestError(400, "Say what to invalidate (category, namespace, tenant, api_key, model, entry_id) "
                                "or send {\"all\": true}.")
    return selector, body.get("dry_run") is True


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/stats", stats)
    app.router.add_post("/admin/invalidate", invalidate)
