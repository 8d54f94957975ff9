"""Pass-through paths from a hostile client: traversal, encoded separators, authority tricks, control characters and
over-long paths are a 404 (414) from the proxy, never a request upstream carrying the proxy's upstream key; real
paths still go through byte for byte, the proxy's key replacing the client's.

Requests to the proxy are written on a raw socket (an HTTP client would resolve ``..`` before sending); the upstream
is a raw TCP listener that records each request line and its headers as they arrived, or the stand-in upstream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cachesvc.config import UpstreamConfig, config_from_dict
from cachesvc.metrics import Metrics
from cachesvc.openai.errors import RequestError
from cachesvc.upstreams.paths import MAX_PATH_BYTES
from cachesvc.upstreams.stub import STUB_STATS, create_stub_app
from cachesvc.upstreams.upstream import Upstream
from tests.conftest import Proxy, Stub, proxy_config, start_proxy

CASE = "1. Pass-through paths that could leave the upstream's base path (traversal, encodings, methods)"
PROXY_KEY = "sk-proxy-upstream-secret"
CLIENT_KEY = "sk-client"


@dataclass
class Seen:
    line: str
    headers: dict[str, str]  # names lower-cased
    authorizations: list[str]
    body: bytes


@dataclass
class Recorder:
    """A raw HTTP/1.1 listener: records every request exactly as it arrived, answers 200 with a small JSON body."""

    server: asyncio.Server | None = None
    seen: list[Seen] = field(default_factory=list)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def url(self, base_path: str = "/v1") -> str:
        return f"http://127.0.0.1:{self.port}{base_path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, *lines = head.decode("latin-1").split("\r\n")
            pairs = [tuple(part.strip() for part in raw.split(":", 1)) for raw in lines if ":" in raw]
            headers = {name.lower(): value for name, value in pairs}
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length) if length else b""
            self.seen.append(Seen(line, headers, [v for n, v in pairs if n.lower() == "authorization"], body))
            payload = json.dumps({"line": line}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(payload), payload))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    recorder = Recorder()
    recorder.server = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
    yield recorder
    recorder.server.close()
    await recorder.server.wait_closed()


def keyed_config(upstream_url: str, **overrides: Any) -> Any:
    return proxy_config(upstream_url, **{"upstreams": [{"url": upstream_url, "api_key": PROXY_KEY}], **overrides})


def _flat_encode(texts: list[str]) -> np.ndarray:
    return np.ones((len(texts), 8), dtype=np.float32) / np.sqrt(8)


@pytest.fixture
async def keyed_proxy(recorder: Recorder) -> AsyncIterator[Proxy]:
    """The proxy, cache off (pass-through does not touch it), with its own key for the recording upstream."""
    proxy = await start_proxy(keyed_config(recorder.url(), **{"cache.enabled": False}), _flat_encode)
    yield proxy
    await proxy.server.close()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(port: int, method: str, target: str, *, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> Reply:
    """One request with ``target`` on the request line byte for byte, over a fresh connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = {"Host": "proxy.test", "Authorization": f"Bearer {CLIENT_KEY}", "Connection": "close",
                **({"Content-Length": str(len(body))} if body else {}), **(headers or {})}
        writer.write(f"{method} {target} HTTP/1.1\r\n".encode("latin-1")
                     + "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode() + b"\r\n" + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    status_head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *lines = status_head.decode("latin-1").split("\r\n")
    reply_headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines if ":" in x)}
    if reply_headers.get("transfer-encoding") == "chunked":
        rest = _dechunk(rest)
    return Reply(int(status_line.split()[1]), reply_headers, rest)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2:]
    return out


