"""End to end over loopback: the official openai client -> cachesvc -> a stand-in upstream, real model and index."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from cachesvc.upstreams.stub import answer_text
from tests.conftest import Proxy, Stub

_open_clients: list[openai.AsyncOpenAI] = []


def client(proxy: Proxy, api_key: str = "sk-tenant-a", **headers: str) -> openai.AsyncOpenAI:
    c = openai.AsyncOpenAI(base_url=proxy.base_url, api_key=api_key, max_retries=0, timeout=30,
                           default_headers=headers or None)
    _open_clients.append(c)
    return c


@pytest.fixture(autouse=True)
async def _close_clients() -> Any:
    yield
    while _open_clients:
        await _open_clients.pop().close()


async def ask(c: openai.AsyncOpenAI, question: str, **kwargs: Any) -> tuple[str, dict[str, str]]:
    messages = kwargs.pop("messages", None) or [{"role": "user", "content": question}]
    raw = await c.chat.completions.with_raw_response.create(model="stub-model", messages=messages,
                                                            temperature=0, **kwargs)
    completion = raw.parse()
    return completion.choices[0].message.content or "", dict(raw.headers)


async def ask_stream(c: openai.AsyncOpenAI, question: str, **kwargs: Any) -> tuple[str, dict[str, str], list[Any]]:
    raw = await c.chat.completions.with_raw_response.create(
        model="stub-model", messages=[{"role": "user", "content": question}], temperature=0, stream=True, **kwargs)
    stream = raw.parse()
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, dict(raw.headers), chunks


async def test_miss_then_exact_hit(proxy: Proxy, stub: Stub) -> None:
    c = client(proxy)
    text, headers = await ask(c, "How do I reverse a list in Python?")
    assert headers["x-cachesvc-cache"] == "miss"
    assert text == answer_text("How do I reverse a list in Python?")
    text2, headers2 = await ask(c, "How do I reverse a list in Python?")
    assert headers2["x-cachesvc-cache"] == "hit"
    assert headers2["x-cachesvc-tier"] == "exact"
    assert headers2["x-cachesvc-category"] == headers["x-cachesvc-category"]
    assert text2 == text
    assert stub.stats.completions == 1


async def test_paraphrase_is_a_semantic_hit_and_look_alike_is_not(proxy: Proxy, stub: Stub) -> None:
    c = client(proxy)
    original = "How do I sort a list of numbers in descending order in Python?"
    await ask(c, original)
    # Worded the same but for case and punctuation: served at any target precision (see
    # tests/server/test_learned_verification.py for paraphrases the calibrated bar decides).
    text, headers = await ask(c, "how do I sort a list of numbers in descending order in python")
    assert headers["x-cachesvc-cache"] == "hit", headers
    assert headers["x-cachesvc-tier"] == "semantic"
    assert 0 < float(headers["x-cachesvc-similarity"]) < 1
    assert text == answer_text(original)
    trap = "How do I sort a list of numbers in ascending order in Python?"
    text, headers = await ask(c, trap)
    assert headers["x-cachesvc-cache"] == "miss"
    assert text == answer_text(trap)
    assert stub.stats.completions == 2


async def test_stream_miss_is_relayed_and_replayed_as_sse(proxy: Proxy, stub: Stub) -> None:
    c = client(proxy)
    question = "What is the boiling point of water at sea level?"
    text, headers, chunks = await ask_stream(c, question)
    assert headers["x-cachesvc-cache"] == "miss"
    assert text == answer_text(question)
    text2, headers2, chunks2 = await ask_stream(c, question, stream_options={"include_usage": True})
    assert headers2["x-cachesvc-cache"] == "hit"
    assert headers2["content-type"].startswith("text/event-stream")
    assert text2 == text
    assert len(chunks2) > 2, "a replay is several chunks, not one blob"
    assert chunks2[0].choices[0].delta.role == "assistant"
    assert chunks2[-2].choices[0].finish_reason == "stop"
    assert chunks2[-1].usage is not None and chunks2[-1].choices == []
    # The non-streamed form is served from the same entry.
    text3, headers3 = await ask(c, question)
    assert headers3["x-cachesvc-cache"] == "hit" and text3 == text
    assert stub.stats.completions == 1


async def test_raw_replay_ends_with_done(proxy: Proxy) -> None:
    import aiohttp

    body = {"model": "stub-model", "messages": [{"role": "user", "content": "Name a prime number."}],
            "temperature": 0, "stream": True}
    async with aiohttp.ClientSession() as session:
        for expected in ("miss", "hit"):
            async with session.post(f"{proxy.base_url}/chat/completions", json=body) as response:
                raw = await response.text()
                assert response.headers["x-cachesvc-cache"] == expected
            events = [e for e in raw.split("\n\n") if e.strip()]
            assert all(e.startswith("data: ") for e in events)
            assert events[-1] == "data: [DONE]"


async def test_tenants_never_share_answers(proxy: Proxy, stub: Stub) -> None:
    question = "What is the capital of Australia?"
    _, h1 = await ask(client(proxy, "sk-tenant-a"), question)
    _, h2 = await ask(client(proxy, "sk-tenant-b"), question)
    _, h3 = await ask(client(proxy, "sk-tenant-a"), question)
    assert (h1["x-cachesvc-cache"], h2["x-cachesvc-cache"], h3["x-cachesvc-cache"]) == ("miss", "miss", "hit")
    assert stub.stats.completions == 2


async def test_system_prompt_and_history_partition_the_cache(proxy: Proxy, stub: Stub) -> None:
    c = client(proxy)
    question = "Yes, cancel it."
    first = [{"role": "user", "content": "Should I cancel my gym membership?"},
             {"role": "assistant", "content": "Do you want me to cancel it?"}, {"role": "user", "content": question}]
    second = [{"role": "user", "content": "Should I cancel my flight to Rome?"},
              {"role": "assistant", "content": "Do you want me to cancel it?"}, {"role": "user", "content": question}]
    system = [{"role": "system", "content": "Answer like a pirate."}, {"role": "user", "content": question}]
    results = [(await ask(c, "", messages=m))[1]["x-cachesvc-cache"] for m in (first, second, system, first)]
    assert results == ["miss", "miss", "miss", "hit"]
    assert stub.stats.completions == 3


async def test_sampling_parameters_partition_the_cache(proxy: Proxy, stub: Stub) -> None:
    c = client(proxy)
    q = "Write a haiku about autumn."
    await ask(c, q)
    _, h = await ask(c, q, max_tokens=5)
    assert h["x-cachesvc-cache"] == "miss"
    _, h = await ask(c, q, seed=7)
    assert h["x-cachesvc-cache"] == "miss"
    assert stub.stats.completions == 3


async def test_temperature_above_zero_bypasses_unless_opted_in(proxy: Proxy, stub: Stub) -> None:
    c = client(proxy)
    q = "Tell me a joke about cats."
    for _ in range(2):
        raw = await c.chat.completions.with_raw_response.create(
            model="stub-model", messages=[{"role": "user", "content": q}], temperature=0.9)
        assert raw.headers["x-cachesvc-cache"] == "bypass"
    assert stub.stats.completions == 2
    sampled = client(proxy, **{"x-cachesvc-sampled": "true"})
    results = []
    for _ in range(2):
        raw = await sampled.chat.completions.with_raw_response.create(
            model="stub-model", messages=[{"role": "user", "content": q}], temperature=0.9)
        results.append(raw.headers["x-cachesvc-cache"])
    assert results == ["miss", "hit"]


async def test_cache_control_no_cache_no_store_max_age(proxy: Proxy, stub: Stub) -> None:
    c = client(proxy)
    q = "What does HTTP status 418 mean?"
    _, h = await ask(c, q, extra_headers={"Cache-Control": "no-store"})
    assert h["x-cachesvc-cache"] == "bypass"
    _, h = await ask(c, q)
    assert h["x-cachesvc-cache"] == "miss", "no-store must not have written"
    _, h = await ask(c, q, extra_headers={"Cache-Control": "no-cache"})
    assert h["x-cachesvc-cache"] == "miss", "no-cache must not read"
    _, h = await ask(c, q)
    assert h["x-cachesvc-cache"] == "hit"
    await asyncio.sleep(1.1)
    _, h = await ask(c, q, extra_headers={"Cache-Control": "max-age=1"})
    assert h["x-cachesvc-cache"] == "miss", "an entry older than max-age is not served"
    _, h = await ask(c, q, extra_body={"cachesvc": {"max_age": 60}})
    assert h["x-cachesvc-cache"] == "hit"
    assert stub.stats.completions == 4


async def test_per_request_ttl_and_namespace(proxy: Proxy, stub: Stub) -> None:
    c = client(proxy)
    q = "Summarize the plot of Macbeth in one sentence."
    _, h = await ask(c, q, extra_headers={"x-cachesvc-ttl": "1"})
    assert h["x-cachesvc-cache"] == "miss"
    _, h = await ask(c, q)
    assert h["x-cachesvc-cache"] == "hit"
    _, h = await ask(c, q, extra_headers={"x-cachesvc-namespace": "staging"})
    assert h["x-cachesvc-cache"] == "miss", "namespaces are separate caches"
    await asyncio.sleep(1.1)
    _, h = await ask(c, q)
    assert h["x-cachesvc-cache"] == "miss", "the entry's own TTL expired"


async def test_category_override_header(proxy: Proxy) -> None:
    c = client(proxy)
    _, h = await ask(c, "Hello there, how are you?", extra_headers={"x-cachesvc-category": "volatile"})
    assert h["x-cachesvc-category"] == "volatile"
    with pytest.raises(openai.BadRequestError) as info:
        await ask(c, "Hello there", extra_headers={"x-cachesvc-category": "nonsense"})
    assert "x-cachesvc-category" in str(info.value)


async def test_identical_concurrent_misses_go_upstream_once(proxy: Proxy, stub: Stub) -> None:
    c = client(proxy)
    q = "Explain the difference between TCP and UDP."
    results = await asyncio.gather(*(ask(c, q, extra_headers={"x-stub-latency-ms": "300"}) for _ in range(6)))
    assert stub.stats.completions == 1
    assert {text for text, _ in results} == {answer_text(q)}
    assert sorted(h["x-cachesvc-cache"] for _, h in results) == ["hit"] * 5 + ["miss"]


async def test_tool_calls_are_cached_with_the_tools_in_the_key(proxy: Proxy, stub: Stub) -> None:
    c = client(proxy)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    other_tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    q = "Find the weather in Oslo."
    kinds = []
    for t in (tools, tools, other_tools):
        raw = await c.chat.completions.with_raw_response.create(
            model="stub-model", messages=[{"role": "user", "content": q}], temperature=0, tools=t,
            extra_headers={"x-stub-tool-call": t[0]["function"]["name"]})
        kinds.append(raw.headers["x-cachesvc-cache"])
        assert raw.parse().choices[0].message.tool_calls[0].function.name == t[0]["function"]["name"]
    assert kinds == ["miss", "hit", "miss"]


async def test_completions_endpoint(proxy: Proxy, stub: Stub) -> None:
    c = client(proxy)
    kinds = []
    for stream in (False, True):
        raw = await c.completions.with_raw_response.create(model="stub-model", prompt="Once upon a time",
                                                           temperature=0, stream=stream)
        kinds.append(raw.headers["x-cachesvc-cache"])
        if stream:
            text = "".join([chunk.choices[0].text async for chunk in raw.parse() if chunk.choices])
        else:
            text = raw.parse().choices[0].text
        assert text == answer_text("Once upon a time")
    assert kinds == ["miss", "hit"]
    assert stub.stats.completions == 1


async def test_models_are_listed_from_the_upstream(proxy: Proxy) -> None:
    models = await client(proxy).models.list()
    assert {m.id for m in models.data} == {"stub-model", "other-model"}


async def test_other_v1_paths_pass_through(proxy: Proxy) -> None:
    c = client(proxy)
    made = await c.embeddings.create(model="stub-model", input=["hi", "there"])  # the client asks base64
    assert [len(item.embedding) for item in made.data] == [8, 8] and made.usage.prompt_tokens == 2
    response = await c.post("/moderations", body={"model": "stub-model", "input": "hi"}, cast_to=object)
    assert response["path"] == "/v1/moderations"  # the stand-in's echo
    assert response["authorization"] == "Bearer sk-tenant-a"
