"""The Redis store against a real redis-server: round trips, exact-key moves, expiry, batched scans, sharing between
instances, AOF restarts, redacted errors and prefix isolation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from cachesvc.cache.entry import CacheEntry, EntryScope
from cachesvc.cache.semantic_cache import SemanticCache
from cachesvc.cache.stores import create_store
from cachesvc.cache.stores.redis import EntryTooLarge, RedisSettings, RedisStore, StoreUnavailable, redact_url
from cachesvc.config import CacheConfig, StoreConfig
from cachesvc.metrics import Metrics
from cachesvc.openai.answer import Answer
from cachesvc.policies.verify.judgement import RuleJudge
from tests.cache.test_semantic_cache import DIM, accept_all, answer, policy, put, semantic, unit
from tests.redis_server import RedisServer, free_port


def make_store(url: str, **settings) -> RedisStore:
    return RedisStore(StoreConfig(kind="redis"), RedisSettings(url=url, **settings))


async def opened(url: str, **settings) -> RedisStore:
    store = make_store(url, **settings)
    await store.open()
    return store


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    s = await opened(redis_server.url)
    yield s
    await s.close()


def entry(entry_id: int, exact: str | None = None, *, ttl: float = 60.0, query: str | None = "q",
          vector: bool = True, text: str | None = None, now: float | None = None) -> CacheEntry:
    now = time.time() if now is None else now
    exact = exact or f"k{entry_id}"
    scope = EntryScope(f"part-{entry_id % 3}", exact, "key:" + "ab" * 16, "default", "code", "m")
    vec = np.random.default_rng(entry_id).normal(size=DIM).astype(np.float32) if vector else None
    return CacheEntry(entry_id, scope, query, answer(text or f"answer {entry_id}"), vec, now, ttl, now + ttl)


async def wait_until(predicate, timeout_s: float = 5.0) -> bool:
    """Poll an async predicate every 50 ms, at most timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def aiter_take(iterator, n: int):
    """The first n items of an async iterator, closing it afterwards."""
    try:
        async for item in iterator:
            if n <= 0:
                return
            n -= 1
            yield item
    finally:
        await iterator.aclose()


async def test_a_full_entry_round_trips(store: RedisStore) -> None:
    e = entry(2**62 - 1, text="héllo \u2603 \x00 end")
    e.answer = Answer("chat", "m", e.answer.choices, usage={"prompt_tokens": 3, "completion_tokens": 4},
                      system_fingerprint="fp")
    await store.put(e)
    got = await store.get(e.entry_id)
    assert got is not None
    assert got.vector_bytes() == e.vector_bytes() and got.vector is not None and got.vector.dtype == np.float32
    assert got.answer == e.answer and got.scope == e.scope and got.query == e.query
    assert (got.entry_id, got.created_at, got.ttl_s, got.expires_at) == (e.entry_id, e.created_at, e.ttl_s,
                                                                        e.expires_at)
    bare = entry(7, query=None, vector=False)
    await store.put(bare)
    got = await store.get(7)
    assert got is not None and got.query is None and got.vector is None
    assert await store.get(12345) is None


async def test_exact_key_lookup_and_replacement_by_id_moves_it(store: RedisStore) -> None:
    await store.put(entry(1, "K1"))
    got = await store.get_by_exact_key("K1")
    assert got is not None and got.entry_id == 1
    await store.put(entry(1, "K2", text="replaced", query=None, vector=False))
    assert await store.get_by_exact_key("K1") is None, "the old exact key no longer reaches the replaced entry"
    got = await store.get_by_exact_key("K2")
    assert got is not None and got.entry_id == 1 and got.answer == answer("replaced")
    assert got.query is None and got.vector is None, "the replacement is written whole, nothing of the old left"
    assert await store.count() == 1
    assert await store.get_by_exact_key("missing") is None


