"""Admin endpoints behind the admin key: cache statistics, invalidation by category, namespace, tenant or entry, and
the explanation of one verifier decision."""

from __future__ import annotations

import asyncio
import functools
import hmac
from typing import Any

import numpy as np
from aiohttp import web

from cachesvc.cache.selector import Selector
from cachesvc.cache.stores.base import StoreUnavailable
from cachesvc.openai.errors import RequestError
from cachesvc.openai.http import json_response, read_json
from cachesvc.server.services import SERVICES, ProxyServices
from cachesvc.server.tenants import TenantResolver, api_key_of, tenant_named

_FIELDS = {"category", "namespace", "tenant", "api_key", "model", "entry_id", "all", "dry_run"}
_TEXT_FIELDS = ("category", "namespace", "tenant", "api_key", "model")


def _require_admin(request: web.Request, *, cache_ready: bool = True) -> ProxyServices:
    services = request.app[SERVICES]
    key = services.config.server.admin_key
    if not key:
        raise RequestError(403, "Admin endpoints are disabled: set server.admin_key (or CACHESVC__SERVER__ADMIN_KEY).",
                           code="admin_disabled")
    authorization = {"Authorization": request.headers.get("Authorization", "")}
    given = request.headers.get("x-admin-key") or api_key_of(authorization)
    if not hmac.compare_digest((given or "").encode("utf-8", "surrogateescape"), key.encode()):
        raise RequestError(401, "Missing or wrong admin key.", code="invalid_admin_key")
    if cache_ready and not services.ready:
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
        "verifier": services.verifier.stats(),
        "agreement": services.agreement.stats(),
        "judge": services.judge.stats() if services.judge is not None else None,
        "adapter_pools": services.pools.stats() if services.pools else None,
    })


async def explain(request: web.Request) -> web.Response:
    """Body: {"query", "cached", "category"?}. Why the cache would or would not serve ``cached``'s answer for
    ``query``: similarity, pre-filter threshold, rules fired, WordNet relations, the model's probability, its bar."""
    services = _require_admin(request)
    body = await read_json(request, services.config.server.max_body_bytes)
    if not isinstance(body, dict) or set(body) - {"query", "cached", "category"}:
        raise RequestError(400, "The body must be a JSON object with 'query', 'cached' and optionally 'category'.")
    limit = services.config.cache.max_query_chars
    for name in ("query", "cached"):
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            raise RequestError(400, f"'{name}' must be a non-empty string.", param=name)
        if len(value) > limit:
            raise RequestError(400, f"'{name}' is longer than cache.max_query_chars ({limit}).", param=name)
    category = body.get("category")
    if category is not None and (not isinstance(category, str) or category not in services.config.cache.categories):
        raise RequestError(400, f"'category' must be one of {sorted(services.config.cache.categories)}.",
                           param="category")
    query, cached = body["query"], body["cached"]
    vector = await services.embedder.embed(query)
    cached_vector = await services.embedder.embed(cached)
    similarity = float(np.dot(vector, cached_vector))
    if category is None:
        category = await services.completions.classify(query, vector)
    policy = services.config.cache.category(category)
    judged = await asyncio.get_running_loop().run_in_executor(
        None, functools.partial(services.verifier.judge, query, [(cached, similarity)], category, explain=True))
    judgement = judged[0]
    evidence = judgement.evidence
    if similarity < policy.similarity_threshold:
        decision = "miss: similarity under the category's pre-filter threshold"
    elif not policy.semantic:
        decision = "miss: the category is exact-only"
    else:
        decision = "serve" if judgement.accepted else "miss: probability under the bar"
    return json_response({
        "category": category, "similarity": round(similarity, 4), "prefilter_threshold": policy.similarity_threshold,
        "verifier": services.verifier.name, "probability": round(judgement.probability, 4),
        "bar": round(judgement.bar, 4), "target_precision": services.verifier.target_precision(category),
        "rule": judgement.rule or None, "decision": decision,
        "left_over": {"query": list(evidence.left_a), "cached": list(evidence.left_b)} if evidence else None,
        "relations": [{"query_word": a, "cached_word": b, "wordnet": rel, "word_similarity": sim}
                      for a, b, rel, sim in evidence.relations] if evidence else [],
        "features": {k: round(v, 4) for k, v in judgement.features.items()},
    })


async def invalidate(request: web.Request) -> web.Response:
    """Body: any of category, namespace, tenant, api_key, model, entry_id; or {"all": true}. dry_run lists only."""
    services = _require_admin(request)
    selector, dry_run = _selector(await read_json(request, services.config.server.max_body_bytes), services.tenants)
    try:
        removed = await services.cache.invalidate(selector, dry_run=dry_run)
    except StoreUnavailable as exc:  # nothing was forgotten here that the store still holds
        raise RequestError(503, f"The shared store is unavailable; nothing was invalidated: {exc}",
                           code="store_unavailable") from None
    return json_response({"dry_run": dry_run, "matched": len(removed), "entry_ids": [str(i) for i in removed[:1000]]})


def _selector(body: Any, tenants: TenantResolver) -> tuple[Selector, bool]:
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
        tenant = tenants.of_api_key(body["api_key"])
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


async def adapters(request: web.Request) -> web.Response:
    """GET /admin/adapters: every adapter pool, what is resident where, and the router's estimates per adapter."""
    services = _require_admin(request, cache_ready=False)  # pools route whether the cache is up or not
    return json_response({"pools": [pool.describe() for pool in services.pools.pools]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/stats", stats)
    app.router.add_get("/admin/adapters", adapters)
    app.router.add_post("/admin/invalidate", invalidate)
    app.router.add_post("/admin/explain", explain)
