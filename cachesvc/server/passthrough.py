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

Retries and failover (``Upstream.request``) apply here too, made before any byte went back; a POST or PATCH here
may not be idempotent (a batch, a file), so it is retried only where the upstream cannot have acted on it: a
connection that could not be made, or a 429.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from cachesvc.openai import codec
from cachesvc.openai.errors import RequestError
from cachesvc.openai.http import error_response
from cachesvc.server.services import SERVICES
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
    upstreams = request.app[SERVICES].upstreams
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
            return await _relay(request, upstream_response, trace)
    except UpstreamUnavailable as exc:  # refused before anything was sent (circuit open): say when to retry
        return error_response(exc.status, exc.message, code=exc.code,
                              headers={"x-cachesvc-cache": "bypass", **exc.headers})


async def _relay(request: web.Request, upstream_response: aiohttp.ClientResponse,
                 trace: UpstreamTrace) -> web.StreamResponse:
    """Pass the upstream's response on as it arrives, status, headers and body."""
    headers = {k: v for k, v in upstream_response.headers.items() if k.lower() not in HOP_BY_HOP}
    headers["x-cachesvc-cache"] = "bypass"
    headers.update(answered_headers(trace))
    response = web.StreamResponse(status=upstream_response.status, headers=headers)
    await response.prepare(request)
    try:
        async for chunk in upstream_response.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:
        upstream_response.close()
    return response
