"""One wire format on every path: a live relay, a replay from cache and a stand-in upstream write the same shapes;
bodies that JSON forbids are refused before anything goes upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import Proxy, Stub


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def stream(http: aiohttp.ClientSession, proxy: Proxy, question: str) -> tuple[str, list[Any]]:
    body = {"model": "stub-model", "temperature": 0, "stream": True,
            "messages": [{"role": "user", "content": question}]}
    async with http.post(f"{proxy.base_url}/chat/completions", json=body) as response:
        assert response.status == 200 and response.content_type == "text/event-stream"
        raw = (await response.read()).decode()
        result = response.headers["x-cachesvc-cache"]
    events = [line.removeprefix("data: ") for line in raw.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    return result, [json.loads(e) for e in events[:-1]]


def shape(chunk: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    choice = chunk["choices"][0] if chunk["choices"] else {}
    return tuple(sorted(chunk)), tuple(sorted(choice)), tuple(sorted(choice.get("delta", {})))


async def test_replayed_stream_has_the_shapes_of_the_live_one(http: aiohttp.ClientSession, proxy: Proxy) -> None:
    question = "Explain in a few words why the sky looks blue during the day."
    live_result, live = await stream(http, proxy, question)
    replay_result, replay = await stream(http, proxy, question)
    assert (live_result, replay_result) == ("miss", "hit")
    assert {shape(c) for c in replay} <= {shape(c) for c in live}
    assert replay[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert replay[-1]["choices"][0]["finish_reason"] == live[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in live)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in replay) == text
    assert len({c["id"] for c in replay}) == 1 and replay[0]["id"] != live[0]["id"]


@pytest.mark.parametrize("raw", [
    b'{"model": "stub-model", "temperature": NaN, "messages": [{"role": "user", "content": "hi"}]}',
    b'{"model": "stub-model", "messages": [{"role": "user", "content": "\\ud800 lone surrogate"}]}',
])
async def test_bodies_json_forbids_are_refused_before_the_upstream(http: aiohttp.ClientSession, proxy: Proxy,
                                                                  stub: Stub, raw: bytes) -> None:
    async with http.post(f"{proxy.base_url}/chat/completions", data=raw,
                         headers={"Content-Type": "application/json"}) as response:
        body = await response.json()
        assert response.status == 400 and response.headers["x-cachesvc-cache"] == "bypass"
    assert body["error"]["type"] == "invalid_request_error" and "not valid JSON" in body["error"]["message"]
    assert stub.stats.completions == 0
