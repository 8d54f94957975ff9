"""Structured logs with a request id: the id is the client's when sane, else a new one; it is on every response
(errors, 404s and streams included), reaches the upstream, and is on every log line written for the request, which
ends in one access line. The JSON and text formatters."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiohttp.pytest_plugin import AiohttpClient

from cachesvc.openai.http import errors_as_json, open_event_stream
from cachesvc.server.middlewares import REQUEST_ID_HEADER, request_ids, stamp_request_id
from cachesvc.server.request_log import REQUEST_ID, JsonFormatter, TextFormatter, install_logging
from tests.conftest import Stub, proxy_config, start_proxy

HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, object]]]]:
    """Install the JSON handler on the root logger (as `cachesvc serve` does) into a buffer; the parsed lines."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    buffer = io.StringIO()
    install_logging("debug", "json", stream=buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    root.handlers[:] = saved
    root.setLevel(level)


def throwaway_app() -> web.Application:
    log = logging.getLogger("cachesvc.test")

    async def ok(request: web.Request) -> web.Response:
        log.info("inside the handler", extra={"seen": request.headers.get(REQUEST_ID_HEADER)})
        return web.json_response({"seen": request.headers.get(REQUEST_ID_HEADER), "var": REQUEST_ID.get()})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = await open_event_stream(request)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app = web.Application(middlewares=[request_ids, errors_as_json])
    app.on_response_prepare.append(stamp_request_id)
    app.router.add_get("/ok", ok)
    app.router.add_get("/stream", stream)
    app.router.add_get("/broken", broken)
    return app


async def test_a_sane_client_id_is_kept_and_anything_else_replaced(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(throwaway_app())
    kept = await client.get("/ok", headers={"x-request-id": "Client.id:42-a_b"})
    assert kept.headers[REQUEST_ID_HEADER] == "Client.id:42-a_b"
    assert await kept.json() == {"seen": "Client.id:42-a_b", "var": "Client.id:42-a_b"}
    for bad in ("has space", "x" * 129, "semi;colon", "", "ünï"):
        response = await client.get("/ok", headers={"x-request-id": bad})
        new = response.headers[REQUEST_ID_HEADER]
        assert HEX_ID.fullmatch(new), (bad, new)
        assert await response.json() == {"seen": new, "var": new}  # the handler sees only the replacement
    first, second = (await client.get("/ok"), await client.get("/ok"))
    assert HEX_ID.fullmatch(first.headers[REQUEST_ID_HEADER])
    assert first.headers[REQUEST_ID_HEADER] != second.headers[REQUEST_ID_HEADER]


@pytest.mark.parametrize("path,status", [("/stream", 200), ("/broken", 500), ("/nowhere", 404)])
async def test_every_response_carries_the_id(aiohttp_client: AiohttpClient, path: str, status: int,
                                            log_lines: Callable[[], list[dict[str, object]]]) -> None:
    client = await aiohttp_client(throwaway_app())
    response = await client.get(path, headers={"x-request-id": "rid-1"})
    assert (response.status, response.headers[REQUEST_ID_HEADER]) == (status, "rid-1")
    await response.read()
    access = [line for line in log_lines() if line["logger"] == "cachesvc.access"]
    assert len(access) == 1
    assert access[0]["request_id"] == "rid-1" and access[0]["status"] == status
    assert access[0]["level"] == ("warning" if status >= 500 else "info")
    if status == 500:  # the traceback of the unhandled error is on a line of the same request
        (error,) = [line for line in log_lines() if line["level"] == "error"]
        assert error["request_id"] == "rid-1" and "RuntimeError: boom" in str(error["exc_info"])


async def test_the_access_line_holds_no_header_query_or_body(aiohttp_client: AiohttpClient,
                                                            log_lines: Callable[[], list[dict[str, object]]]) -> None:
    client = await aiohttp_client(throwaway_app())
    await (await client.get("/ok?token=query-secret", headers={"Authorization": "Bearer header-secret"})).read()
    lines = log_lines()
    (access,) = [line for line in lines if line["logger"] == "cachesvc.access"]
    assert access["message"].startswith("GET /ok 200 ")  # type: ignore[union-attr]
    assert {"method", "path", "status", "duration_ms", "cache", "tenant", "request_id", "ts"} <= set(access)
    assert access["path"] == "/ok" and isinstance(access["duration_ms"], float)
    (inside,) = [line for line in lines if line["logger"] == "cachesvc.test"]
    assert inside["request_id"] == access["request_id"] == inside["seen"]  # extra fields become fields
    ours = [line for line in lines if line["logger"] != "aiohttp.access"]  # the test server's; off in serve
    text = json.dumps(ours)
    assert "query-secret" not in text and "header-secret" not in text


async def test_the_proxy_sends_the_id_upstream_and_names_the_tenant_by_hash(
        stub: Stub, encode: Callable[[list[str]], np.ndarray],
        log_lines: Callable[[], list[dict[str, object]]]) -> None:
    proxy = await start_proxy(proxy_config(stub.url, **{"cache.enabled": False}), encode)
    try:
        body = {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as session:
            for sent in ({"x-request-id": "from-client"}, {"x-request-id": "bad id"}, {}):
                async with session.post(f"{proxy.base_url}/chat/completions", json=body,
                                        headers={"Authorization": "Bearer client-key-1", **sent}) as response:
                    assert response.status == 200
                    rid = response.headers[REQUEST_ID_HEADER]
                upstream_ids = [v for k, v in stub.stats.headers[-1].items() if k.lower() == "x-request-id"]
                assert upstream_ids == [rid]  # the replacement, never the client's bad one beside it
                if sent.get("x-request-id") == "from-client":
                    assert rid == "from-client"
                else:
                    assert HEX_ID.fullmatch(rid)
    finally:
        await proxy.server.close()
    access = [line for line in log_lines() if line["logger"] == "cachesvc.access"]
    assert [line["cache"] for line in access] == ["bypass"] * 3
    tenants = {line["tenant"] for line in access}
    assert len(tenants) == 1 and str(next(iter(tenants))).startswith(("key:", "tenant:"))
    assert "client-key-1" not in json.dumps(access)


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("cachesvc.x", logging.WARNING, __file__, 1, msg, args or None, None)
    for name, value in extra.items():
        setattr(entry, name, value)
    return entry


def test_json_lines_are_one_object_each_with_utc_time_and_extras() -> None:
    token = REQUEST_ID.set("r-9")
    try:
        line = json.loads(JsonFormatter().format(record("two\nlines %d", 3, store="sqlite", obj=object())))
    finally:
        REQUEST_ID.reset(token)
    assert line["message"] == "two\nlines 3" and line["level"] == "warning" and line["logger"] == "cachesvc.x"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    assert line["request_id"] == "r-9" and line["store"] == "sqlite" and line["obj"].startswith("<object")
    assert "request_id" not in json.loads(JsonFormatter().format(record("outside")))


def test_text_lines_end_in_the_request_id() -> None:
    token = REQUEST_ID.set("r-7")
    try:
        text = TextFormatter().format(record("hello %s", "you"))
    finally:
        REQUEST_ID.reset(token)
    assert text.endswith("WARNING cachesvc.x: hello you request_id=r-7")


def test_log_format_is_json_by_default_text_on_request_and_nothing_else() -> None:
    from cachesvc.cli import build_parser, model_server_overrides, serve_overrides
    from cachesvc.config import load_config

    assert load_config(None, environ={}).log_format == "json"
    args = build_parser().parse_args(["serve", "--log-format", "text"])
    assert load_config(None, serve_overrides(args), environ={}).log_format == "text"
    args = build_parser().parse_args(["model-server", "--log-format", "text"])
    assert load_config(None, model_server_overrides(args), environ={}).log_format == "text"
    with pytest.raises(ValueError, match="log_format must be one of"):
        load_config(None, environ={"CACHESVC__LOG_FORMAT": "xml"})