async def test_a_newer_entry_takes_the_exact_key_and_deletes_keep_it_straight(store: RedisStore) -> None:
    await store.put(entry(1, "K"))
    await store.put(entry(2, "K"))
    got = await store.get_by_exact_key("K")
    assert got is not None and got.entry_id == 2, "the older entry is not reachable by the exact key"
    assert await store.get(1) is not None, "but still by its id, as in the memory store"
    await store.put(entry(1, "K-other"))  # replacing 1 must not drop K, which names 2 now
    got = await store.get_by_exact_key("K")
    assert got is not None and got.entry_id == 2
    assert await store.delete([1]) == 1
    assert (await store.get_by_exact_key("K")) is not None
    assert await store.delete([2]) == 1
    assert await store.get_by_exact_key("K") is None


async def test_delete_counts_what_existed(store: RedisStore) -> None:
    for i in range(1, 6):
        await store.put(entry(i))
    assert await store.delete([1, 2, 999, 1]) == 2
    assert await store.delete([]) == 0
    assert await store.count() == 3
    assert await store.get(1) is None and await store.get_by_exact_key("k1") is None
    assert await store.get(3) is not None


async def test_redis_expires_entries_itself(store: RedisStore) -> None:
    await store.put(entry(1, "short", ttl=1.0))
    await store.put(entry(2, "long", ttl=60.0))
    assert await store.get(1) is not None and await store.count() == 2

    async def gone() -> bool:
        return await store.get(1) is None

    assert await wait_until(gone, timeout_s=5.0), "the entry outlived its expires_at"
    assert await store.get_by_exact_key("short") is None, "its exact key expired with it"
    assert await store.count() == 1
    assert [e.entry_id async for e in store.scan()] == [2]
    ttl_ms = await store.client.pttl("{cachesvc:}e:2")
    assert 0 < ttl_ms <= 60_000


async def test_an_entry_put_already_expired_is_not_stored(store: RedisStore) -> None:
    await store.put(entry(1, "old", ttl=10.0, now=time.time() - 20))
    assert await store.get(1) is None and await store.get_by_exact_key("old") is None
    assert await store.count() == 0


async def test_scan_streams_every_entry_once_in_batches(redis_server: RedisServer) -> None:
    store = await opened(redis_server.url, scan_batch=100)
    try:
        await store.put_many(entry(i) for i in range(1, 1201))
        assert await store.count() == 1200
        await store.client.config_resetstat()
        ids = [e.entry_id async for e in store.scan()]
        assert sorted(ids) == list(range(1, 1201)), "each entry exactly once"
        steps = (await store.client.info("commandstats"))["cmdstat_evalsha"]["calls"]
        assert steps >= 6, f"{steps} ZSCAN steps: the scan was not batched"
        first = [e.entry_id async for e in aiter_take(store.scan(), 3)]
        assert len(first) == 3, "a scan stopped early closes cleanly"
    finally:
        await store.close()


async def test_concurrent_requests_wait_for_a_pooled_connection(redis_server: RedisServer) -> None:
    store = await opened(redis_server.url, max_connections=4)
    try:
        await asyncio.gather(*(store.put(entry(i)) for i in range(1, 101)))
        got = await asyncio.gather(*(store.get(i) for i in range(1, 101)))
        assert all(e is not None and e.entry_id == i for i, e in enumerate(got, 1))
        clients = (await store.client.info("clients"))["connected_clients"]
        assert clients <= 4, f"{clients} connections: the pool is not bounded"
    finally:
        await store.close()


async def test_stale_ids_in_the_index_are_skipped_and_dropped(store: RedisStore) -> None:
    await store.put(entry(1))
    await store.client.zadd("{cachesvc:}ids", {"424242": time.time() + 600, "not-an-id": time.time() + 600})
    await store.client.hset("{cachesvc:}e:777", mapping={"exact_key": "k777", "meta": "{", "answer": "{}"})
    await store.client.hset("{cachesvc:}e:778", mapping={"exact_key": "k778"})  # not one this layout wrote
    await store.client.zadd("{cachesvc:}ids", {"777": time.time() + 600, "778": time.time() + 600})
    await store.client.hset("{cachesvc:}e:abc", mapping={"meta": "{}", "answer": "{}"})  # an id that is no number
    await store.client.zadd("{cachesvc:}ids", {"abc": time.time() + 600})
    assert await store.count() == 6, "count trusts the index until a scan checks it"
    assert [e.entry_id async for e in store.scan()] == [1]
    assert await store.count() == 1, "the scan dropped the stale ids"
    assert await store.get(777) is None and await store.get(778) is None