TRAVERSALS = [
    "/v1/%2e%2e/internal/admin",
    "/v1/../internal/admin",
    "/v1/%2E%2E%2Finternal/admin",
    "/v1/%2e%2e%2fx",
    "/v1/..%2fx",
    "/v1/a/../../x",
    "/v1/%2E%2E/%2E%2E/internal",
    "/v1/%252e%252e/internal/admin",  # double encoding
    "/v1/%25252e%25252e/internal/admin",  # triple
    "/v1/./models",
    "/v1/..;/internal/admin",  # Tomcat reads "..;" as ".."
    "/v1/%EF%BC%8E%EF%BC%8E/internal/admin",  # fullwidth dots, which NFKC folds to ".."
    "/v1/models/%2F..%2F..%2Finternal",  # encoded slashes around a dot segment
    "/v1//evil",
    "/v1//evil.example/x",
    "/v1/%2Fevil.example/x",
    "/v1/files//content",
    "/v1/%5c..%5cx",  # backslash
    "/v1/%255c..%255cx",
    "/v1/models/%00",
    "/v1/models/%ff",  # not UTF-8
    "/v1/models/%zz",  # malformed escape
    "/v1/",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_a_path_that_could_leave_the_base_is_a_404_and_nothing_goes_upstream(
        keyed_proxy: Proxy, recorder: Recorder, target: str) -> None:
    reply = await raw_request(keyed_proxy.server.port, "GET", target)
    assert reply.status == 404, (target, reply.status, reply.body[:200])
    error = reply.json()["error"]
    assert error["type"] == "not_found_error" and error["code"] == "not_found"
    assert reply.headers.get("x-cachesvc-cache") is None  # the proxy's own answer, not a relayed one
    assert PROXY_KEY not in reply.body.decode()
    assert recorder.seen == [], f"{target} reached the upstream as {recorder.seen[0].line!r}"


@pytest.mark.parametrize("method", ["POST", "DELETE", "PUT"])
async def test_traversal_with_a_body_or_another_method_is_refused_too(
        keyed_proxy: Proxy, recorder: Recorder, method: str) -> None:
    body = json.dumps({"model": "stub-model", "input": "x"}).encode()
    reply = await raw_request(keyed_proxy.server.port, method, "/v1/embeddings/%2e%2e/%2e%2e/internal/admin",
                              body=body, headers={"Content-Type": "application/json"})
    assert reply.status == 404 and recorder.seen == []


async def test_an_overlong_path_is_a_414_and_nothing_goes_upstream(keyed_proxy: Proxy, recorder: Recorder) -> None:
    reply = await raw_request(keyed_proxy.server.port, "GET", "/v1/files/" + "a" * (MAX_PATH_BYTES + 1))
    assert reply.status == 414 and reply.json()["error"]["code"] == "path_too_long"
    assert recorder.seen == []


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "PURGE"])
async def test_methods_an_openai_server_does_not_serve_are_refused(
        keyed_proxy: Proxy, recorder: Recorder, method: str) -> None:
    reply = await raw_request(keyed_proxy.server.port, method, "/v1/models/stub-model")
    assert reply.status == 405 and "GET" in reply.headers["allow"]
    assert recorder.seen == []  # TRACE would have echoed the proxy's key back


LEGITIMATE = [
    # (what the client sends, the request line's target upstream)
    ("/v1/embeddings", "/v1/embeddings"),
    ("/v1/files/file-abc/content", "/v1/files/file-abc/content"),
    ("/v1/models/org%2Fname", "/v1/models/org%2Fname"),  # an encoded slash stays encoded
    ("/v1/models/org/name", "/v1/models/org/name"),
    ("/v1/vector_stores/vs_1/files?limit=10&after=file%2Fabc&q=../../x", "/v1/vector_stores/vs_1/files"
     "?limit=10&after=file%2Fabc&q=../../x"),  # the query goes as sent and cannot reach the path
    ("/v1/files?purpose=a%20b+c&x=%41", "/v1/files?purpose=a%20b+c&x=%41"),
    ("/v1/models/caf%C3%A9", "/v1/models/caf%C3%A9"),
    ("/v1/models/ft:gpt-4o:org:custom@1", "/v1/models/ft:gpt-4o:org:custom@1"),
    ("/v1/batches/", "/v1/batches/"),
    ("/v1/a..b/.hidden/x.", "/v1/a..b/.hidden/x."),  # dots that are not dot segments
    ("/v1/files/" + "a" * (MAX_PATH_BYTES - len("files/")), "/v1/files/" + "a" * (MAX_PATH_BYTES - len("files/"))),
]


