"""Several replicas, one cache: SemanticCache instances over RedisStores on one real redis-server follow each other
through the store's change feed; a replica that was away catches up; an unreachable Redis degrades, then recovers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from cachesvc.cache.entry import EntryDraft, EntryScope
from cachesvc.cache.feed_follower import FeedFollower
from cachesvc.cache.selector import Selector
from cachesvc.cache.semantic_cache import SemanticCache
from cachesvc.cache.stores import create_store
from cachesvc.cache.stores.redis import RedisStore
from cachesvc.config import CacheConfig, StoreConfig
from cachesvc.metrics import Metrics
from cachesvc.policies.cache.categories import DEFAULT_CATEGORIES
from cachesvc.policies.verify.judgement import RuleJudge
from tests.cache.test_semantic_cache import DIM, accept_all, answer, policy, put, semantic, unit
from tests.conftest import metric_sample
from tests.redis_server import RedisServer

WAIT_S = 5.0  # longest wait for a change to reach another replica (it takes milliseconds)


async def replica(url: str, *, follow: bool = True, tenant_quota: Any = None, **categories: Any) -> SemanticCache:
    cats = dict(DEFAULT_CATEGORIES)
    for name, fields in categories.items():
        cats[name] = dataclasses.replace(cats[name], **fields)
    config = CacheConfig(categories=cats, store=StoreConfig(kind="redis", url=url, feed_block_s=0.1,
                                                            resync_max_backoff_s=0.2, timeout_s=1.0,
                                                            connect_timeout_s=0.5))
    cache = SemanticCache(config, create_store(config.store), RuleJudge(accept_all), Metrics(),
                          tenant_quota=tenant_quota, follow=follow)
    await cache.start(DIM)
    return cache


async def eventually(condition: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = condition()
        if value if isinstance(value, bool) else await value:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {WAIT_S} s: {what}")


def follower(cache: SemanticCache) -> FeedFollower:
    store = cache._store
    assert isinstance(store, RedisStore)
    return FeedFollower(cache, store, cache._config.store)


async def test_an_insert_on_one_replica_is_a_semantic_hit_on_the_other(redis_server: RedisServer) -> None:
    a, b = await replica(redis_server.url), await replica(redis_server.url)
    try:
        await put(a, "k1", unit(1))
        await eventually(lambda: len(b) == 1, "b adopts a's entry")
        hit = await semantic(b, unit(1))
        assert hit is not None and hit.entry.answer == answer("k1")
        assert (await b.lookup_exact("k1", policy, None)) is not None
    finally:
        await a.close()
        await b.close()


async def test_an_exact_miss_asks_the_store_before_the_feed_has_spoken(redis_server: RedisServer) -> None:
    a, b = await replica(redis_server.url), await replica(redis_server.url, follow=False)
    try:
        await put(a, "k1", unit(1))
        assert len(b) == 0, "b does not follow the feed"
        hit = await b.lookup_exact("k1", lambda c: policy(c), None)
        assert hit is not None and hit.entry.answer == answer("k1")
        assert len(b) == 1 and (await semantic(b, unit(1))) is not None, "the entry found is adopted"
    finally:
        await a.close()
        await b.close()


async def test_deletions_and_invalidations_reach_the_other_replica(redis_server: RedisServer) -> None:
    a, b = await replica(redis_server.url), await replica(redis_server.url)
    try:
        for i in range(4):
            await put(a, f"k{i}", unit(i), category="code" if i < 3 else "conversation")
        await eventually(lambda: len(b) == 4, "b adopts all four")
        removed = await a.invalidate(Selector(category="code"))
        assert len(removed) == 3
        await eventually(lambda: len(b) == 1, "b drops the invalidated three")
        assert (await semantic(b, unit(0))) is None
        # a replaced exact key: the old entry goes everywhere, the new one arrives
        await put(b, "k3", unit(3), category="conversation")
        await eventually(lambda: len(a) == 1 and a._by_exact["k3"] == b._by_exact["k3"], "a follows the replace")
    finally:
        await a.close()
        await b.close()


async def test_only_the_writer_enforces_a_quota(redis_server: RedisServer) -> None:
    a = await replica(redis_server.url, code={"max_entries": 2})
    b = await replica(redis_server.url, code={"max_entries": 2})
    try:
        for i in range(3):
            await put(a, f"k{i}", unit(i))
        assert len(a) == 2
        await eventually(lambda: set(b._live) == set(a._live), "b holds what a kept")
        assert await a._store.count() == 2, "one eviction, not one per replica"
    finally:
        await a.close()
        await b.close()


async def test_expiry_reaches_every_replica_without_feed_traffic(redis_server: RedisServer) -> None:
    a, b = await replica(redis_server.url), await replica(redis_server.url)
    try:
        await put(a, "short", unit(1), ttl=0.1)
        await put(a, "long", unit(2))
        await eventually(lambda: len(b) == 2, "b adopts both")
        await asyncio.sleep(0.25)
        hit = await semantic(b, unit(1))
        assert hit is None or hit.entry.scope.exact_key == "long", "an expired entry is never served"
        position = await b._store.feed_position()  # type: ignore[attr-defined]
        assert await a.sweep_expired() == 1
        await b.sweep_expired()  # b may have dropped it already, when the lookup found it gone from Redis
        assert await b._store.feed_position() == position, "sweeping a shared store writes nothing to the feed"  # type: ignore[attr-defined]
        assert len(a) == len(b) == 1
    finally:
        await a.close()
        await b.close()


async def test_a_restarted_replica_comes_back_with_the_full_cache(redis_server: RedisServer) -> None:
    a, b = await replica(redis_server.url), await replica(redis_server.url)
    await b.close()  # b is down while a works
    try:
        for i in range(5):
            await put(a, f"k{i}", unit(i))
        await a.invalidate(Selector(entry_id=a._by_exact["k0"]))
        b = await replica(redis_server.url)
        assert len(b) == 4 and set(b._live) == set(a._live)
        assert all([(await semantic(b, unit(i))) is not None for i in range(1, 5)])
    finally:
        await a.close()
        await b.close()


async def test_a_replica_catches_up_from_its_last_position(redis_server: RedisServer) -> None:
    a, b = await replica(redis_server.url), await replica(redis_server.url, follow=False)
    try:
        await put(a, "k0", unit(0))
        assert await follower(b).step() == 1
        position = b.feed_position
        for i in range(1, 4):
            await put(a, f"k{i}", unit(i))
        await a.invalidate(Selector(entry_id=a._by_exact["k0"]))
        assert await follower(b).step() == 4  # three adopted, one forgotten
        assert b.feed_position > position and set(b._live) == set(a._live)
    finally:
        await a.close()
        await b.close()


async def test_a_feed_trimmed_past_the_position_rescans(redis_server: RedisServer) -> None:
    a, b = await replica(redis_server.url), await replica(redis_server.url, follow=False)
    try:
        await put(a, "k0", unit(0))
        await follower(b).step()
        for i in range(1, 4):
            await put(a, f"k{i}", unit(i))
        await a.invalidate(Selector(entry_id=a._by_exact["k0"]))
        store = a._store
        assert isinstance(store, RedisStore)
        await store.client.xtrim(store._feed, maxlen=1, approximate=False)  # b's next changes are gone
        await follower(b).step()
        assert set(b._live) == set(a._live) and len(b) == 3
        assert b.feed_position == await store.feed_position()
    finally:
        await a.close()
        await b.close()


async def test_a_store_that_lost_its_data_is_rescanned(redis_server: RedisServer) -> None:
    a, b = await replica(redis_server.url), await replica(redis_server.url, follow=False)
    try:
        await put(a, "k0", unit(0))
        await follower(b).step()
        store = a._store
        assert isinstance(store, RedisStore)
        await store.client.flushall()
        await store.client.set(store._layout, b"2")
        await follower(b).step()
        assert len(b) == 0, "b forgets what the store no longer has"
    finally:
        await a.close()
        await b.close()


async def test_two_replicas_storing_one_exact_key_at_once_agree_on_it(redis_server: RedisServer) -> None:
    a, b = await replica(redis_server.url), await replica(redis_server.url)
    try:
        await asyncio.gather(put(a, "same", unit(1)), put(b, "same", unit(1)))
        await eventually(lambda: len(a) == 2 and len(b) == 2, "each adopts the other's")
        assert a._by_exact["same"] == b._by_exact["same"]
    finally:
        await a.close()
        await b.close()


async def test_unreachable_redis_degrades_then_resynchronises(redis_server: RedisServer) -> None:
    a, b = await replica(redis_server.url), await replica(redis_server.url)
    try:
        await put(a, "k0", unit(0))
        await eventually(lambda: len(b) == 1, "b adopts it")
        redis_server.stop()
        assert (await semantic(b, unit(0))) is None, "no hit without the store's document"
        await eventually(lambda: b.health.degraded, "b notices")
        scope = EntryScope("p", "k1", "t", "default", "code", "m")
        assert await b.insert(EntryDraft(scope, "k1", unit(1), 60, 2.0), answer("k1")) is None
        assert len(b) == 1, "nothing is remembered that the store did not acknowledge"
        redis_server.start()  # empty: the test server keeps no data
        await eventually(lambda: not b.health.degraded and not a.health.degraded, "both recover")
        await eventually(lambda: len(b) == 0, "b resyncs with the empty store")
        await put(a, "k2", unit(2))
        await eventually(lambda: len(b) == 1, "and follows again")
        assert np.allclose((await semantic(b, unit(2))).entry.vector, unit(2))  # type: ignore[union-attr]
    finally:
        await a.close()
        await b.close()


async def test_tenant_quota_evicts_the_tenants_own_oldest_entries() -> None:
    config = CacheConfig(store=StoreConfig(kind="memory"))
    cache = SemanticCache(config, create_store(config.store), RuleJudge(accept_all), Metrics(),
                          tenant_quota=lambda tenant: 2 if tenant == "small" else None)
    await cache.start(DIM)
    try:
        await put(cache, "big0", unit(10), tenant="big")
        first = await put(cache, "s0", unit(0), tenant="small")
        await put(cache, "s1", unit(1), tenant="small")
        await cache.lookup_exact("s0", policy, None)  # recently used: s1 is the least recent now
        await put(cache, "s2", unit(2), tenant="small")
        await put(cache, "big1", unit(11), tenant="big")
        tenants = sorted(live.scope.tenant for live in cache._live.values())
        assert tenants == ["big", "big", "small", "small"]
        assert first in cache._live and "s1" not in cache._by_exact
    finally:
        await cache.close()


async def test_two_replicas_share_a_cache_on_a_redis_cluster(redis_cluster: list[RedisServer]) -> None:
    """Three masters; each replica is pointed at a different node, and both end up on the one owning the slot."""
    a = await cluster_replica(redis_cluster[0].url)
    b = await cluster_replica(redis_cluster[2].url)
    try:
        store_a, store_b = a._store, b._store
        assert isinstance(store_a, RedisStore) and isinstance(store_b, RedisStore)
        owner = store_a.client.get_connection_kwargs()["port"]
        assert store_b.client.get_connection_kwargs()["port"] == owner
        for i in range(3):
            await put(a, f"k{i}", unit(i))
        await eventually(lambda: len(b) == 3, "b adopts a's entries through the cluster")
        await a.invalidate(Selector(entry_id=a._by_exact["k0"]))
        await eventually(lambda: len(b) == 2, "and their deletion")
        assert (await semantic(b, unit(1))) is not None
        restarted = await cluster_replica(redis_cluster[1].url)
        assert set(restarted._live) == set(a._live), "a fresh replica rebuilds from the cluster"
        await restarted.close()
    finally:
        await a.close()
        await b.close()


async def cluster_replica(url: str) -> SemanticCache:
    config = CacheConfig(store=StoreConfig(kind="redis", url=url, cluster=True, feed_block_s=0.1, timeout_s=1.0))
    cache = SemanticCache(config, create_store(config.store), RuleJudge(accept_all), Metrics())
    await cache.start(DIM)
    return cache


async def test_a_rebuild_streams_in_batches_and_logs_its_progress(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import cachesvc.cache.semantic_cache as semantic_cache_module

    a = await replica(redis_server.url)
    for i in range(5):
        await put(a, f"k{i}", unit(i))
    await a.close()
    monkeypatch.setattr(semantic_cache_module, "_PROGRESS_EVERY_S", 0.0)  # a progress line per entry
    config = CacheConfig(store=StoreConfig(kind="redis", url=redis_server.url, scan_batch=2))
    with caplog.at_level(logging.INFO, logger="cachesvc.cache.semantic_cache"):
        b = SemanticCache(config, create_store(config.store), RuleJudge(accept_all), Metrics(), follow=False)
        assert await b.start(DIM) == 5
    messages = [r.getMessage() for r in caplog.records]
    assert any("entries so far" in m for m in messages) and any("loaded 5 entries" in m for m in messages)
    assert [b._live[i].created_at for i in b._lru["code"]] == sorted(live.created_at for live in b._live.values())
    await b.close()


async def test_a_resync_lets_inserts_go_on_and_brings_back_nothing_removed_meanwhile(
        redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    a = await replica(redis_server.url, follow=False)
    b = await replica(redis_server.url, follow=False)
    try:
        for i in range(6):
            await put(a, f"k{i}", unit(i))
        elsewhere = await put(b, "from-b", unit(20))  # a has not seen it: the resync adopts it
        store, real_scan = a._store, a._store.scan
        scanned: list[int] = []
        paused, resume = asyncio.Event(), asyncio.Event()

        async def slow_scan() -> Any:
            async for entry in real_scan():
                scanned.append(entry.entry_id)
                yield entry
                if len(scanned) == 4:  # mid-scan, with entries yielded but not applied yet
                    paused.set()
                    await resume.wait()

        monkeypatch.setattr(store, "scan", slow_scan)
        resync = asyncio.create_task(a.resync())
        await asyncio.wait_for(paused.wait(), WAIT_S)
        inserted = await asyncio.wait_for(put(a, "during", unit(30)), WAIT_S)  # the scan holds no lock
        removed = next(i for i in scanned if i in a._live)  # scanned already, removed here before it is applied
        assert await a.invalidate(Selector(entry_id=removed)) == [removed]
        resume.set()
        adopted, forgotten = await asyncio.wait_for(resync, WAIT_S)
        assert (adopted, forgotten) == (1, 0)
        assert removed not in a._live and await a._store.get(removed) is None
        assert {inserted, elsewhere} <= set(a._live) and len(a) == 7
        assert a.index.stats()["entries"] == 7  # the removed entry's vector did not come back either
        assert (await semantic(a, unit(20))) is not None and (await semantic(a, unit(30))) is not None
    finally:
        await a.close()
        await b.close()


async def test_only_changes_that_took_effect_here_are_timed(redis_server: RedisServer) -> None:
    a, b = await replica(redis_server.url), await replica(redis_server.url, follow=False)
    try:
        await put(a, "k1", unit(1))
        assert (await b.lookup_exact("k1", policy, None)) is not None  # b has it before the feed says so
        await put(a, "k2", unit(2))
        assert await follower(b).step() == 1  # k2 adopted from the feed; k1 was known
        assert metric_sample(b._metrics, 'cachesvc_feed_changes_total{op="put",result="skipped"}') == 1
        assert metric_sample(b._metrics, 'cachesvc_feed_changes_total{op="put",result="applied"}') == 1
        # the skipped one is not a delay
        assert metric_sample(b._metrics, "cachesvc_feed_propagation_seconds_count") == 1
    finally:
        await a.close()
        await b.close()


async def test_two_writers_evicting_the_same_victim_leave_the_store_within_its_quota(
        redis_server: RedisServer) -> None:
    a = await replica(redis_server.url, follow=False, code={"max_entries": 3})
    try:
        for i in range(3):
            await put(a, f"k{i}", unit(i))
        b = await replica(redis_server.url, follow=False, code={"max_entries": 3})  # rebuilt: k0 is its oldest
        try:
            await put(b, "y", unit(10))  # b evicts k0
            assert await a._store.count() == 3
            await put(a, "x", unit(11))  # a evicts k0 too, not knowing b did: it finds it gone and takes k1 as well
            assert await a._store.count() == 3, "no store left over its quota by a victim evicted twice"
            assert await a._store.get_by_exact_key("k2") is not None  # only the oldest went
        finally:
            await b.close()
    finally:
        await a.close()


def move_slot(ports: list[int], slot: int, source: int, target: int) -> None:
    """Reshard one slot as redis-cli --cluster reshard does: IMPORTING / MIGRATING, MIGRATE its keys, then every
    master is told the new owner."""
    import redis as sync_redis

    clients = {port: sync_redis.Redis(host="127.0.0.1", port=port) for port in ports}
    try:
        ids = {port: c.execute_command("CLUSTER", "MYID").decode() for port, c in clients.items()}
        clients[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        clients[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        for _ in range(10_000):  # bounded: 100 keys a step
            keys = clients[source].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            clients[source].execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        for client in clients.values():
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
    finally:
        for client in clients.values():
            client.close()


async def test_the_cache_follows_its_slot_to_another_master(redis_cluster: list[RedisServer]) -> None:
    """A reshard moves the cache's slot (its entries, index and feed) to another master mid-run: both replicas
    find the new owner, keep every entry and go on sharing."""
    a = await cluster_replica(redis_cluster[0].url)
    b = await cluster_replica(redis_cluster[1].url)
    try:
        store_a, store_b = a._store, b._store
        assert isinstance(store_a, RedisStore) and isinstance(store_b, RedisStore)
        for i in range(150):  # more than one MIGRATE step
            await put(a, f"k{i}", unit(i))
        await eventually(lambda: len(b) == 150, "b adopts a's entries")
        source = store_a.client.get_connection_kwargs()["port"]
        target = next(n.port for n in redis_cluster if n.port != source)
        slot = int(await store_a.client.execute_command("CLUSTER", "KEYSLOT", store_a._layout))
        await asyncio.to_thread(move_slot, [n.port for n in redis_cluster], slot, source, target)

        def on_the_new_owner(cache: SemanticCache) -> bool:
            store = cache._store
            assert isinstance(store, RedisStore)
            return store._client is not None and store.client.get_connection_kwargs()["port"] == target \
                and not cache.health.degraded

        await eventually(lambda: on_the_new_owner(a) and on_the_new_owner(b), "both replicas reach the new owner")
        assert len(a) == len(b) == 150 and await store_a.count() == 150, "nothing lost in the move"
        hit = await semantic(b, unit(7))
        assert hit is not None and hit.entry.answer == answer("k7")  # the document read from the new owner
        await put(a, "after-the-move", unit(500))
        await eventually(lambda: len(b) == 151, "the feed goes on from where it was")
    finally:
        await a.close()
        await b.close()
