"""POST /v1/chat/completions and /v1/completions: look up, or forward and remember.

bypass (no lookup, no write) -> exact tier -> embed + classify -> semantic tier -> single flight -> upstream,
streamed back as it arrives; a complete, successful answer is stored before the stream's `[DONE]` goes out.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from cachesvc.answer import Answer, StreamAccumulator
from cachesvc.cache_controls import CacheControls, parse_controls
from cachesvc.cache_request import CacheRequest, Endpoint, parse_request
from cachesvc.errors import RequestError, error_body
from cachesvc.errors import read_json as read_json_limited
from cachesvc.policies.load_adaptive import EffectivePolicy, effective_policy
from cachesvc.semantic_cache import Hit, LookupTimings
from cachesvc.single_flight import Flight
from cachesvc.sse import SSEParser, encode_event
from cachesvc.state import STATE, ProxyState
from cachesvc.upstream import Upstream

UPSTREAM_PATH = {"chat": "chat/completions", "completions": "completions"}


@dataclass
class WritePlan:
    """Where a fresh answer goes if it turns out cacheable."""

    partition: str
    exact_key: str
    tenant: str
    namespace: str
    category: str
    query: str | None
    vector: np.ndarray | None
    ttl_s: float
    max_ttl_factor: float


async def read_json(request: web.Request) -> Any:
    return await read_json_limited(request, request.app[STATE].config.server.max_body_bytes)


def cache_endpoint(endpoint: Endpoint):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        started = time.perf_counter()
        try:
            response, result = await _handle(state, request, endpoint)
        except RequestError as exc:
            response, result = exc.response(headers={"x-cachesvc-cache": "bypass"}), "error"
        state.metrics.request_seconds.labels(result).observe(time.perf_counter() - started)
        return response
    return handler


async def _handle(state: ProxyState, request: web.Request, endpoint: Endpoint) -> tuple[web.StreamResponse, str]:
    config = state.config
    body = await read_json(request)
    req = parse_request(endpoint, body)
    controls = parse_controls(request.headers, body, config.cache.categories)
    upstream = state.upstreams.for_model(req.model)

    bypass = _bypass_reason(state, req, controls)
    if bypass is not None:
        state.metrics.bypass.labels(bypass).inc()
        state.metrics.requests.labels(endpoint, "bypass", "").inc()
        return await _forward(state, request, req, upstream, {"x-cachesvc-cache": "bypass"}, None, None), "bypass"
    cache = state.cache
    assert cache is not None

    tenant = state.tenant_of(request)
    namespace = controls.namespace or config.cache.default_namespace
    partition = req.partition(tenant, namespace)
    exact_key = req.exact_key(partition)
    pressure = upstream.load.pressure()

    def policy_for(category: str) -> EffectivePolicy:
        return effective_policy(config.cache.category(category), pressure)

    stages: dict[str, float] = {}
    if controls.may_read and config.cache.exact:
        t0 = time.perf_counter()
        hit = await cache.lookup_exact(exact_key, policy_for, controls.max_age_s)
        stages["exact"] = time.perf_counter() - t0
        if hit is not None:
            return await _serve_hit(state, request, req, hit, stages), "hit"

    vector, category = None, controls.category
    if req.query is not None and config.cache.semantic:
        t0 = time.perf_counter()
        vector = await state.embedder.embed(req.query)
        stages["embed"] = time.perf_counter() - t0
        state.metrics.lookup_seconds.labels("embed").observe(stages["embed"])
        if category is None:
            t0 = time.perf_counter()
            category = state.classifier.classify(req.query, vector)
            stages["classify"] = time.perf_counter() - t0
    category = category or "default"
    category_policy = config.cache.category(category)
    if not category_policy.enabled:
        state.metrics.bypass.labels("category_disabled").inc()
        state.metrics.requests.labels(endpoint, "bypass", "").inc()
        headers = {"x-cachesvc-cache": "bypass", "x-cachesvc-category": category}
        return await _forward(state, request, req, upstream, headers, None, None), "bypass"

    if controls.may_read and vector is not None and category_policy.semantic and req.query is not None:
        timings = LookupTimings()
        hit = await cache.lookup_semantic(partition, req.query, vector, policy_for(category), controls.max_age_s,
                                          timings)
        for stage in ("search", "verify", "fetch"):
            stages[stage] = getattr(timings, f"{stage}_s")
            state.metrics.lookup_seconds.labels(stage).observe(stages[stage])
        if hit is not None:
            return await _serve_hit(state, request, req, hit, stages), "hit"

    plan = None
    if controls.may_write:
        plan = WritePlan(partition, exact_key, tenant, namespace, category, req.query, vector,
                         controls.ttl_s or category_policy.ttl_s, category_policy.max_ttl_factor)
    headers = {"x-cachesvc-cache": "miss", "x-cachesvc-category": category, "Server-Timing": server_timing(stages)}
    flight = None
    if controls.may_read:
        flight = state.flights.join(exact_key)
        if not flight.leader:
            state.metrics.singleflight_waiters.inc()
            shared = await state.flights.wait(flight)
            if shared is not None:
                state.metrics.requests.labels(endpoint, "hit", "inflight").inc()
                hit_headers = {"x-cachesvc-cache": "hit", "x-cachesvc-tier": "inflight",
                               "x-cachesvc-category": category, "x-cachesvc-similarity": "1.0000"}
                return await _write_answer(request, req, shared, hit_headers), "hit"
            flight = None  # the leader got nothing shareable: ask for ourselves
    state.metrics.requests.labels(endpoint, "miss", "").inc()
    return await _forward(state, request, req, upstream, headers, plan, flight), "miss"


def _bypass_reason(state: ProxyState, req: CacheRequest, controls: CacheControls) -> str | None:
    cache_config = state.config.cache
    if not cache_config.enabled:
        return "disabled"
    if controls.no_store:
        return "no_store"
    if not state.ready:
        return "warming_up"
    if not controls.sampled:
        if req.temperature is None and not cache_config.cache_unset_temperature:
            return "temperature_unset"
        if req.temperature is not None and req.temperature > cache_config.max_cacheable_temperature:
            return "temperature"
    return None


def server_timing(stages: dict[str, float]) -> str:
    """The lookup's cost by stage as a standard Server-Timing header (milliseconds)."""
    return ", ".join(f"{name};dur={seconds * 1000:.3f}" for name, seconds in stages.items())