async def test_legitimate_paths_reach_the_upstream_byte_for_byte_with_the_proxys_key(
        keyed_proxy: Proxy, recorder: Recorder) -> None:
    for sent, expected in LEGITIMATE:
        reply = await raw_request(keyed_proxy.server.port, "GET", sent)
        assert reply.status == 200, (sent, reply.status, reply.body[:200])
        assert reply.headers["x-cachesvc-cache"] == "bypass"
        seen = recorder.seen.pop()
        assert seen.line == f"GET {expected} HTTP/1.1", sent
        assert seen.authorizations == [f"Bearer {PROXY_KEY}"], "the proxy's key replaces the client's"
    assert recorder.seen == []


async def test_a_post_passes_through_with_its_body(keyed_proxy: Proxy, recorder: Recorder) -> None:
    body = json.dumps({"model": "stub-model", "input": "hello"}).encode()
    reply = await raw_request(keyed_proxy.server.port, "POST", "/v1/embeddings?x=%2F", body=body,
                              headers={"Content-Type": "application/json"})
    assert reply.status == 200
    [seen] = recorder.seen
    assert seen.line == "POST /v1/embeddings?x=%2F HTTP/1.1"
    assert seen.body == body and seen.authorizations == [f"Bearer {PROXY_KEY}"]


async def test_an_absolute_form_target_cannot_pick_the_upstream_host(keyed_proxy: Proxy,
                                                                     recorder: Recorder) -> None:
    """The request-target's authority is ignored; only the checked path goes, to the configured upstream."""
    reply = await raw_request(keyed_proxy.server.port, "GET", "http://evil.example/v1/%2e%2e/internal/admin")
    assert reply.status == 404 and recorder.seen == []
    reply = await raw_request(keyed_proxy.server.port, "GET", "http://evil.example/v1/models/org%2Fname")
    assert reply.status == 200
    assert [s.line for s in recorder.seen] == ["GET /v1/models/org%2Fname HTTP/1.1"]
    assert recorder.seen[0].headers["host"] == f"127.0.0.1:{recorder.port}"


@pytest.mark.parametrize("base_path", ["/openai/v1", ""])
async def test_the_upstreams_own_base_path_bounds_what_is_sent(
        recorder: Recorder, base_path: str) -> None:
    proxy = await start_proxy(keyed_config(recorder.url(base_path), **{"cache.enabled": False}), _flat_encode)
    try:
        for target in ("/v1/%2e%2e/internal", "/v1/..%2f..%2finternal", "/v1/a/../../../internal"):
            assert (await raw_request(proxy.server.port, "GET", target)).status == 404, target
        assert recorder.seen == []
        reply = await raw_request(proxy.server.port, "GET", "/v1/files/file-abc/content")
        assert reply.status == 200
        [seen] = recorder.seen
        assert seen.line == f"GET {base_path}/files/file-abc/content HTTP/1.1"
        assert seen.authorizations == [f"Bearer {PROXY_KEY}"]
    finally:
        await proxy.server.close()


