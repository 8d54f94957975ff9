"""The shared rate limiter against a real redis-server: two limiter instances (two replicas) draw on one budget,
keys carry a per-tenant hash tag and expire, the password comes from the store's settings, and a Redis that is down
fails open (served, counted, logged once) and is used again once it is back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from cachesvc.config import Config, config_from_dict
from cachesvc.metrics import Metrics
from cachesvc.server import rate_limits_redis
from cachesvc.server.rate_limits import RateLimited, TenantRateLimits, create_rate_limiter
from cachesvc.server.rate_limits_redis import RedisRateLimiter
from cachesvc.server.tenants import Tenant, TenantLimits
from tests.redis_server import RedisServer, free_port


def redis_config(url: str, **store: Any) -> Config:
    return config_from_dict({"cache": {"store": {"kind": "redis", "url": url, **store}},
                             "tenants": {"limiter_timeout_s": 0.5}})


def tenant(tenant_id: str = "tenant:blue", **limits: Any) -> Tenant:
    return Tenant(tenant_id, "blue", TenantLimits(**limits), known=True)


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[tuple[RedisRateLimiter, RedisRateLimiter]]:
    config = redis_config(redis_server.url)
    a, b = RedisRateLimiter(config, Metrics()), RedisRateLimiter(config, Metrics())
    yield a, b
    await a.close()
    await b.close()


async def test_two_replicas_share_one_request_budget(replicas: tuple[RedisRateLimiter, RedisRateLimiter]) -> None:
    a, b = replicas
    t = tenant(requests_per_s=0.5, burst=4)
    taken = [await (a if i % 2 else b).acquire(t) for i in range(4)]
    assert taken == [None] * 4  # the burst, split across replicas
    refused = [await a.acquire(t), await b.acquire(t)]
    for limited in refused:
        assert limited is not None and limited.limit == "requests"
        assert 1.5 < limited.wait_s <= 2.0  # 0.5/s: the next one in 2 s, on either replica
    assert await a.acquire(tenant("tenant:green", requests_per_s=0.5, burst=4)) is None  # its own budget


async def test_tokens_charged_on_one_replica_refuse_on_the_other(
        replicas: tuple[RedisRateLimiter, RedisRateLimiter]) -> None:
    a, b = replicas
    t = tenant(tokens_per_min=600)  # 10 a second, 600 at once
    assert await b.acquire(t) is None
    await a.charge_tokens(t, 700)  # 100 in debt
    limited = await b.acquire(t)
    assert limited is not None and limited.limit == "tokens"
    assert 9.5 < limited.wait_s <= 10.1  # (100 + 1) tokens at 10 a second


async def test_keys_are_tagged_per_tenant_and_expire(redis_server: RedisServer,
                                                     replicas: tuple[RedisRateLimiter, RedisRateLimiter]) -> None:
    a, _ = replicas
    await a.acquire(tenant(requests_per_s=1.0, burst=5))
    await a.charge_tokens(tenant(tokens_per_min=60), 30)
    await a.acquire(tenant("tenant:" + "{odd}" * 40, requests_per_s=1.0))
    client = Redis.from_url(redis_server.url)
    try:
        keys = sorted(k.decode() for k in await client.keys("*"))
        assert "cachesvc:rl:{tenant:blue}:r" in keys and "cachesvc:rl:{tenant:blue}:t" in keys
        assert len(keys) == 3 and all(k.startswith("cachesvc:rl:{") for k in keys)
        odd = next(k for k in keys if "blue" not in k)
        assert odd.startswith("cachesvc:rl:{h:") and "odd" not in odd  # an odd id is hashed into the key
        for key in keys:
            ttl_ms = await client.pttl(key)
            assert 0 < ttl_ms <= 32_000, key  # gone a second after the bucket is full again
    finally:
        await client.aclose()


async def test_the_password_comes_from_the_stores_password_env(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    server = RedisServer(tmp_path / "redis-auth", password="s3cret-pass").start()
    try:
        monkeypatch.setenv("RL_TEST_REDIS_PASSWORD", "s3cret-pass")
        config = redis_config(f"redis://127.0.0.1:{server.port}/0", password_env="RL_TEST_REDIS_PASSWORD")
        limiter = create_rate_limiter(config, Metrics())
        assert isinstance(limiter, RedisRateLimiter)
        try:
            t = tenant(requests_per_s=1.0, burst=1)
            assert await limiter.acquire(t) is None
            assert await limiter.acquire(t) is not None  # the script ran: the bucket is in Redis
        finally:
            await limiter.close()
        monkeypatch.delenv("RL_TEST_REDIS_PASSWORD")
        with pytest.raises(ValueError, match="RL_TEST_REDIS_PASSWORD is not set"):
            create_rate_limiter(config, Metrics())
    finally:
        server.stop()


async def test_redis_down_fails_open_then_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(rate_limits_redis, "RETRY_S", 0.2)
    server = RedisServer(tmp_path / "redis-down", port=free_port()).start()
    metrics = Metrics()
    limits = TenantRateLimits(RedisRateLimiter(redis_config(server.url), metrics), metrics)
    t = tenant(requests_per_s=0.01, burst=1)
    try:
        await limits.admit(t)  # the one request of the burst
        server.stop()
        with caplog.at_level(logging.WARNING, logger="cachesvc.server.rate_limits_redis"):
            started = time.monotonic()
            for _ in range(5):
                await limits.admit(t)  # served: no 429, no error
            assert time.monotonic() - started < 2.0
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "serving without rate limits" in warnings[0].getMessage()
        assert "cachesvc_rate_limiter_unavailable_total 5.0" in metrics.render().decode()
        server.start()  # empty again (no persistence): the budget starts over
        await asyncio.sleep(0.25)  # past RETRY_S
        await limits.admit(t)
        with pytest.raises(RateLimited, match="Rate limit reached"):
            await limits.admit(t)
    finally:
        await limits.limiter.close()
        server.stop()


async def test_tenants_on_every_slot_of_a_redis_cluster_share_their_budgets(
        redis_cluster: list[RedisServer]) -> None:
    """Each tenant's buckets live in the slot of its own hash tag, spread over the masters; two replicas pointed at
    different nodes still limit every tenant, none failing open on a redirect."""
    metrics = Metrics()
    a = RedisRateLimiter(redis_config(redis_cluster[0].url, cluster=True), metrics)
    b = RedisRateLimiter(redis_config(redis_cluster[2].url, cluster=True), metrics)
    try:
        tenants = [tenant(f"tenant:team-{i}", requests_per_s=0.5, burst=2) for i in range(12)]
        owners = set()
        for t in tenants:
            assert [await a.acquire(t), await b.acquire(t)] == [None, None]
            refused = await b.acquire(t)
            assert refused is not None and refused.limit == "requests", t.id
            probe = Redis(host="127.0.0.1", port=redis_cluster[0].port)
            try:
                slot = int(await probe.execute_command("CLUSTER", "KEYSLOT", a.keys(t.id)[0]))
                owners |= {int(p[2][1]) for p in await probe.execute_command("CLUSTER", "SLOTS")
                           if int(p[0]) <= slot <= int(p[1])}
            finally:
                await probe.aclose()
        assert len(owners) >= 2, "the tenants' buckets landed on more than one master"
        assert "cachesvc_rate_limiter_unavailable_total 0.0" in metrics.render().decode()
    finally:
        await a.close()
        await b.close()
