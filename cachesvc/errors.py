"""OpenAI-style error bodies, so every client SDK shows our errors the way it shows the model server's."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The JSON that OpenAI, vLLM and SGLang send with a non-2xx status."""
    return {
        "error": {
            "message": message,
            "type": _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
            "param": param,
            "code": code,
        }
    }


def error_response(
    status: int, message: str, *, param: str | None = None, code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.json_response(error_body(status, message, param=param, code=code), status=status, headers=headers)


class RequestError(Exception):
    """A request the proxy refuses; the handler turns it into an OpenAI-style error response."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        return error_response(self.status, self.message, param=self.param, code=self.code, headers=headers)


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """The body as JSON; 413 past ``max_bytes`` (the app's ``client_max_size``), 400 when it is not JSON."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RequestError(413, f"Request body is larger than {max_bytes} bytes.", code="request_too_large") from None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"The request body is not valid JSON: {exc}.") from None


async def _errors_as_json(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Every failure leaves as an OpenAI-style error body; the proxy never answers with an HTML page."""
    try:
        return await handler(request)
    except RequestError as exc:
        return exc.response()
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, exc.text or "Request body too large.", code="request_too_large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason)
    except Exception:
        request.app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "Internal server error.", code="internal_error")


errors_as_json = web.middleware(_errors_as_json)