async def test_two_instances_share_one_cache(redis_server: RedisServer) -> None:
    a, b = await opened(redis_server.url), await opened(redis_server.url)
    try:
        await a.put(entry(1, "shared"))
        got = await b.get_by_exact_key("shared")
        assert got is not None and got.entry_id == 1 and await b.get(1) is not None
        await b.put(entry(2, "shared"))
        got = await a.get_by_exact_key("shared")
        assert got is not None and got.entry_id == 2
        assert await b.delete([1, 2]) == 2
        assert await a.get(1) is None and await a.count() == 0
    finally:
        await a.close()
        await b.close()


async def test_acknowledged_entries_survive_a_crash_with_aof(redis_server_aof: RedisServer) -> None:
    store = await opened(redis_server_aof.url)
    try:
        await store.put_many(entry(i) for i in range(1, 51))
        await store.put(entry(51, "last"))
        await store.delete([3])
        redis_server_aof.restart(kill=True)  # SIGKILL: no shutdown hook writes anything more
        got = await store.get_by_exact_key("last")  # the same instance reconnects (one retry)
        assert got is not None and got.entry_id == 51
        fresh = await opened(redis_server_aof.url)
        try:
            assert await fresh.count() == 50
            assert sorted([e.entry_id async for e in fresh.scan()]) == [i for i in range(1, 52) if i != 3]
        finally:
            await fresh.close()
    finally:
        await store.close()