async def _serve_hit(state: ProxyState, request: web.Request, req: CacheRequest, hit: Hit,
                     stages: dict[str, float]) -> web.StreamResponse:
    entry = hit.entry
    state.metrics.requests.labels(req.endpoint, "hit", hit.tier).inc()
    if hit.tier == "semantic":
        state.metrics.hit_similarity.observe(hit.similarity)
    headers = {
        "x-cachesvc-cache": "hit",
        "x-cachesvc-tier": hit.tier,
        "x-cachesvc-category": entry.category,
        "x-cachesvc-similarity": f"{hit.similarity:.4f}",
        "x-cachesvc-entry": str(entry.entry_id),
        "Age": str(int(entry.age(time.time()))),
        "Server-Timing": server_timing(stages),
    }
    return await _write_answer(request, req, entry.answer, headers)


async def _write_answer(request: web.Request, req: CacheRequest, answer: Answer,
                        headers: dict[str, str]) -> web.StreamResponse:
    if not req.stream:
        return web.json_response(answer.render(), headers=headers)
    response = web.StreamResponse(headers={**headers, **_SSE_HEADERS})
    await response.prepare(request)
    try:
        for event in answer.render_stream(req.include_usage):
            await response.write(event)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client left; nothing to clean up for a replay
    return response


_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


async def _forward(
    state: ProxyState, request: web.Request, req: CacheRequest, upstream: Upstream, headers: dict[str, str],
    plan: WritePlan | None, flight: Flight[Answer] | None,
) -> web.StreamResponse:
    """Send the request upstream and relay the answer; store it when complete; always land the flight."""
    shared: Answer | None = None
    try:
        body = req.body
        hide_usage = req.stream and upstream.config.stream_usage and not req.include_usage
        if hide_usage:
            body = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
        data = json.dumps(body).encode()
        async with upstream.request("POST", UPSTREAM_PATH[req.endpoint], data=data,
                                    client_headers=request.headers) as upstream_response:
            if upstream_response.status != 200:
                return await _relay_error(upstream_response, headers)
            if req.stream and upstream_response.content_type == "text/event-stream":
                response, shared = await _relay_stream(state, request, req, upstream_response, headers, plan,
                                                       hide_usage)
                return response
            raw = await upstream_response.read()
            try:
                answer = Answer.from_response(req.endpoint, json.loads(raw))
            except (ValueError, TypeError):
                raise RequestError(502, f"Upstream {upstream.name!r} sent a malformed completion.",
                                   code="upstream_bad_response") from None
            shared = await _store(state, req, answer, plan)
            if req.stream:  # asked for a stream, got JSON (some servers ignore `stream`): replay it as SSE
                return await _write_answer(request, req, answer, headers)
            return web.Response(body=raw, status=200, headers={**headers, "Content-Type": "application/json"})
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, TimeoutError):
        raise RequestError(502, f"Upstream {upstream.name!r} broke off its answer.", code="upstream_disconnected")
    finally:
        if flight is not None:
            state.flights.land(flight, shared)


