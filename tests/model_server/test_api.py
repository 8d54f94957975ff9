"""The model server over loopback with the official openai client and raw HTTP: real SmolLM2, real generation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from cachesvc.config import ModelServerConfig
from cachesvc.model_server.app import ENGINE, create_model_server_app
from cachesvc.model_server.engine import ModelEngine

MODEL = "SmolLM2-135M-Instruct"
# A prompt long enough for eviction to matter (the observation window is 32 tokens).
LONG_PROMPT = " ".join(f"Item {i}: the {['red', 'green', 'blue'][i % 3]} box holds {i * 7} marbles." for i in range(40))


async def start_server(smollm2: Any, **settings: Any) -> TestServer:
    config = ModelServerConfig(**settings)
    app = create_model_server_app(config, engine=ModelEngine(config, loaded=smollm2))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    engine = app[ENGINE]
    for _ in range(600):  # bounded: 30 s
        if engine.status != "loading":
            break
        await asyncio.sleep(0.05)
    assert engine.status == "ready", engine.load_error
    return server


@pytest.fixture
async def server(smollm2: Any) -> AsyncIterator[TestServer]:
    server = await start_server(smollm2)
    yield server
    await server.close()


def base_url(server: TestServer) -> str:
    return f"http://127.0.0.1:{server.port}/v1"


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[openai.AsyncOpenAI]:
    c = openai.AsyncOpenAI(base_url=base_url(server), api_key="none", max_retries=0, timeout=60)
    yield c
    await c.close()


async def test_chat_non_stream_and_stream_agree(client: openai.AsyncOpenAI, smollm2: Any) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    done = await client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=12)
    text = done.choices[0].message.content
    assert "Paris" in text
    assert done.object == "chat.completion" and done.model == MODEL
    _, tokenizer = smollm2
    prompt_len = len(tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"])
    assert done.usage.prompt_tokens == prompt_len
    assert done.usage.total_tokens == prompt_len + done.usage.completion_tokens
    assert done.choices[0].finish_reason in ("stop", "length")

    stream = await client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=12,
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == done.usage.completion_tokens
    assert chunks[-2].choices[0].finish_reason == done.choices[0].finish_reason
    assert len({c.id for c in chunks}) == 1


async def test_raw_stream_is_vllm_shaped(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url(server) + "/completions", json={
                "model": MODEL, "prompt": "1, 2, 3, 4,", "max_tokens": 5, "temperature": 0, "stream": True}) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            assert int(r.headers["x-kv-entries-full"]) > 0
            raw = (await r.read()).decode()
    events = [line[len("data: "):] for line in raw.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    final = chunks[-1]["choices"][0]
    assert final["finish_reason"] == "length" and "stop_reason" in final
    assert chunks[-1]["kv_cache"]["policy"] is None
    assert "".join(c["choices"][0]["text"] for c in chunks).strip().startswith("5")


async def test_stop_sequences_and_max_tokens(client: openai.AsyncOpenAI) -> None:
    base = await client.completions.create(model=MODEL, prompt="Count: 1, 2, 3, 4,", max_tokens=12, temperature=0)
    text = base.choices[0].text
    assert base.choices[0].finish_reason == "length" and base.usage.completion_tokens == 12
    cut = "7"
    assert cut in text, text
    stopped = await client.completions.create(model=MODEL, prompt="Count: 1, 2, 3, 4,", max_tokens=12,
                                              temperature=0, stop=[cut])
    assert stopped.choices[0].text == text[: text.index(cut)]
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.model_extra is not None
    assert stopped.choices[0].model_extra["stop_reason"] == cut


async def test_seeded_sampling_is_reproducible(client: openai.AsyncOpenAI) -> None:
    async def sample(seed: int) -> str:
        done = await client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10,
                                               temperature=1.0, top_p=0.95, seed=seed)
        return done.choices[0].text

    first = await sample(1)
    assert first == await sample(1)
    assert len({first, await sample(2), await sample(3)}) > 1


async def test_kv_eviction_is_reported_and_shrinks_the_cache(client: openai.AsyncOpenAI) -> None:
    messages = [{"role": "user", "content": LONG_PROMPT + "\nHow many marbles does item 3 hold?"}]
    full = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=4)
    kept = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=4,
        extra_body={"kv_policy": "defensivekv", "kv_budget": 0.25})
    full_kv, kept_kv = full.parse().model_extra["kv_cache"], kept.parse().model_extra["kv_cache"]
    assert full_kv["entries_kept"] == full_kv["entries_full"] and full_kv["policy"] is None
    assert kept_kv["policy"] == "defensivekv" and kept_kv["entries_full"] == full_kv["entries_full"]
    assert 0.2 < kept_kv["entries_kept"] / kept_kv["entries_full"] <= 0.26
    # Head-wise budgets are held packed: fewer bytes than the full cache, a little more than the entries (slot map).
    assert kept_kv["entries_kept"] / kept_kv["entries_full"] <= kept_kv["bytes_kept"] / full_kv["bytes_kept"] < 0.5
    assert kept.headers["x-kv-policy"] == "defensivekv"
    assert int(kept.headers["x-kv-entries-kept"]) == kept_kv["entries_kept"]
    snap = await client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=4,
                                                extra_body={"kv_policy": "snapkv", "kv_budget": 0.25})
    snap_kv = snap.model_extra["kv_cache"]  # equal per-head budgets: no padding, bytes follow entries exactly
    assert snap_kv["bytes_kept"] / snap_kv["bytes_full"] == snap_kv["entries_kept"] / snap_kv["entries_full"]


async def test_server_wide_kv_policy(smollm2: Any) -> None:
    options = {"snapkv": {"pool_kernel": 7}}
    server = await start_server(smollm2, kv_policy="snapkv", kv_budget=64, request_kv_policy=False,
                                kv_policy_options=options)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/healthz") as r:
                health = await r.json()
            assert (health["kv_policy"], health["kv_budget"], health["kv_policy_options"]) == ("snapkv", 64, options)
            body = {"model": MODEL, "prompt": LONG_PROMPT, "max_tokens": 2, "temperature": 0}
            async with http.post(base_url(server) + "/completions", json=body) as r:
                kv = (await r.json())["kv_cache"]
            assert kv["policy"] == "snapkv" and kv["entries_kept"] == 64 * 3 * 30  # 64 per KV head, every layer
            async with http.post(base_url(server) + "/completions", json={**body, "kv_policy": "none"}) as r:
                assert r.status == 400  # requests may not choose here
    finally:
        await server.close()


@pytest.mark.parametrize(("path", "body", "status", "param"), [
    ("/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404, "model"),
    ("/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "temperature": 9},
     400, "temperature"),
    ("/completions", {"model": MODEL, "prompt": "word " * 9000}, 400, "prompt"),
    ("/completions", {"model": MODEL, "prompt": "x", "max_tokens": 10_000}, 400, "prompt"),
    ("/completions", {"model": MODEL, "prompt": "x", "n": 3}, 400, "n"),
])
async def test_errors_are_openai_shaped(server: TestServer, path: str, body: dict[str, Any], status: int,
                                        param: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url(server) + path, json=body) as r:
            assert r.status == status
            error = (await r.json())["error"]
    assert error["param"] == param and error["message"] and error["type"]


async def test_malformed_json_and_wrong_method(server: TestServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url(server) + "/chat/completions", data=b"{not json",
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400 and "error" in await r.json()
        async with http.get(base_url(server) + "/chat/completions") as r:
            assert r.status == 405 and "error" in await r.json()
        async with http.get(base_url(server) + "/models") as r:
            cards = (await r.json())["data"]
    assert [c["id"] for c in cards] == [MODEL] and cards[0]["parent"] is None


async def test_health_answers_during_a_long_generation(server: TestServer) -> None:
    engine = server.app[ENGINE]
    async with aiohttp.ClientSession() as http:
        body = {"model": MODEL, "prompt": "Write a long story about a dragon.", "max_tokens": 60,
                "temperature": 0, "ignore_eos": True}
        generation = asyncio.create_task(http.post(base_url(server) + "/completions", json=body))
        for _ in range(100):  # bounded: until the generation is running
            if engine.pending:
                break
            await asyncio.sleep(0.01)
        latencies = []
        for _ in range(5):
            started = time.perf_counter()
            async with http.get(f"http://127.0.0.1:{server.port}/healthz") as r:
                state = await r.json()
            latencies.append(time.perf_counter() - started)
            assert r.status == 200 and state["status"] == "ready"
            await asyncio.sleep(0.05)
        assert engine.pending == 1, "the generation was still running while /healthz answered"
        response = await generation
        done = await response.json()
        response.release()
    assert done["usage"]["completion_tokens"] == 60
    assert max(latencies) < 1.0


async def test_a_client_that_leaves_stops_the_generation(server: TestServer) -> None:
    engine = server.app[ENGINE]
    before = engine.stats.completion_tokens
    async with aiohttp.ClientSession() as http:
        body = {"model": MODEL, "prompt": "Tell me everything about the sea.", "max_tokens": 400,
                "temperature": 0, "ignore_eos": True, "stream": True}
        async with http.post(base_url(server) + "/completions", json=body) as r:
            await r.content.readuntil(b"\n\n")  # one chunk, then hang up
    for _ in range(200):  # bounded: 10 s
        if engine.pending == 0:
            break
        await asyncio.sleep(0.05)
    assert engine.pending == 0
    assert engine.stats.completion_tokens - before < 400


async def test_a_full_queue_answers_503(smollm2: Any) -> None:
    server = await start_server(smollm2, max_queue=1)
    try:
        async with aiohttp.ClientSession() as http:
            body = {"model": MODEL, "prompt": "Tell a story.", "max_tokens": 30, "temperature": 0,
                    "ignore_eos": True}
            first = asyncio.create_task(http.post(base_url(server) + "/completions", json=body))
            engine = server.app[ENGINE]
            for _ in range(100):
                if engine.pending:
                    break
                await asyncio.sleep(0.01)
            async with http.post(base_url(server) + "/completions", json=body) as r:
                assert r.status == 503 and (await r.json())["error"]["code"] == "server_overloaded"
            response = await first
            assert response.status == 200
            response.release()
    finally:
        await server.close()


async def test_metrics_count_tokens_and_requests(server: TestServer, client: openai.AsyncOpenAI) -> None:
    done = await client.completions.create(model=MODEL, prompt="Hello", max_tokens=3, temperature=0,
                                           extra_body={"ignore_eos": True})
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{server.port}/metrics") as r:
            text = await r.text()
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(lines["cachesvc_model_generation_tokens_total"]) == done.usage.completion_tokens == 3
    assert float(lines["cachesvc_model_prompt_tokens_total"]) == done.usage.prompt_tokens
    assert float(lines[f'cachesvc_model_requests_total{{finish_reason="length",model="{MODEL}"}}']) == 1
    assert float(lines["cachesvc_model_time_to_first_token_seconds_count"]) == 1


async def test_a_model_that_fails_to_load_is_reported_not_hidden(tmp_path: Any) -> None:
    config = ModelServerConfig(model=str(tmp_path / "no-such-model"))
    app = create_model_server_app(config)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        engine = app[ENGINE]
        for _ in range(200):  # bounded: 10 s
            if engine.status != "loading":
                break
            await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/healthz") as r:
                state = await r.json()
                assert r.status == 503 and state["status"] == "failed" and "no-such-model" in state["error"]
            body = {"model": "no-such-model", "prompt": "x"}
            async with http.post(base_url(server) + "/completions", json=body) as r:
                assert r.status == 503 and (await r.json())["error"]["code"] == "model_load_failed"
    finally:
        await server.close()
