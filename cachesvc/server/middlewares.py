"""What every route of the proxy shares, before any handler runs: the request's id and its access line, and the
header checks."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from aiohttp import web

from cachesvc.openai.http import Handler, error_response
from cachesvc.server.request_log import REQUEST_ID
from cachesvc.server.tenants import TENANT

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_KEY = web.RequestKey("cachesvc_request_id", str)
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # a client's id outside this is replaced, not echoed
QUIET_PATHS = frozenset({"/healthz", "/metrics"})  # probes and scrapes: their access lines at debug (a 503 too)
CLIENT_CLOSED = 499  # the status an access line gives a request whose client left (or that a drain cut)

access_log = logging.getLogger("cachesvc.access")


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request an id: the client's ``x-request-id`` when it is sane (at most 128 of ``A-Za-z0-9._:-``),
    else a new one (uuid4, hex). The id is in REQUEST_ID for every log line written for the request, replaces the
    client's header on the way upstream (so the model server's logs correlate), goes back on the response
    (``stamp_request_id``), and ends the request in one access line: method, path (no query), status, duration,
    cache outcome, tenant id (a hash or a configured name, never a key), at info (warning for a 5xx, debug for
    QUIET_PATHS). Headers and bodies are never logged."""
    sent = request.headers.get(REQUEST_ID_HEADER)
    request_id = sent if sent is not None and SANE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
    request[REQUEST_ID_KEY] = request_id  # before the clone, which copies it: aiohttp prepares with the original
    if sent != request_id:
        headers = request.headers.copy()
        headers[REQUEST_ID_HEADER] = request_id
        request = request.clone(headers=headers)
    token = REQUEST_ID.set(request_id)
    started = time.perf_counter()
    status, cache = 500, None
    try:
        response = await handler(request)
        status, cache = response.status, response.headers.get("x-cachesvc-cache")
        return response
    except web.HTTPException as exc:  # redirects and the like, which errors_as_json lets through
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_CLOSED
        raise
    finally:
        tenant = request.get(TENANT)
        _log_access(request, status, (time.perf_counter() - started) * 1000, cache,
                    tenant.id if tenant is not None else None)
        REQUEST_ID.reset(token)


def _log_access(request: web.Request, status: int, duration_ms: float, cache: str | None, tenant: str | None) -> None:
    level = logging.DEBUG if request.path in QUIET_PATHS else logging.WARNING if status >= 500 else logging.INFO
    if access_log.isEnabledFor(level):
        access_log.log(level, "%s %s %d %.1f ms", request.method, request.path, status, duration_ms,
                       extra={"method": request.method, "path": request.path, "status": status,
                              "duration_ms": round(duration_ms, 2), "cache": cache, "tenant": tenant})


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """An ``on_response_prepare`` signal: the request's id on every response it prepares, streams and errors
    included (a stream's headers leave before its handler returns; an upstream's own id is replaced)."""
    response.headers[REQUEST_ID_HEADER] = request.get(REQUEST_ID_KEY) or REQUEST_ID.get() or uuid.uuid4().hex


@web.middleware
async def reject_undecodable_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 for a header value that is not UTF-8: aiohttp hands such bytes on as surrogate escapes, which no key
    comparison, hash or forwarded request can encode (they would surface as a 500 or leak as odd tenants)."""
    for name, value in request.headers.items():
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return error_response(400, f"The {name} header is not valid UTF-8.", param=name,
                                      code="invalid_header")
    return await handler(request)
