"""Retries, the circuit breaker and failover end to end: the proxy on loopback in front of scripted upstreams.

Each scripted upstream answers its completion requests with the next step of its script (a status with headers,
a stream that breaks off, a slow answer), then with well-formed answers; it counts the requests that reached it.
The cache is off, so every request goes upstream (a bypass) through the same relay as a miss.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cachesvc.openai.http import error_response, json_response, open_event_stream
from cachesvc.openai.responses import ResponseBuilder
from cachesvc.openai.sse import DONE, encode_event
from tests.conftest import Proxy, proxy_config, start_proxy

FAST_RETRY = {"retries": 2, "backoff_base_s": 0.01, "backoff_cap_s": 0.02}


@dataclass
class Step:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    break_stream: bool = False  # headers and one chunk, then the connection is cut
    delay_s: float = 0.0  # before the response headers


@dataclass
class Scripted:
    server: TestServer
    script: list[Step]
    calls: int = 0
    paths: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/v1"


async def start_scripted(*script: Step) -> Scripted:
    scripted: Scripted

    async def handle(request: web.Request) -> web.StreamResponse:
        scripted.calls += 1
        scripted.paths.append(f"{request.method} {request.path}")
        step = scripted.script.pop(0) if scripted.script else Step()
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step.status != 200:
            return error_response(step.status, f"scripted {step.status}", code="scripted", headers=step.headers)
        body = await request.json() if request.can_read_body else {}
        out = ResponseBuilder("chat", str(body.get("model", "m")))
        if not body.get("stream"):
            return json_response(out.body([out.final_choice(0, "Paris.", "stop")]))
        response = await open_event_stream(request)
        await response.write(encode_event(out.chunk(out.piece(0, "Par"))))
        if step.break_stream:
            await asyncio.sleep(0.05)  # the first chunk reaches the proxy (and its client) first
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write(encode_event(out.chunk(out.piece(0, "is.", "stop"))))
        await response.write(encode_event(DONE))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("*", "/v1/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    scripted = Scripted(server, list(script))
    return scripted


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def no_embedding(texts: list[str]) -> np.ndarray:
    return np.zeros((len(texts), 384), dtype=np.float32)  # the cache is off: never asked


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def servers() -> AsyncIterator[Callable[..., Any]]:
    """Start scripted upstreams and proxies; all are closed at the end."""
    started: list[TestServer] = []

    async def scripted(*script: Step) -> Scripted:
        upstream = await start_scripted(*script)
        started.append(upstream.server)
        return upstream

    async def proxy(*upstreams: dict[str, Any]) -> Proxy:
        config = proxy_config("http://unused/v1", upstreams=list(upstreams), **{"cache.enabled": False})
        proxy = await start_proxy(config, no_embedding)
        started.append(proxy.server)
        return proxy

    scripted.proxy = proxy  # type: ignore[attr-defined]
    yield scripted
    for server in reversed(started):
        await server.close()


def upstream(url: str, name: str = "default", retry: dict[str, Any] | None = None,
             breaker: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"url": url, "name": name, "retry": {**FAST_RETRY, **(retry or {})}, "breaker": breaker or {}, **extra}


async def chat(http: aiohttp.ClientSession, proxy: Proxy, *, stream: bool = False,
               model: str = "m") -> tuple[int, Any, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "Capital of France?"}], "stream": stream}
    async with http.post(f"{proxy.base_url}/chat/completions", json=body) as response:
        raw = await response.read()
        payload = raw if stream and response.status == 200 else json.loads(raw)
        return response.status, payload, response.headers


def sse_events(raw: bytes) -> list[str]:
    return [line[len(b"data: "):].decode() for line in raw.split(b"\n") if line.startswith(b"data: ")]


async def test_a_503_then_a_200_is_retried_and_served(http: aiohttp.ClientSession, servers: Any) -> None:
    up = await servers(Step(503))
    proxy = await servers.proxy(upstream(up.url, "primary"))
    status, body, headers = await chat(http, proxy)
    assert status == 200 and body["choices"][0]["message"]["content"] == "Paris."
    assert up.calls == 2
    assert headers["x-cachesvc-upstream"] == "primary" and headers["x-cachesvc-upstream-attempts"] == "2"
    assert float(headers["x-cachesvc-upstream-ms"]) >= 0
    metrics = proxy.services.metrics.registry
    assert metrics.get_sample_value("cachesvc_upstream_retries_total",
                                    {"upstream": "primary", "reason": "503"}) == 1
    status, _, headers = await chat(http, proxy)  # a first-time answer says nothing of attempts
    assert status == 200 and "x-cachesvc-upstream-attempts" not in headers and up.calls == 3


async def test_retry_after_is_honoured(http: aiohttp.ClientSession, servers: Any) -> None:
    up = await servers(Step(429, {"Retry-After": "0.2"}))
    proxy = await servers.proxy(upstream(up.url, retry={"backoff_base_s": 1.0, "backoff_cap_s": 1.0}))
    started = time.monotonic()
    status, _, _ = await chat(http, proxy)
    elapsed = time.monotonic() - started
    assert status == 200 and up.calls == 2
    assert 0.2 <= elapsed < 1.0  # the upstream's 0.2 s, not the backoff


async def test_retry_after_past_the_cap_is_passed_on(http: aiohttp.ClientSession, servers: Any) -> None:
    up = await servers(Step(429, {"Retry-After": "5"}))
    proxy = await servers.proxy(upstream(up.url, retry={"max_retry_after_s": 1.0}))
    started = time.monotonic()
    status, body, headers = await chat(http, proxy)
    assert status == 429 and headers["Retry-After"] == "5" and body["error"]["code"] == "scripted"
    assert up.calls == 1 and time.monotonic() - started < 1.0
    assert headers["x-cachesvc-upstream"] == "default"


async def test_no_retry_once_a_stream_has_started(http: aiohttp.ClientSession, servers: Any) -> None:
    up = await servers(Step(break_stream=True))
    proxy = await servers.proxy(upstream(up.url))
    status, raw, headers = await chat(http, proxy, stream=True)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "Par"  # the client got the first chunk
    assert json.loads(events[-1])["error"]["code"] == "upstream_disconnected"  # then the error, no [DONE]
    assert up.calls == 1


async def test_a_request_sent_but_unanswered_is_not_retried_by_default(http: aiohttp.ClientSession,
                                                                       servers: Any) -> None:
    up = await servers(Step(delay_s=1.0))
    proxy = await servers.proxy(upstream(up.url, read_timeout_s=0.2))
    status, body, _ = await chat(http, proxy)
    assert status == 504 and body["error"]["code"] == "upstream_timeout"
    assert up.calls == 1  # it may be generating (and billing) still


async def test_breaker_opens_fails_fast_and_a_probe_closes_it(http: aiohttp.ClientSession, servers: Any) -> None:
    up = await servers(Step(503), Step(503))
    proxy = await servers.proxy(upstream(up.url, retry={"retries": 0}, breaker={"failures": 2, "open_s": 0.3}))
    for _ in range(2):
        status, _, _ = await chat(http, proxy)
        assert status == 503
    breaker = proxy.services.upstreams.upstreams[0].breaker
    assert breaker.state == "open" and up.calls == 2
    metrics = proxy.services.metrics.registry
    assert metrics.get_sample_value("cachesvc_upstream_breaker_state", {"upstream": "default"}) == 2
    status, body, headers = await chat(http, proxy)
    assert status == 503 and body["error"]["code"] == "upstream_circuit_open"
    assert 1 <= int(headers["Retry-After"]) <= 1 and up.calls == 2  # failed fast: the upstream never saw it
    await asyncio.sleep(0.35)
    status, _, _ = await chat(http, proxy)  # the half-open probe
    assert status == 200 and up.calls == 3 and breaker.state == "closed"
    assert metrics.get_sample_value("cachesvc_upstream_breaker_state", {"upstream": "default"}) == 0
    status, _, _ = await chat(http, proxy)
    assert status == 200 and up.calls == 4


async def test_first_upstream_down_the_second_serves(http: aiohttp.ClientSession, servers: Any) -> None:
    second = await servers()
    proxy = await servers.proxy(upstream(closed_port_url(), "first", models=["m"]),
                                upstream(second.url, "second", models=["m"]))
    for stream in (False, True):
        status, _, headers = await chat(http, proxy, stream=stream)
        assert status == 200 and headers["x-cachesvc-upstream"] == "second"
        assert headers["x-cachesvc-upstream-attempts"] == "2"  # one refused connection, not retried there
    assert second.calls == 2
    metrics = proxy.services.metrics.registry
    assert metrics.get_sample_value("cachesvc_upstream_failovers_total",
                                    {"upstream": "first", "reason": "connect_error"}) == 2


async def test_an_open_breaker_puts_its_upstream_last(http: aiohttp.ClientSession, servers: Any) -> None:
    first, second = await servers(Step(503)), await servers()
    proxy = await servers.proxy(upstream(first.url, "first", retry={"retries": 0}, breaker={"failures": 1}),
                                upstream(second.url, "second"))
    status, _, headers = await chat(http, proxy)  # first answers 503 (no retries), second serves; first opens
    assert status == 200 and headers["x-cachesvc-upstream"] == "second" and first.calls == 1
    status, _, headers = await chat(http, proxy)  # first is not even tried now
    assert status == 200 and headers["x-cachesvc-upstream"] == "second"
    assert "x-cachesvc-upstream-attempts" not in headers and first.calls == 1 and second.calls == 2


async def test_both_upstreams_down_is_a_502_naming_both(http: aiohttp.ClientSession, servers: Any) -> None:
    proxy = await servers.proxy(upstream(closed_port_url(), "first"), upstream(closed_port_url(), "second"))
    started = time.monotonic()
    status, body, _ = await chat(http, proxy)
    assert status == 502 and set(body) == {"error"}
    error = body["error"]
    assert error["code"] == "upstream_unavailable" and error["type"] == "upstream_error"
    assert "No upstream serving this request answered" in error["message"]
    assert "'first'" in error["message"] and "'second'" in error["message"]
    assert time.monotonic() - started < 2.0


async def test_every_breaker_open_is_a_fast_503(http: aiohttp.ClientSession, servers: Any) -> None:
    breaker = {"failures": 1, "open_s": 30.0}
    proxy = await servers.proxy(upstream(closed_port_url(), "first", breaker=breaker),
                                upstream(closed_port_url(), "second", breaker=breaker))
    status, _, _ = await chat(http, proxy)
    assert status == 502  # both tried, both failed: both open now
    status, body, headers = await chat(http, proxy)
    assert status == 503 and body["error"]["code"] == "upstream_circuit_open"
    assert 25 <= int(headers["Retry-After"]) <= 30


async def test_pass_through_retries_only_where_the_upstream_cannot_have_acted(http: aiohttp.ClientSession,
                                                                              servers: Any) -> None:
    up = await servers(Step(503))
    proxy = await servers.proxy(upstream(up.url))
    async with http.get(f"{proxy.base_url}/files") as response:  # idempotent: retried
        assert response.status == 200 and response.headers["x-cachesvc-upstream-attempts"] == "2"
    assert up.calls == 2
    up.script = [Step(503), Step(503)]
    async with http.post(f"{proxy.base_url}/batches", json={"input_file_id": "f"}) as response:
        assert response.status == 503  # a POST may have created something: passed on, not repeated
        assert response.headers["x-cachesvc-upstream"] == "default"
    assert up.calls == 3
