"""Request checks every route of the proxy shares, before any handler runs."""

from __future__ import annotations

from aiohttp import web

from cachesvc.openai.http import Handler, error_response


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
