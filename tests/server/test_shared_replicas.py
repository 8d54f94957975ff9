"""Two proxy replicas, one real redis-server: what one caches the other serves; a replica restarted comes back with
the full cache; Redis restarted with AOF loses nothing acknowledged; Redis unreachable degrades to the upstream,
/healthz says why, and the replicas resynchronise when it returns. The official openai client over loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.conftest import Proxy, Stub, proxy_config, start_proxy
from tests.redis_server import RedisServer, run_server

WAIT_S = 10.0


@pytest.fixture
def aof_redis(tmp_path: Path) -> Any:
    """A redis-server with AOF on, fsync on every write: an acknowledged write survives a crash."""
    yield from run_server(tmp_path / "redis-aof", appendonly=True, appendfsync="always")


def shared_config(stub: Stub, url: str) -> Any:
    return proxy_config(stub.url, **{"cache.store.kind": "redis", "cache.store.url": url,
                                     "cache.store.feed_block_s": 0.1, "cache.store.resync_max_backoff_s": 0.2,
                                     "cache.store.timeout_s": 1.0, "cache.store.connect_timeout_s": 0.5})


async def ask(proxy: Proxy, question: str) -> tuple[str, str]:
    async with openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-team-a", max_retries=0, timeout=30) as c:
        raw = await c.chat.completions.with_raw_response.create(
            model="stub-model", messages=[{"role": "user", "content": question}], temperature=0)
        return raw.headers["x-cachesvc-cache"], raw.parse().choices[0].message.content or ""


async def healthz(proxy: Proxy) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{proxy.root}/healthz") as response:
        return response.status, await response.json()


async def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {WAIT_S} s: {what}")


@pytest.fixture
async def replicas(stub: Stub, redis_server: RedisServer, encode: Callable) -> AsyncIterator[list[Proxy]]:
    config = shared_config(stub, redis_server.url)
    started = [await start_proxy(config, encode), await start_proxy(config, encode)]
    yield started
    for proxy in started:
        await proxy.server.close()


async def test_a_paraphrase_cached_through_one_replica_is_a_hit_through_the_other(
        replicas: list[Proxy], stub: Stub) -> None:
    a, b = replicas
    assert (await ask(a, "How do I undo the last git commit?"))[0] == "miss"
    kind, text = await ask(b, "How do I undo the last git commit?")  # exact: through the store at once
    assert kind == "hit"
    await eventually(lambda: len(b.services.cache) == 1, "b adopts the entry")
    kind, again = await ask(b, "how do i undo the last git commit")  # semantic, on b's own index
    assert kind == "hit" and again == text
    assert stub.stats.completions == 1


async def test_a_restarted_replica_comes_back_with_the_full_cache(
        stub: Stub, redis_server: RedisServer, encode: Callable) -> None:
    config = shared_config(stub, redis_server.url)
    a = await start_proxy(config, encode)
    b = await start_proxy(config, encode)
    questions = ["How do I undo the last git commit?", "What is the capital of Australia?",
                 "How do I reverse a list in Python?"]
    try:
        await b.server.close()  # b is killed
        for question in questions:
            assert (await ask(a, question))[0] == "miss"
        b = await start_proxy(config, encode)  # and restarted
        assert len(b.services.cache) == len(questions)
        for question in questions:
            assert (await ask(b, question.lower().rstrip("?")))[0] == "hit"
        assert stub.stats.completions == len(questions)
    finally:
        await a.server.close()
        await b.server.close()


async def test_redis_restarted_with_aof_loses_nothing_acknowledged(
        stub: Stub, aof_redis: RedisServer, encode: Callable) -> None:
    proxy = await start_proxy(shared_config(stub, aof_redis.url), encode)
    questions = [f"How do I parse a {fmt} file in Python?" for fmt in ("CSV", "JSON", "YAML", "TOML", "XML")]
    try:
        for question in questions:
            assert (await ask(proxy, question))[0] == "miss"  # answered: the entry was acknowledged by then
        aof_redis.restart(kill=True)  # a crash: SIGKILL, no shutdown save
        for question in questions:
            assert (await ask(proxy, question))[0] == "hit"
        assert stub.stats.completions == len(questions)
        assert await proxy.services.cache._store.count() == len(questions)
    finally:
        await proxy.server.close()


async def test_unreachable_redis_serves_from_the_upstream_and_resynchronises(
        replicas: list[Proxy], stub: Stub, redis_server: RedisServer) -> None:
    a, b = replicas
    assert (await ask(a, "What is the capital of Australia?"))[0] == "miss"
    redis_server.stop()
    kind, text = await ask(b, "What is the capital of Australia?")
    assert kind == "miss" and text, "served straight from the upstream"
    status, body = await healthz(b)
    assert status == 200 and body["status"] == "degraded" and "redis" in body["reason"]
    await eventually(lambda: a.services.cache.health.degraded, "a notices through its feed")
    redis_server.start()  # an empty Redis (no persistence in this test)
    await eventually(lambda: not a.services.cache.health.degraded and not b.services.cache.health.degraded,
                     "both recover")
    assert (await healthz(b))[1]["status"] == "ok"
    await eventually(lambda: len(a.services.cache) == 0 and len(b.services.cache) == 0, "both resync (empty)")
    assert (await ask(a, "How do I reverse a list in Python?"))[0] == "miss"
    assert (await ask(b, "how do i reverse a list in python"))[0] == "hit"


async def test_a_replica_started_while_redis_is_down_serves_and_comes_online_later(
        stub: Stub, tmp_path: Path, encode: Callable) -> None:
    server = RedisServer(tmp_path / "later")  # not started yet
    config = shared_config(stub, server.url)
    from aiohttp.test_utils import TestServer

    from cachesvc.embedding.embedder import Embedder
    from cachesvc.server.app import create_app
    from cachesvc.server.services import SERVICES

    app = create_app(config, embedder=Embedder(config.cache.embedding, encode=encode))
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    proxy = Proxy(test_server, app[SERVICES])
    try:
        await eventually(lambda: proxy.services.cache.health.degraded, "it notices Redis is down")
        assert (await ask(proxy, "What is the capital of Australia?"))[0] == "bypass"
        status, body = await healthz(proxy)
        assert status == 200 and body["status"] == "degraded"
        server.start()
        await eventually(lambda: proxy.services.ready and not proxy.services.cache.health.degraded, "online")
        assert (await ask(proxy, "What is the capital of Australia?"))[0] == "miss"
        assert (await ask(proxy, "what is the capital of australia"))[0] == "hit"
    finally:
        await test_server.close()
        server.stop()
