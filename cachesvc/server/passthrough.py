"""Any other /v1 call goes to the default upstream (or the one serving the body's model) untouched, streamed both
ways."""

from __future__ import annotations

from aiohttp import web

from cachesvc.openai import codec
from cachesvc.server.services import SERVICES
from cachesvc.upstreams.upstream import HOP_BY_HOP


async def passthrough(request: web.Request) -> web.StreamResponse:
    upstreams = request.app[SERVICES].upstreams
    upstream = upstreams.default
    body = await request.read() if request.can_read_body else None
    if body and request.content_type == "application/json":
        try:
            model = codec.loads(body).get("model")
        except (ValueError, AttributeError):
            model = None
        if isinstance(model, str):
            upstream = upstreams.for_model(model)
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
