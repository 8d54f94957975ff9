"""Bad input and broken upstreams: an OpenAI-style error with the right status, the proxy stays up, nothing cached."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.conftest import Proxy, Stub, proxy_config, start_proxy

Q = {"model": "stub-model", "temperature": 0}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, proxy: Proxy, body: Any, *, raw: bytes | None = None,
               headers: dict[str, str] | None = None, path: str = "chat/completions") -> tuple[int, Any, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    async with http.post(f"{proxy.base_url}/{path}", data=data,
                         headers={"Content-Type": "application/json", **(headers or {})}) as response:
        text = await response.text()
        try:
            payload = json.loads(text)
        except ValueError:
            payload = text
        return response.status, payload, response.headers


def chat(question: str, **extra: Any) -> dict[str, Any]:
    return {**Q, "messages": [{"role": "user", "content": question}], **extra}


async def assert_still_serving(http: aiohttp.ClientSession, proxy: Proxy) -> None:
    status, body, _ = await post(http, proxy, chat("Are you still there?"))
    assert status == 200 and body["choices"][0]["message"]["content"]


def assert_openai_error(body: Any, param: str | None = None) -> None:
    assert set(body) == {"error"}
    assert {"message", "type", "param", "code"} <= set(body["error"])
    assert body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param


@pytest.mark.parametrize(
    ("body", "raw", "param"),
    [
        (None, b"{not json", None),
        (None, b"\xff\xfe", None),
        ([1, 2], None, None),
        ({**Q}, None, "messages"),
        ({**Q, "messages": "hello"}, None, "messages"),
        ({**Q, "messages": []}, None, "messages"),
        ({**Q, "messages": [{"role": "wizard", "content": "x"}]}, None, "messages[0].role"),
        ({**Q, "messages": [{"role": "user", "content": 5}]}, None, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "x"}]}, None, "model"),
        (chat("x", temperature="hot"), None, "temperature"),
        (chat("x", temperature=7), None, "temperature"),
        (chat("x", max_tokens=-1), None, "max_tokens"),
        (chat("x", max_tokens=1.5), None, "max_tokens"),
        (chat("x", stream="yes"), None, "stream"),
        (chat("x", stop=[1, 2]), None, "stop"),
        (chat("x", tools={"a": 1}), None, "tools"),
        (chat("x", cachesvc={"ttl": -3}), None, "x-cachesvc-ttl"),
        (chat("x", cachesvc={"bogus": 1}), None, "cachesvc"),
    ],
)
async def test_malformed_requests_get_400(http: aiohttp.ClientSession, proxy: Proxy, stub: Stub,
                                          body: Any, raw: bytes | None, param: str | None) -> None:
    status, payload, headers = await post(http, proxy, body, raw=raw)
    assert status == 400, payload
    assert_openai_error(payload, param)
    assert stub.stats.completions == 0
    await assert_still_serving(http, proxy)


async def test_bad_cache_control_headers_get_400(http: aiohttp.ClientSession, proxy: Proxy) -> None:
    for headers in ({"Cache-Control": "max-age=soon"}, {"x-cachesvc-ttl": "0"}, {"x-cachesvc-namespace": "a b"},
                    {"x-cachesvc-sampled": "maybe"}):
        status, payload, _ = await post(http, proxy, chat("x"), headers=headers)
        assert status == 400, headers
        assert_openai_error(payload)


async def test_completions_prompt_validation(http: aiohttp.ClientSession, proxy: Proxy) -> None:
    status, payload, _ = await post(http, proxy, {**Q, "prompt": 42}, path="completions")
    assert status == 400
    assert_openai_error(payload, "prompt")


async def test_oversized_body_gets_413(http: aiohttp.ClientSession, stub: Stub, encode: Callable) -> None:
    proxy = await start_proxy(proxy_config(stub.url, **{"server.max_body_bytes": 4096}), encode)
    try:
        status, payload, _ = await post(http, proxy, chat("x" * 10_000))
        assert status == 413
        assert_openai_error(payload)
        await assert_still_serving(http, proxy)
    finally:
        await proxy.server.close()


async def test_unknown_model_is_relayed_and_not_cached(http: aiohttp.ClientSession, proxy: Proxy, stub: Stub) -> None:
    for _ in range(2):
        status, payload, headers = await post(http, proxy, {**chat("hello"), "model": "no-such-model"})
        assert status == 404
        assert payload["error"]["code"] == "model_not_found"
    assert stub.stats.completions == 0  # the stub refuses before counting


async def test_model_not_in_configured_list_gets_404(http: aiohttp.ClientSession, stub: Stub, encode: Callable) -> None:
    config = proxy_config(stub.url, upstreams=[{"url": stub.url, "models": ["stub-model"]}])
    proxy = await start_proxy(config, encode)
    try:
        status, payload, _ = await post(http, proxy, {**chat("hello"), "model": "gpt-unknown"})
        assert status == 404 and payload["error"]["param"] == "model"
    finally:
        await proxy.server.close()


@pytest.mark.parametrize("failure", ["500", "503", "429", "400"])
async def test_upstream_errors_are_relayed_and_never_cached(http: aiohttp.ClientSession, stub: Stub, encode: Any,
                                                            failure: str) -> None:
    config = proxy_config(stub.url)
    config.upstreams[0].retry.retries = 0  # one upstream call per request: retries have their own tests
    proxy = await start_proxy(config, encode)
    try:
        await _relayed_and_never_cached(http, proxy, stub, failure)
    finally:
        await proxy.server.close()


async def _relayed_and_never_cached(http: aiohttp.ClientSession, proxy: Proxy, stub: Stub, failure: str) -> None:
    for _ in range(2):
        status, payload, _ = await post(http, proxy, chat("Will this fail?"), headers={"x-stub-fail": failure})
        assert status == int(failure)
        assert_openai_error(payload)
    assert stub.stats.completions == 2
    status, _, headers = await post(http, proxy, chat("Will this fail?"))
    assert status == 200 and headers["x-cachesvc-cache"] == "miss"
    if failure in ("429", "503"):
        assert proxy.services.upstreams.default.load.overload_signals == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_upstream_down_gets_502(http: aiohttp.ClientSession, encode: Callable) -> None:
    proxy = await start_proxy(proxy_config(f"http://127.0.0.1:{_closed_port()}/v1"), encode)
    try:
        for stream in (False, True):
            status, payload, _ = await post(http, proxy, chat("anyone home?", stream=stream))
            assert status == 502
            assert payload["error"]["code"] == "upstream_unavailable"
        async with http.get(f"{proxy.root}/healthz") as response:
            assert response.status == 200  # the proxy itself is fine
    finally:
        await proxy.server.close()


async def test_upstream_timeout_gets_504(http: aiohttp.ClientSession, stub: Stub, encode: Callable) -> None:
    config = proxy_config(stub.url, upstreams=[{"url": stub.url, "read_timeout_s": 0.3}])
    proxy = await start_proxy(config, encode)
    try:
        status, payload, _ = await post(http, proxy, chat("slow one"), headers={"x-stub-latency-ms": "2000"})
        assert status == 504
        assert payload["error"]["code"] == "upstream_timeout"
        status, _, headers = await post(http, proxy, chat("slow one"))
        assert status == 200 and headers["x-cachesvc-cache"] == "miss"
    finally:
        await proxy.server.close()


async def test_broken_upstream_stream_is_not_cached(http: aiohttp.ClientSession, proxy: Proxy, stub: Stub) -> None:
    body = chat("Tell me a long story about a lighthouse keeper.", stream=True)
    async with http.post(f"{proxy.base_url}/chat/completions", json=body, headers={"x-stub-break": "3"}) as response:
        text = await response.text()
    assert "upstream_disconnected" in text and "[DONE]" not in text
    status, _, headers = await post(http, proxy, chat("Tell me a long story about a lighthouse keeper."))
    assert status == 200 and headers["x-cachesvc-cache"] == "miss"


async def test_client_disconnect_mid_stream_is_not_cached(http: aiohttp.ClientSession, proxy: Proxy,
                                                          stub: Stub) -> None:
    question = "Describe every planet in the solar system in detail."
    body = chat(question, stream=True)
    async with http.post(f"{proxy.base_url}/chat/completions", json=body,
                         headers={"x-stub-chunk-delay-ms": "100"}) as response:
        await response.content.readany()
        response.close()  # hang up while the upstream is still talking
    for _ in range(50):  # bounded wait for the upstream's generation to be dropped
        if stub.stats.inflight == 0:
            break
        await asyncio.sleep(0.1)
    assert stub.stats.inflight == 0
    status, _, headers = await post(http, proxy, chat(question))
    assert status == 200 and headers["x-cachesvc-cache"] == "miss"
    assert stub.stats.completions == 2


async def test_truncated_answer_is_not_cached(http: aiohttp.ClientSession, proxy: Proxy, stub: Stub) -> None:
    for _ in range(2):
        status, body, headers = await post(http, proxy, chat("Count to a thousand."),
                                           headers={"x-stub-finish": "length"})
        assert status == 200 and headers["x-cachesvc-cache"] == "miss"
        assert body["choices"][0]["finish_reason"] == "length"
    assert stub.stats.completions == 2


async def test_unknown_route_and_method_get_openai_errors(http: aiohttp.ClientSession, proxy: Proxy) -> None:
    async with http.get(f"{proxy.root}/nope") as response:
        assert response.status == 404
        assert_openai_error(await response.json())
    async with http.get(f"{proxy.base_url}/chat/completions") as response:
        assert response.status in (404, 405)  # GET on a POST route falls through to pass-through upstream


def test_vectors_are_unit_length(encode: Callable) -> None:
    vectors = encode(["a question", "another question"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
