"""`cachesvc serve` without an upstream: client -> proxy -> cache -> the in-process model server, end to end with
the official openai client over loopback, streamed and not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import numpy as np
import openai
import pytest

from cachesvc.config import config_from_dict
from tests.conftest import Proxy, start_proxy
from tests.model_server.test_api import MODEL

QUESTION = "What is the capital of France?"


@pytest.fixture
async def proxy(smollm2: Any, encode: Callable[[list[str]], np.ndarray]) -> AsyncIterator[Proxy]:
    config = config_from_dict({})
    assert config.embedded_model_server
    proxy = await start_proxy(config, encode, model=smollm2)
    engine = proxy.services.model_engine
    for _ in range(600):  # bounded: 30 s
        if engine.status != "loading":
            break
        await asyncio.sleep(0.05)
    assert engine.status == "ready", engine.load_error
    assert config.upstreams[0].url.startswith("http://127.0.0.1:")
    yield proxy
    await proxy.server.close()


@pytest.fixture
async def client(proxy: Proxy) -> AsyncIterator[openai.AsyncOpenAI]:
    c = openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-test", max_retries=0, timeout=60)
    yield c
    await c.close()


async def test_non_streamed_miss_then_hit(client: openai.AsyncOpenAI, proxy: Proxy) -> None:
    messages = [{"role": "user", "content": QUESTION}]
    first = await client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0,
                                                                   max_tokens=16)
    assert first.headers["x-cachesvc-cache"] == "miss"
    answer = first.parse().choices[0].message.content
    assert "Paris" in answer
    requests = proxy.services.model_engine.stats.requests
    second = await client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0,
                                                                    max_tokens=16)
    assert second.headers["x-cachesvc-cache"] == "hit"
    assert second.parse().choices[0].message.content == answer
    assert second.parse().usage.completion_tokens == first.parse().usage.completion_tokens
    assert proxy.services.model_engine.stats.requests == requests  # the model was not asked again


async def test_streamed_miss_then_hit_and_shared_with_non_streamed(client: openai.AsyncOpenAI, proxy: Proxy) -> None:
    messages = [{"role": "user", "content": "What is the capital of Italy?"}]

    async def stream() -> tuple[str, str]:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=messages, temperature=0, max_tokens=48, stream=True)
        chunks = [c async for c in raw.parse() if c.choices]
        assert chunks[-1].choices[0].finish_reason == "stop"  # a truncated answer would not be cached
        return "".join(c.choices[0].delta.content or "" for c in chunks), raw.headers["x-cachesvc-cache"]

    text, state = await stream()
    assert state == "miss" and text
    again, state = await stream()
    assert (again, state) == (text, "hit")
    plain = await client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, temperature=0,
                                                                   max_tokens=48)
    assert plain.headers["x-cachesvc-cache"] == "hit"
    assert plain.parse().choices[0].message.content == text


async def test_models_and_health_through_the_proxy(client: openai.AsyncOpenAI, proxy: Proxy) -> None:
    models = await client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.root + "/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