async def test_unreachable_redis_raises_with_the_password_redacted() -> None:
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    store = make_store(url, connect_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    assert time.monotonic() - started < 5, "bounded by the connect timeout and one retry"
    message = str(caught.value)
    assert "s3cret-pw" not in message and ":***@127.0.0.1" in message, message
    assert isinstance(caught.value, OSError) and caught.value.__cause__ is None


async def test_a_server_going_away_raises_store_unavailable(redis_server: RedisServer) -> None:
    store = await opened(redis_server.url, timeout_s=0.5, connect_timeout_s=0.5)
    try:
        await store.put(entry(1))
        redis_server.stop()
        with pytest.raises(StoreUnavailable, match="redis store at redis://127.0.0.1"):
            await store.get(1)
        with pytest.raises(StoreUnavailable):
            [e async for e in store.scan()]
    finally:
        await store.close()


async def test_a_password_protected_server(tmp_path, monkeypatch) -> None:
    server = RedisServer(tmp_path / "auth", password="pw-s3cret").start()
    try:
        store = await opened(server.url)  # the password in the URL
        await store.put(entry(1))
        await store.close()
        monkeypatch.setenv("CACHESVC_TEST_REDIS_PASSWORD", "pw-s3cret")
        bare = f"redis://127.0.0.1:{server.port}/0"
        store = await opened(bare, password_env="CACHESVC_TEST_REDIS_PASSWORD")  # the password from the environment
        assert await store.get(1) is not None
        await store.close()
        with pytest.raises(StoreUnavailable) as caught:
            await opened(f"redis://:wrong-pw@127.0.0.1:{server.port}/0")
        assert "wrong-pw" not in str(caught.value) and ":***@" in str(caught.value), str(caught.value)
        with pytest.raises(StoreUnavailable, match="(?i)auth"):
            await opened(bare)
        monkeypatch.delenv("CACHESVC_TEST_REDIS_PASSWORD")
        with pytest.raises(ValueError, match="CACHESVC_TEST_REDIS_PASSWORD"):
            await opened(bare, password_env="CACHESVC_TEST_REDIS_PASSWORD")
    finally:
        server.stop()


async def test_an_eviction_policy_that_may_drop_the_index_is_warned_about(redis_server: RedisServer, caplog) -> None:
    admin = await opened(redis_server.url)
    await admin.client.config_set("maxmemory-policy", "allkeys-lru")
    await admin.close()
    with caplog.at_level("WARNING", logger="cachesvc.cache.stores.redis"):
        store = await opened(redis_server.url)
    await store.close()
    assert "allkeys-lru" in caplog.text and "volatile-ttl" in caplog.text


def test_no_redis_server_binary_skips_except_under_ci(monkeypatch) -> None:
    from tests.redis_server import redis_server_binary

    monkeypatch.setenv("REDIS_SERVER", "no-such-redis-server-binary")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y redis-server"):
        redis_server_binary()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        redis_server_binary()


def test_urls_are_redacted() -> None:
    assert redact_url("redis://:secret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("rediss://user:p%40ss@host/1") == "rediss://user:***@host/1"
    assert redact_url("redis://host:6379/0?password=secret&db=2") == "redis://host:6379/0?password=***&db=2"
    assert redact_url("redis://user@host") == "redis://user@host"
    assert redact_url("unix:///run/redis.sock?password=x") == "unix:///run/redis.sock?password=***"
    assert "secret" not in repr(RedisSettings(url="redis://:secret@host/0"))


async def test_prefixes_isolate_caches_on_one_server(redis_server: RedisServer) -> None:
    a, b = await opened(redis_server.url, prefix="team-a:"), await opened(redis_server.url, prefix="team-b:")
    try:
        await a.put(entry(1, "K", text="from a"))
        await b.put(entry(1, "K", text="from b"))
        await b.put(entry(2))
        got_a, got_b = await a.get_by_exact_key("K"), await b.get_by_exact_key("K")
        assert got_a is not None and got_a.answer == answer("from a")
        assert got_b is not None and got_b.answer == answer("from b")
        assert (await a.count(), await b.count()) == (1, 2)
        assert [e.entry_id async for e in a.scan()] == [1]
        assert await a.delete([1, 2]) == 1 and await b.count() == 2
        keys = sorted(k.decode() for k in await a.client.keys("*"))
        assert all(k.startswith(("{team-a:}", "{team-b:}")) for k in keys), keys
    finally:
        await a.close()
        await b.close()


async def test_oversized_answers_are_refused_whole(redis_server: RedisServer) -> None:
    small = await opened(redis_server.url, max_entry_bytes=200)
    try:
        with pytest.raises(EntryTooLarge):
            await small.put(entry(1, text="x" * 1000))
        assert await small.get(1) is None and await small.count() == 0
    finally:
        await small.close()


async def test_a_prefix_holding_another_layout_is_refused(redis_server: RedisServer) -> None:
    other = await opened(redis_server.url)
    await other.client.set("{cachesvc:}layout", "1")  # the layout before the change feed
    await other.close()
    with pytest.raises(ValueError, match="layout"):
        await opened(redis_server.url)


def test_settings_are_validated_and_registered() -> None:
    with pytest.raises(ValueError, match="prefix"):
        make_store("redis://127.0.0.1:1/0", prefix="a{b}")
    with pytest.raises(ValueError, match="url"):
        make_store("http://:pw@127.0.0.1:1/0")
    with pytest.raises(ValueError, match="scan_batch"):
        make_store("redis://127.0.0.1:1/0", scan_batch=0)
    store = create_store(StoreConfig(kind="redis"))  # registered by importing the module
    assert isinstance(store, RedisStore) and store.settings == RedisSettings()


async def test_a_semantic_cache_rebuilds_from_another_replicas_writes(redis_server: RedisServer) -> None:
    """The point of sharing: a replica started later serves what another one stored (its index rebuilt by scan)."""
    config = CacheConfig(store=StoreConfig(kind="redis"))

    async def replica() -> SemanticCache:
        cache = SemanticCache(config, make_store(redis_server.url), RuleJudge(accept_all), Metrics())
        await cache.start(DIM)
        return cache

    first = await replica()
    try:
        await put(first, "k1", unit(1))
        await put(first, "k2", unit(2), ttl=0.05)
        await asyncio.sleep(0.15)
        second = await replica()
        try:
            assert len(second) == 1, "the expired entry is not loaded"
            assert (await semantic(second, unit(1))) is not None
            hit = await second.lookup_exact("k1", policy, None)
            assert hit is not None and hit.entry.answer == answer("k1")
        finally:
            await second.close()
    finally:
        await first.close()