@pytest.fixture
async def recorded_stub() -> AsyncIterator[tuple[Stub, list[tuple[str, str | None]]]]:
    """The stand-in upstream, and every request that reaches it, answered or not: (raw path, Authorization)."""
    seen: list[tuple[str, str | None]] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        seen.append((request.raw_path, request.headers.get("Authorization")))

    app = create_stub_app()
    app.on_response_prepare.append(record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield Stub(server, app[STUB_STATS]), seen
    await server.close()


async def test_chat_completions_still_work_beside_the_check(
        recorded_stub: tuple[Stub, list[tuple[str, str | None]]], encode: Callable[[list[str]], np.ndarray]) -> None:
    """The cached path keeps working with the proxy's key; a real route's prefix does not launder traversal."""
    stub, seen = recorded_stub
    proxy = await start_proxy(keyed_config(stub.url), encode)
    try:
        body = json.dumps({"model": "stub-model", "temperature": 0,
                           "messages": [{"role": "user", "content": "What is a monad?"}]}).encode()
        for expected in ("miss", "hit"):
            reply = await raw_request(proxy.server.port, "POST", "/v1/chat/completions", body=body,
                                      headers={"Content-Type": "application/json"})
            assert reply.status == 200 and reply.headers["x-cachesvc-cache"] == expected
            assert reply.json()["choices"][0]["message"]["content"].startswith("Stub answer to: What is a monad?")
        assert seen == [("/v1/chat/completions", f"Bearer {PROXY_KEY}")]
        for target in ("/v1/chat/completions/..%2f..%2finternal/admin", "/v1/chat/completions/../../internal"):
            reply = await raw_request(proxy.server.port, "POST", target, body=body,
                                      headers={"Content-Type": "application/json"})
            assert reply.status == 404
        reply = await raw_request(proxy.server.port, "GET", "/v1/files/file-abc/content?x=%2F")
        assert reply.status == 200
        echoed = reply.json()
        assert (echoed["path"], echoed["query"], echoed["authorization"]) == (
            "/v1/files/file-abc/content", {"x": "/"}, f"Bearer {PROXY_KEY}")
        assert seen[1:] == [("/v1/files/file-abc/content?x=%2F", f"Bearer {PROXY_KEY}")]
    finally:
        await proxy.server.close()


@pytest.fixture
async def upstream(recorder: Recorder) -> AsyncIterator[Upstream]:
    config = config_from_dict({"upstreams": [{"url": recorder.url(), "api_key": PROXY_KEY}]})
    upstream = Upstream(config.upstreams[0], config.cache.load_policy, Metrics())
    await upstream.open()
    yield upstream
    await upstream.close()


@pytest.mark.parametrize("path", ["../internal/admin", "%2e%2e/internal", "a/%2E%2E%2F..%2Finternal", "/internal",
                                  "//evil.example/x", "http://evil.example/x", "models/%00", "models\\..\\x",
                                  "models/x%0d%0aX-Injected:%201",
                                  "models?x=1", ""])
async def test_upstream_request_refuses_a_path_outside_its_base_before_building_headers(
        upstream: Upstream, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """The layer that attaches the key checks too, so no caller can leak it by mistake."""
    def no_headers(client_headers: Any) -> dict[str, str]:
        raise AssertionError("headers were built for a refused path")

    monkeypatch.setattr(upstream, "headers_for", no_headers)
    with pytest.raises(RequestError) as refused:
        async with upstream.request("GET", path, data=None, client_headers={}):
            pass
    assert refused.value.status == 404
    assert recorder.seen == []
    assert upstream.load.inflight == 0


async def test_upstream_request_refuses_trace(upstream: Upstream, recorder: Recorder) -> None:
    with pytest.raises(RequestError) as refused:
        async with upstream.request("TRACE", "models", data=None, client_headers={}):
            pass
    assert refused.value.status == 405 and recorder.seen == []


async def test_upstream_request_sends_exactly_the_checked_path(upstream: Upstream, recorder: Recorder) -> None:
    async with upstream.request("GET", "models/org%2Fname", data=None, query="a=%2F..%2F&b=c d#e",
                                client_headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as response:
        assert response.status == 200
    [seen] = recorder.seen
    assert seen.line == "GET /v1/models/org%2Fname?a=%2F..%2F&b=c%20d%23e HTTP/1.1"
    assert seen.authorizations == [f"Bearer {PROXY_KEY}"]


def test_the_upstream_url_is_built_without_a_second_decoding() -> None:
    upstream = Upstream(UpstreamConfig(url="http://127.0.0.1:9/v1"), config_from_dict({}).cache.load_policy,
                        Metrics())
    url = upstream.url_for("models/org%2Fname", "q=%2e%2e")
    assert (url.raw_path, url.raw_query_string) == ("/v1/models/org%2Fname", "q=%2e%2e")
    assert str(url) == "http://127.0.0.1:9/v1/models/org%2Fname?q=%2e%2e"
