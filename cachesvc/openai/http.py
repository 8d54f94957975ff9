"""The wire format on aiohttp: JSON responses, OpenAI error responses, the error middleware, bounded JSON bodies
and event-stream responses, shared by the proxy, the model server and the stand-in upstream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from cachesvc.openai import codec
from cachesvc.openai.errors import RequestError, error_body

JSON_CONTENT_TYPE = "application/json"
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


def json_response(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON response written with orjson."""
    return web.Response(body=codec.dumps(body), status=status, headers={"Content-Type": JSON_CONTENT_TYPE,
                                                                         **(headers or {})})


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response(error_body(status, message, param=param, code=code), status=status, headers=headers)


def request_error_response(exc: RequestError, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response(exc.body(), status=exc.status, headers=headers)


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """The body as JSON; 413 past ``max_bytes`` (the app's ``client_max_size``), 400 when it is not JSON or nests
    deeper than ``codec.MAX_DEPTH``."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestError(413, f"Request body is larger than {max_bytes} bytes.", code="request_too_large") from None
    try:
        return codec.loads(raw)
    except codec.TooDeep:
        raise RequestError(400, f"The request body nests arrays and objects deeper than {codec.MAX_DEPTH} levels.",
                           code="too_deeply_nested") from None
    except codec.JSONDecodeError as exc:
        raise RequestError(400, f"The request body is not valid JSON: {exc}.") from None


async def open_event_stream(request: web.Request, headers: Mapping[str, str] | None = None) -> web.StreamResponse:
    """Start a ``text/event-stream`` response (status 200) and send its headers."""
    response = web.StreamResponse(headers={**(headers or {}), **SSE_HEADERS})
    await response.prepare(request)
    return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as an OpenAI-style error body; a server never answers with an HTML page."""
    try:
        return await handler(request)
    except RequestError as exc:
        return request_error_response(exc)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, exc.text or "Request body too large.", code="request_too_large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason)
    except Exception:
        request.app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Internal server error.", code="internal_error")
