"""Any other /v1 call goes to the default upstream (or the one serving the body's model), streamed both ways.

Only what the proxy would itself send leaves it, since the upstream key (``UpstreamConfig.api_key``) goes with
every forwarded request:

- the path is the client's raw path less ``/v1/``, still percent-encoded, put under the upstream's base path as it
  arrived. It must pass ``upstreams.upstream.checked_path``: no dot segments (``..``, ``%2e%2e``, ``%252e%252e``,
  ``..;``), no empty segments (``//host``), no backslash or control character (``%5c``, ``%00``), no malformed
  escape, however many times it is decoded, and at most MAX_PATH_BYTES long. Anything else is a 404 (414 when
  too long) from the proxy and nothing is sent upstream. An encoded slash inside a segment (``org%2Fname``) is
  forwarded still encoded, and only if it is also safe read as a separator;
- the query string goes as sent (characters a query may not hold are percent-encoded); it cannot reach the path;
- methods: FORWARDED_METHODS (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS); any other (TRACE, CONNECT, WebDAV
  verbs) is a 405 from the proxy. TRACE in particular would echo the proxy's key back to the client.

``Upstream.request`` checks path and method again, so no caller can attach the key to any other request.

Rate limits apply here as on completions: the call takes one request from the tenant's budget before it is
forwarded (429 with ``Retry-After`` when there is none), and a JSON answer's ``usage`` (embeddings, responses) is
charged to its tokens per minute, read from the answer as it is relayed (``openai/usage_tail.py``).

Retries and failover (``Upstream.request``) apply here too, made before any byte went back; a POST or PATCH here
may not be idempotent (a batch, a file), so it is retried only where the upstream cannot have acted on it: a
connection that could not be made, or a 429.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from cachesvc.openai import codec
from cachesvc.openai.errors import RequestError
from cachesvc.openai.http import error_response, request_error_response
from cachesvc.openai.usage_tail import UsageTail
from cachesvc.server.rate_limits import RateLimited
from cachesvc.server.services import SERVICES
from cachesvc.server.tenants import Tenant
from cachesvc.server.upstream_relay import answered_headers
from cachesvc.upstreams.paths import FORWARDED_METHODS, checked_path
from cachesvc.upstreams.upstream import HOP_BY_HOP, UpstreamTrace, UpstreamUnavailable

PREFIX = "/v1/"
NOT_IDEMPOTENT = frozenset({"POST", "PATCH"})


async def passthrough(request: web.Request) -> web.StreamResponse:
    if request.method not in FORWARDED_METHODS:
        return error_response(405, f"The proxy does not forward {request.method} requests.",
                              code="method_not_allowed", headers={"Allow": ", ".join(sorted(FORWARDED_METHODS))})
    raw_path = request.rel_url.raw_path  # as the client sent it: still encoded, no dot segments resolved
    if not raw_path.startswith(PREFIX):  # e.g. an encoded "/v1" (/%761/...) that only the router decoded
        return error_response(404, "Not found: the proxy forwards no such path.", code="not_found")
    try:
        tail = checked_path(raw_path[len(PREFIX):])
    except RequestError as exc:
        return error_response(exc.status, exc.message, code=exc.code)
    services = request.app[SERVICES]
    try:
        tenant = services.tenants.of_request(request)  # resolved already by the tenants middleware
        if services.limits is not None:
            await services.limits.admit(tenant)
    except RateLimited as exc:
        return request_error_response(exc, {"x-cachesvc-cache": "bypass", **exc.headers})
    except RequestError as exc:
        return request_error_response(exc, {"x-cachesvc-cache": "bypass"})
    upstreams = services.upstreams
    upstream = upstreams.default
    body = await request.read() if request.can_read_body else None
    if body and request.content_type == "application/json":
        try:
            parsed = codec.loads(body)
        except codec.TooDeep:
            return error_response(400, f"The request body nests arrays and objects deeper than {codec.MAX_DEPTH} "
                                       "levels.", code="too_deeply_nested")
        except codec.JSONDecodeError:
            parsed = None  # not JSON after all: forwarded untouched, the upstream judges it
        model = parsed.get("model") if isinstance(parsed, dict) else None
        if isinstance(model, str):
            upstream = upstreams.for_model(model)
    trace = UpstreamTrace()
    try:
        async with upstream.request(request.method, tail, data=body, client_headers=request.headers,
                                    query=request.rel_url.raw_query_string,
                                    idempotent=request.method not in NOT_IDEMPOTENT, trace=trace) as upstream_response:
            return await _relay(request, upstream_response, trace, tenant)
    except UpstreamUnavailable as exc:  # refused before anything was sent (circuit open): say when to retry
        return error_response(exc.status, exc.message, code=exc.code,
                              headers={"x-cachesvc-cache": "bypass", **exc.headers})


async def _relay(request: web.Request, upstream_response: aiohttp.ClientResponse,
                 trace: UpstreamTrace, tenant: Tenant) -> web.StreamResponse:
    """Pass the upstream's response on as it arrives, status, headers and body; then charge the tokens a
    successful JSON answer reports to a tenant with a tokens-per-minute limit."""
    headers = {k: v for k, v in upstream_response.headers.items() if k.lower() not in HOP_BY_HOP}
    headers["x-cachesvc-cache"] = "bypass"
    headers.update(answered_headers(trace))
    limits = request.app[SERVICES].limits
    metered = (limits is not None and tenant.limits.tokens_per_min is not None
               and 200 <= upstream_response.status < 300 and upstream_response.content_type == "application/json")
    usage = UsageTail() if metered else None
    response = web.StreamResponse(status=upstream_response.status, headers=headers)
    await response.prepare(request)
    try:
        async for chunk in upstream_response.content.iter_any():
            if usage is not None:
                usage.feed(chunk)
            await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:
        upstream_response.close()
        return response
    reported = usage.usage() if usage is not None else None
    if limits is not None and reported is not None:
        await limits.charge_usage(tenant, reported)
    return response