async def _relay_error(upstream_response: aiohttp.ClientResponse, headers: dict[str, str]) -> web.Response:
    """Pass an upstream error on with its status; give it an OpenAI-style body if it had none."""
    raw = await upstream_response.read()
    status = upstream_response.status
    try:
        body = json.loads(raw)
        if not isinstance(body, dict) or "error" not in body:
            raise ValueError
    except ValueError:
        text = raw.decode("utf-8", errors="replace")[:500] or upstream_response.reason or "error"
        body = error_body(status, f"Upstream answered {status}: {text}", code="upstream_error")
    extra = {k: v for k, v in upstream_response.headers.items() if k.lower() in ("retry-after", "x-request-id")}
    return web.json_response(body, status=status, headers={**headers, **extra})


async def _relay_stream(
    state: ProxyState, request: web.Request, req: CacheRequest, upstream_response: aiohttp.ClientResponse,
    headers: dict[str, str], plan: WritePlan | None, hide_usage: bool,
) -> tuple[web.StreamResponse, Answer | None]:
    """Relay events as they arrive; the usage chunk we asked for on the client's behalf is kept back."""
    response = web.StreamResponse(headers={**headers, **_SSE_HEADERS})
    await response.prepare(request)
    parser, accumulator = SSEParser(), StreamAccumulator(req.endpoint)
    shared: Answer | None = None
    try:
        async for chunk in upstream_response.content.iter_any():
            out = []
            for event in parser.feed(chunk):
                accumulator.feed(event)
                if accumulator.done and shared is None and accumulator.complete:
                    # Store before `[DONE]` goes out, so the client's next request already hits.
                    shared = await _store(state, req, accumulator.answer(), plan)
                if not (hide_usage and _is_usage_only(event)):
                    out.append(encode_event(event))
            if out:
                await response.write(b"".join(out))
    except ConnectionResetError:
        upstream_response.close()  # the client left: stop the upstream generating for nobody
        state.metrics.write_skipped.labels("client_aborted").inc()
        return response, None
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, TimeoutError):
        state.metrics.write_skipped.labels("upstream_broke_off").inc()
        error = error_body(502, "Upstream broke off the stream.", code="upstream_disconnected")
        try:
            await response.write(encode_event(error))
        except ConnectionResetError:
            pass
        return response, None
    if not accumulator.complete:
        state.metrics.write_skipped.labels("incomplete_stream").inc()
    try:
        await response.write_eof()
    except ConnectionResetError:
        pass
    return response, shared


def _is_usage_only(event: str) -> bool:
    """The final chunk that carries usage and no choices."""
    if not event.startswith("{") or '"usage"' not in event:
        return False
    try:
        chunk = json.loads(event)
    except json.JSONDecodeError:
        return False
    return isinstance(chunk, dict) and chunk.get("choices") == [] and bool(chunk.get("usage"))


async def _store(state: ProxyState, req: CacheRequest, answer: Answer, plan: WritePlan | None) -> Answer | None:
    """Cache the answer if it may be cached; returns it when it may be shared with identical waiters."""
    reason = answer.cacheable_reason(req.has_tools)
    if reason is not None:
        state.metrics.write_skipped.labels(reason).inc()
        return None
    if plan is None or state.cache is None:
        return answer
    await state.cache.insert(
        partition=plan.partition, exact_key=plan.exact_key, tenant=plan.tenant, namespace=plan.namespace,
        category=plan.category, model=req.model, query=plan.query, vector=plan.vector, answer=answer,
        ttl_s=plan.ttl_s, max_ttl_factor=plan.max_ttl_factor,
    )
    return answer

