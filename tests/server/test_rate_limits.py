"""Per-tenant rate limits: the GCRA buckets on a fake clock (burst, refill, Retry-After), then end to end through
the proxy on loopback: 429 with Retry-After and an OpenAI-style error (the official client's RateLimitError),
tokens charged from upstream answers only, pass-through calls (embeddings) limited and charged from their usage,
unknown tenants limited separately, 401 for unknown keys, and the trusted header honoured from 127.0.0.1 and
ignored from anywhere else."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import openai
import pytest

from cachesvc.config import config_from_dict
from cachesvc.metrics import Metrics
from cachesvc.openai.answer import Answer
from cachesvc.server.rate_limits import (
    Limited,
    MemoryRateLimiter,
    RateLimited,
    TenantRateLimits,
    create_rate_limiter,
    take,
    tokens_of,
)
from cachesvc.server.tenants import Tenant, TenantLimits
from tests.conftest import Proxy, Stub, metric_sample, start_proxy


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tenant(tenant_id: str = "tenant:t", **limits: Any) -> Tenant:
    return Tenant(tenant_id, "t", TenantLimits(**limits), known=True)


def test_gcra_take() -> None:
    # 1 unit per second, capacity 2: two at once, the third waits a second, nothing is taken from a refusal
    tat, wait = take(0.0, 10.0, 1.0, 2.0, 1)
    assert (tat, wait) == (11.0, 0.0)
    tat, wait = take(tat, 10.0, 1.0, 2.0, 1)
    assert (tat, wait) == (12.0, 0.0)
    assert take(tat, 10.0, 1.0, 2.0, 1) == (12.0, pytest.approx(1.0))
    assert take(tat, 10.5, 1.0, 2.0, 1) == (12.0, pytest.approx(0.5))
    assert take(tat, 11.0, 1.0, 2.0, 1) == (13.0, 0.0)


async def test_memory_limiter_burst_refill_and_retry_after() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    t = tenant(requests_per_s=2.0, burst=3)
    assert [await limiter.acquire(t) for _ in range(3)] == [None, None, None]  # the burst
    refused = await limiter.acquire(t)
    assert refused == Limited("requests", pytest.approx(0.5))  # one more in half a second (2/s)
    assert await limiter.acquire(t) == refused  # a refusal takes nothing
    clock.now += 0.5
    assert await limiter.acquire(t) is None
    assert (await limiter.acquire(t)) == Limited("requests", pytest.approx(0.5))
    clock.now += 10  # idle: refills to the burst, not beyond
    assert [await limiter.acquire(t) is None for _ in range(4)] == [True, True, True, False]
    assert await limiter.acquire(tenant("tenant:other", requests_per_s=2.0, burst=3)) is None  # its own bucket


async def test_memory_limiter_tokens_go_into_debt_and_are_paid_off() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    t = tenant(tokens_per_min=600)  # 10 tokens a second, 600 at once
    assert await limiter.acquire(t) is None
    await limiter.charge_tokens(t, 590)
    assert await limiter.acquire(t) is None  # 10 left
    await limiter.charge_tokens(t, 1000)  # a large answer: 990 tokens in debt beyond the bucket
    limited = await limiter.acquire(t)
    assert limited is not None and limited.limit == "tokens"
    assert limited.wait_s == pytest.approx(99.1)  # until one token is back: (990 + 1) / 10 per second
    clock.now += 99.0
    assert await limiter.acquire(t) is not None
    clock.now += 0.2
    assert await limiter.acquire(t) is None
    both = tenant("tenant:both", requests_per_s=1.0, burst=1, tokens_per_min=60)
    await limiter.charge_tokens(both, 120)
    assert (await limiter.acquire(both)) == Limited("tokens", pytest.approx(61.0))  # the longer wait is said


async def test_memory_limiter_forgets_full_buckets() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    for i in range(5000):
        assert await limiter.acquire(tenant(f"key:{i}", requests_per_s=10.0, burst=10)) is None
    clock.now += 2  # every bucket is full again
    assert await limiter.acquire(tenant("key:new", requests_per_s=10.0, burst=10)) is None
    for i in range(5000, 9000):
        await limiter.acquire(tenant(f"key:{i}", requests_per_s=10.0, burst=10))
    assert len(limiter._buckets) < 5000


def test_tokens_of_an_answer() -> None:
    def answer(usage: Any) -> Answer:
        return Answer("chat", "m", [], usage)
    assert tokens_of(answer({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 9})) == 9
    assert tokens_of(answer({"prompt_tokens": 3, "completion_tokens": 4})) == 7
    assert tokens_of(answer(None)) == tokens_of(answer({"total_tokens": "many"})) == 0
    assert tokens_of(answer({"total_tokens": True, "completion_tokens": 2})) == 2


def test_rate_limited_error_and_headers() -> None:
    exc = RateLimited(Tenant("tenant:blue", "blue", TenantLimits(requests_per_s=0.5, burst=2), True),
                      Limited("requests", 1.2))
    assert exc.status == 429
    body = exc.body()["error"]
    assert (body["type"], body["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "requests" in body["message"] and "'blue'" in body["message"]
    assert exc.headers["Retry-After"] == "2" and exc.headers["retry-after-ms"] == "1200"
    assert exc.headers["x-ratelimit-remaining-requests"] == "0"
    assert exc.headers["x-ratelimit-limit-requests"] == "2"
    tiny = RateLimited(Tenant("key:x", "other", TenantLimits(tokens_per_min=10), False), Limited("tokens", 0.01))
    assert tiny.headers["Retry-After"] == "1" and "x-ratelimit-reset-tokens" in tiny.headers
    assert "key:x" not in tiny.message and "other" not in tiny.message


async def test_tenants_without_limits_never_reach_the_limiter() -> None:
    class Refuses:
        name = "refuses"
        calls = 0

        async def acquire(self, tenant: Tenant, requests: int = 1) -> Limited | None:
            self.calls += 1
            return Limited("requests", 1.0)

        async def charge_tokens(self, tenant: Tenant, tokens: int) -> None:
            self.calls += 1

        async def close(self) -> None:
            pass

    limiter = Refuses()
    limits = TenantRateLimits(limiter, Metrics())
    await limits.admit(tenant())
    await limits.charge(tenant(), Answer("chat", "m", [], {"total_tokens": 5}))
    assert limiter.calls == 0
    with pytest.raises(RateLimited):
        await limits.admit(tenant(requests_per_s=1.0))


def test_the_memory_limiter_unless_the_cache_is_in_redis() -> None:
    assert create_rate_limiter(config_from_dict({}), Metrics()).name == "memory"
    assert create_rate_limiter(config_from_dict({"cache": {"store": {"kind": "sqlite"}}}), Metrics()).name == "memory"


# ---- end to end ------------------------------------------------------------------------------------------


def _flat(texts: list[str]) -> np.ndarray:
    return np.ones((len(texts), 8), dtype=np.float32) / np.sqrt(8)


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def limited_proxy(stub: Stub, tenants: dict[str, Any]) -> Proxy:
    config = config_from_dict({"upstreams": [{"url": stub.url}], "cache": {"semantic": False}, "tenants": tenants})
    return await start_proxy(config, _flat)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def post(http: aiohttp.ClientSession, proxy: Proxy, question: str, key: str | None = None,
               **headers: str) -> tuple[int, dict[str, str], Any]:
    body = {"model": "stub-model", "temperature": 0, "messages": [{"role": "user", "content": question}]}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with http.post(f"{proxy.base_url}/chat/completions", json=body, headers=headers) as response:
        return response.status, dict(response.headers), await response.json()


def metric(proxy: Proxy, name: str) -> float:
    return metric_sample(proxy.services.metrics, name)


async def test_429_with_retry_after_through_the_openai_client(stub: Stub) -> None:
    proxy = await limited_proxy(stub, {"entries": [{"name": "team-a", "api_key_sha256": [sha("sk-team-a")],
                                                     "requests_per_s": 0.5, "burst": 2}]})
    client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-team-a", max_retries=0, timeout=30)
    try:
        for question in ("first question", "first question"):  # a miss, then a hit: both count
            await client.chat.completions.create(model="stub-model", temperature=0,
                                                 messages=[{"role": "user", "content": question}])
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="stub-model", temperature=0,
                                                 messages=[{"role": "user", "content": "third"}])
        error = caught.value
        assert error.status_code == 429 and error.code == "rate_limit_exceeded"
        assert error.type == "rate_limit_error"
        assert "team-a" in error.message
        assert error.response.headers["retry-after"] == "2"  # the next request in 2 s at 0.5/s
        assert float(error.response.headers["retry-after-ms"]) > 1000
        assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert stub.stats.completions == 1  # the refused request never went upstream
        assert metric(proxy, 'cachesvc_rate_limited_total{limit="requests",tenant="team-a"}') == 1
    finally:
        await client.close()
        await proxy.server.close()


async def test_tokens_are_charged_from_upstream_answers_only(stub: Stub, http: aiohttp.ClientSession) -> None:
    proxy = await limited_proxy(stub, {"entries": [{"name": "team-a", "api_key_sha256": [sha("sk-team-a")],
                                                     "tokens_per_min": 100_000}]})
    try:
        status, headers, body = await post(http, proxy, "How long is a piece of string?", "sk-team-a")
        assert status == 200 and headers["x-cachesvc-cache"] == "miss"
        charged = metric(proxy, 'cachesvc_tenant_tokens_total{tenant="team-a"}')
        assert charged == body["usage"]["total_tokens"] > 0
        status, headers, _ = await post(http, proxy, "How long is a piece of string?", "sk-team-a")
        assert status == 200 and headers["x-cachesvc-cache"] == "hit"
        assert metric(proxy, 'cachesvc_tenant_tokens_total{tenant="team-a"}') == charged  # a hit costs none
        status, headers, body = await post(http, proxy, "Again?", "sk-team-a", **{"Cache-Control": "no-store"})
        assert status == 200 and headers["x-cachesvc-cache"] == "bypass"  # a bypass went upstream: charged
        charged += body["usage"]["total_tokens"]
        assert metric(proxy, 'cachesvc_tenant_tokens_total{tenant="team-a"}') == charged
        stream = {"model": "stub-model", "temperature": 0, "stream": True,
                  "messages": [{"role": "user", "content": "A streamed question"}]}
        async with http.post(f"{proxy.base_url}/chat/completions", json=stream,
                             headers={"Authorization": "Bearer sk-team-a"}) as response:
            assert response.status == 200 and (await response.text()).rstrip().endswith("[DONE]")
        assert metric(proxy, 'cachesvc_tenant_tokens_total{tenant="team-a"}') > charged  # from the usage chunk
    finally:
        await proxy.server.close()


async def test_an_empty_token_bucket_refuses_until_paid_off(stub: Stub, http: aiohttp.ClientSession) -> None:
    proxy = await limited_proxy(stub, {"default": {"tokens_per_min": 6}})  # 6 tokens at once, one per 10 s
    try:
        status, _, body = await post(http, proxy, "a question with several words in it", "sk-unlisted")
        assert status == 200 and body["usage"]["total_tokens"] > 6
        status, headers, body = await post(http, proxy, "another question", "sk-unlisted")
        assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
        assert "tokens" in body["error"]["message"]
        assert int(headers["Retry-After"]) > 10 and headers["x-ratelimit-limit-tokens"] == "6"
        assert headers["x-cachesvc-cache"] == "bypass"
        assert (await post(http, proxy, "another question", "sk-someone-else"))[0] == 200  # each tenant its own
        assert metric(proxy, 'cachesvc_rate_limited_total{limit="tokens",tenant="other"}') == 1
    finally:
        await proxy.server.close()


async def test_unknown_tenants_are_limited_separately(stub: Stub, http: aiohttp.ClientSession) -> None:
    proxy = await limited_proxy(stub, {"default": {"requests_per_s": 0.1}})  # burst 1
    try:
        assert (await post(http, proxy, "q1", "sk-one"))[0] == 200
        status, headers, _ = await post(http, proxy, "q2", "sk-one")
        assert status == 429 and headers["Retry-After"] == "10"
        assert (await post(http, proxy, "q3", "sk-two"))[0] == 200
        assert (await post(http, proxy, "q4"))[0] == 200  # anonymous: one more tenant
        assert (await post(http, proxy, "q5"))[0] == 429
    finally:
        await proxy.server.close()


async def test_unknown_keys_get_401_when_keys_are_required(stub: Stub, http: aiohttp.ClientSession) -> None:
    proxy = await limited_proxy(stub, {"require_known_key": True,
                                       "entries": [{"name": "team-a", "api_key_sha256": [sha("sk-team-a")]}]})
    client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-wrong", max_retries=0, timeout=30)
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(model="stub-model", messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
        assert "sk-wrong" not in caught.value.message
        status, _, body = await post(http, proxy, "hi")
        assert status == 401 and body["error"]["message"] == "You didn't provide an API key."
        async with http.get(f"{proxy.base_url}/models", headers={"Authorization": "Bearer sk-wrong"}) as response:
            assert response.status == 401  # every /v1/ route, not only completions
        assert (await post(http, proxy, "hi", "sk-team-a"))[0] == 200
        assert stub.stats.completions == 1
        assert metric(proxy, 'cachesvc_tenant_rejected_total{reason="unknown_key"}') == 2
    finally:
        await client.close()
        await proxy.server.close()


async def test_trusted_header_from_loopback_shares_the_tenant(stub: Stub, http: aiohttp.ClientSession) -> None:
    proxy = await limited_proxy(stub, {"trusted_header": "x-team", "trusted_sources": ["127.0.0.0/8"]})
    try:
        _, first, _ = await post(http, proxy, "What is a monad?", "sk-alice", **{"x-team": "blue"})
        _, second, _ = await post(http, proxy, "What is a monad?", "sk-bob", **{"x-team": "blue"})
        assert (first["x-cachesvc-cache"], second["x-cachesvc-cache"]) == ("miss", "hit")  # one tenant: blue
    finally:
        await proxy.server.close()


async def test_trusted_header_from_an_untrusted_source_is_ignored(stub: Stub, http: aiohttp.ClientSession) -> None:
    proxy = await limited_proxy(stub, {"trusted_header": "x-team", "trusted_sources": ["10.0.0.0/8"]})
    try:
        _, first, _ = await post(http, proxy, "What is a monad?", "sk-alice", **{"x-team": "blue"})
        _, second, _ = await post(http, proxy, "What is a monad?", "sk-bob", **{"x-team": "blue"})
        _, third, _ = await post(http, proxy, "What is a monad?", "sk-alice")
        assert [h["x-cachesvc-cache"] for h in (first, second, third)] == ["miss", "miss", "hit"]  # by key
        assert metric(proxy, "cachesvc_tenant_header_ignored_total") == 2
    finally:
        await proxy.server.close()


async def test_pass_through_calls_take_requests_and_pay_tokens(stub: Stub, http: aiohttp.ClientSession) -> None:
    proxy = await limited_proxy(stub, {"entries": [{"name": "team-a", "api_key_sha256": [sha("sk-team-a")],
                                                     "requests_per_s": 0.01, "burst": 3, "tokens_per_min": 1000}]})
    client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-team-a", max_retries=0, timeout=30)
    try:
        made = await client.embeddings.create(model="stub-model", input=["one two three", "four five"])
        assert len(made.data) == 2 and len(made.data[0].embedding) == 8  # base64 from the client, decoded
        assert made.usage.total_tokens == 5
        assert metric(proxy, 'cachesvc_tenant_tokens_total{tenant="team-a"}') == 5  # the relayed answer's usage
        async with http.post(f"{proxy.base_url}/embeddings", headers={"Authorization": "Bearer sk-team-a"},
                             json={"model": "stub-model", "input": "six " * 30, "encoding_format": "float"}) as r:
            assert r.status == 200 and r.headers["x-cachesvc-cache"] == "bypass"
        assert metric(proxy, 'cachesvc_tenant_tokens_total{tenant="team-a"}') == 35
        async with http.get(f"{proxy.base_url}/files", headers={"Authorization": "Bearer sk-team-a"}) as r:
            assert r.status == 200  # the echo: not JSON usage, charges nothing, takes the burst's last request
        assert metric(proxy, 'cachesvc_tenant_tokens_total{tenant="team-a"}') == 35
        with pytest.raises(openai.RateLimitError) as caught:
            await client.embeddings.create(model="stub-model", input="seven")
        assert caught.value.code == "rate_limit_exceeded" and int(caught.value.response.headers["retry-after"]) > 60
        assert caught.value.response.headers["x-cachesvc-cache"] == "bypass"
        assert metric(proxy, 'cachesvc_rate_limited_total{limit="requests",tenant="team-a"}') == 1
        async with http.get(f"{proxy.base_url}/models", headers={"Authorization": "Bearer sk-team-a"}) as r:
            assert r.status == 200  # the proxy's own list: no upstream call, no limit
    finally:
        await client.close()
        await proxy.server.close()


async def test_a_pass_through_answer_past_the_token_budget_refuses_the_next(stub: Stub,
                                                                            http: aiohttp.ClientSession) -> None:
    proxy = await limited_proxy(stub, {"default": {"tokens_per_min": 10}})
    try:
        big = ["word " * 20 for _ in range(600)]  # 12,000 tokens in an answer far larger than UsageTail keeps whole
        body = {"model": "stub-model", "input": big, "dimensions": 32, "encoding_format": "float"}
        async with http.post(f"{proxy.base_url}/embeddings", json=body) as r:
            assert r.status == 200 and len(await r.read()) > 64 * 1024
        assert metric(proxy, 'cachesvc_tenant_tokens_total{tenant="other"}') == 12_000
        async with http.post(f"{proxy.base_url}/embeddings", json={"model": "stub-model", "input": "x"}) as r:
            assert r.status == 429 and (await r.json())["error"]["code"] == "rate_limit_exceeded"
            assert r.headers["x-ratelimit-limit-tokens"] == "10"
        assert (await post(http, proxy, "a chat question"))[0] == 429  # one budget for every route
    finally:
        await proxy.server.close()
