"""Every route of the proxy, in one table."""

from __future__ import annotations

from aiohttp import web

from cachesvc.openai.http import error_response
from cachesvc.openai.protocol import ENDPOINT_PATHS
from cachesvc.server import admin
from cachesvc.server.feedback import post_feedback
from cachesvc.server.health import healthz, metrics
from cachesvc.server.models import list_models
from cachesvc.server.openapi import openapi_json
from cachesvc.server.passthrough import passthrough
from cachesvc.server.services import SERVICES


async def _post_only(request: web.Request) -> web.Response:
    return error_response(405, f"{request.method} is not allowed on {request.path}; use POST.",
                          headers={"Allow": "POST"})


def add_routes(app: web.Application) -> None:
    completions = app[SERVICES].completions
    for endpoint, path in ENDPOINT_PATHS.items():
        app.router.add_post(f"/v1/{path}", completions.handler(endpoint))
        app.router.add_route("*", f"/v1/{path}", _post_only)
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/feedback", post_feedback)
    app.router.add_route("*", "/v1/feedback", _post_only)
    app.router.add_route("*", "/v1/{tail:.*}", passthrough)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi_json)
    admin.add_routes(app)
