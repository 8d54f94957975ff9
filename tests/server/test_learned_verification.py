"""The learned verifier through the proxy: confidence on semantic hits, the admin explain endpoint, online
agreement sampling (and auto-tightening), and the judge model inline and in the background."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest

from cachesvc.upstreams.stub import answer_text
from cachesvc.verifier.judge import SELF_CHECK
from tests.conftest import Proxy, Stub, proxy_config, start_proxy
from tests.verifier.fake_judge import FakeJudge, running

ADMIN = {"x-admin-key": "admin-secret"}
ORIGINAL = "How do I sort a list of numbers in descending order in Python?"
PARAPHRASE = "How can I sort a list of numbers in descending order in Python?"  # same wording: always served
REWORDED = "In Python, how do I sort a list of numbers from largest to smallest?"  # the model decides (p ~0.37)
TARGET = 0.7
TRAP = "How do I sort a list of numbers in ascending order in Python?"


async def chat(session: aiohttp.ClientSession, proxy: Proxy, question: str) -> tuple[str, dict[str, str]]:
    body = {"model": "stub-model", "temperature": 0, "messages": [{"role": "user", "content": question}]}
    async with session.post(f"{proxy.base_url}/chat/completions", json=body,
                            headers={"Authorization": "Bearer sk-tenant-a"}) as response:
        assert response.status == 200, await response.text()
        data = await response.json()
        return data["choices"][0]["message"]["content"], dict(response.headers)


@pytest.fixture
async def make_proxy(stub: Stub, encode: Callable[[list[str]], np.ndarray]) -> AsyncIterator[Any]:
    started: list[Proxy] = []

    async def make(**overrides: Any) -> Proxy:
        overrides = {"cache.target_precision": TARGET, **overrides}
        proxy = await start_proxy(proxy_config(stub.url, **overrides), encode)
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        await proxy.server.close()


async def test_the_shipped_target_serves_only_sure_pairs(make_proxy: Any) -> None:
    proxy = await make_proxy(**{"cache.target_precision": 0.98})
    async with aiohttp.ClientSession() as session:
        await chat(session, proxy, ORIGINAL)
        _, headers = await chat(session, proxy, REWORDED)
        assert headers["x-cachesvc-cache"] == "miss"  # the model is not sure enough for the 0.98 bar
        for same in (ORIGINAL.lower().rstrip("?"), PARAPHRASE, "please, " + ORIGINAL):
            text, headers = await chat(session, proxy, same)
            assert headers["x-cachesvc-tier"] == "semantic" and float(headers["x-cachesvc-confidence"]) == 1.0
            assert text == answer_text(ORIGINAL)


async def test_semantic_hit_carries_its_confidence_and_the_verifier_share(make_proxy: Any) -> None:
    proxy = await make_proxy()
    async with aiohttp.ClientSession() as session:
        await chat(session, proxy, ORIGINAL)
        text, headers = await chat(session, proxy, PARAPHRASE)
        assert headers["x-cachesvc-cache"] == "hit" and headers["x-cachesvc-tier"] == "semantic", headers
        assert text == answer_text(ORIGINAL)
        confidence = float(headers["x-cachesvc-confidence"])
        assert proxy.services.verifier.bar(headers["x-cachesvc-category"]) <= confidence <= 1.0
        assert "verify;dur=" in headers["Server-Timing"]
        _, headers = await chat(session, proxy, TRAP)
        assert headers["x-cachesvc-cache"] == "miss"
        _, headers = await chat(session, proxy, ORIGINAL)
        assert headers["x-cachesvc-tier"] == "exact" and "x-cachesvc-confidence" not in headers


async def test_explain_shows_why(make_proxy: Any) -> None:
    proxy = await make_proxy()
    async with aiohttp.ClientSession() as session:
        url = f"{proxy.root}/admin/explain"
        async with session.post(url, json={"query": TRAP, "cached": ORIGINAL}, headers=ADMIN) as response:
            assert response.status == 200
            explained = await response.json()
        assert explained["decision"].startswith("miss")
        assert explained["probability"] < explained["bar"]
        assert explained["similarity"] > 0.9 and explained["verifier"] == "learned"
        assert "descending" in explained["left_over"]["cached"] or explained["rule"]
        assert {"cos", "pairs_antonym", "rule_antonym"} <= set(explained["features"])
        async with session.post(url, json={"query": PARAPHRASE, "cached": ORIGINAL, "category": "code"},
                                headers=ADMIN) as response:
            explained = await response.json()
        assert explained["category"] == "code" and explained["decision"] == "serve"
        for body, status in (({"query": "x"}, 400), ({"query": "", "cached": "y"}, 400),
                             ({"query": "x", "cached": "y", "category": "nope"}, 400),
                             ({"query": "x" * 5000, "cached": "y"}, 400), ([1, 2], 400),
                             ({"query": "x", "cached": "y", "extra": 1}, 400)):
            async with session.post(url, json=body, headers=ADMIN) as response:
                assert response.status == status, body
                assert (await response.json())["error"]["type"]
        async with session.post(url, json={"query": "x", "cached": "y"}) as response:
            assert response.status == 401


async def agreement_checks(session: aiohttp.ClientSession, proxy: Proxy) -> dict[str, Any]:
    await proxy.services.agreement.drain()
    async with session.get(f"{proxy.root}/admin/stats", headers=ADMIN) as response:
        return dict((await response.json())["agreement"]["categories"])


async def test_sampled_hits_are_checked_against_a_fresh_answer(make_proxy: Any, stub: Stub) -> None:
    proxy = await make_proxy(**{"cache.agreement.sample_rate": 1.0})
    async with aiohttp.ClientSession() as session:
        await chat(session, proxy, ORIGINAL)
        _, headers = await chat(session, proxy, PARAPHRASE)
        assert headers["x-cachesvc-tier"] == "semantic"
        checks = await agreement_checks(session, proxy)
        category = headers["x-cachesvc-category"]
        assert checks[category]["checks"] == 1
        assert checks[category]["agreement"] == 1.0  # the stub's answers to the two questions read alike
        assert stub.stats.completions == 2  # the miss, and the background check
        async with session.get(f"{proxy.root}/metrics") as response:
            metrics = await response.text()
        assert f'cachesvc_hit_agreement{{category="{category}"}} 1.0' in metrics


async def test_auto_tighten_raises_the_bar_of_a_disagreeing_category(make_proxy: Any) -> None:
    proxy = await make_proxy(**{"cache.agreement.sample_rate": 1.0, "cache.agreement.answer_similarity": 0.9999,
                                "cache.agreement.min_checks": 1, "cache.auto_tighten": True})
    async with aiohttp.ClientSession() as session:
        await chat(session, proxy, ORIGINAL)
        _, headers = await chat(session, proxy, PARAPHRASE)
        category = headers["x-cachesvc-category"]
        before = proxy.services.verifier.bar(category)
        checks = await agreement_checks(session, proxy)
        assert checks[category]["agreement"] == 0.0  # answers to different prompts never match at 0.9999
        assert proxy.services.verifier.bar(category) > before
        assert proxy.services.verifier.stats()["raised"][category] > 0


def judge_says(verdict: str) -> FakeJudge:
    return FakeJudge(lambda _: verdict)


@pytest.mark.parametrize(("verdict", "served"), [("yes", True), ("no", False)])
async def test_inline_judge_decides_borderline_candidates(make_proxy: Any, verdict: str, served: bool) -> None:
    fake = judge_says(verdict)
    async with running(fake) as judge_url:
        proxy = await make_proxy(**{"cache.judge": {"url": judge_url, "model": "judge", "mode": "inline",
                                                    "band": 0.99, "timeout_s": 5}})
        async with aiohttp.ClientSession() as session:
            await chat(session, proxy, ORIGINAL)
            text, headers = await chat(session, proxy, TRAP)
            assert len(fake.bodies) == 1
            if served:
                assert headers["x-cachesvc-cache"] == "hit" and headers["x-cachesvc-verified-by"] == "judge"
                assert text == answer_text(ORIGINAL)
                assert "judge;dur=" in headers["Server-Timing"]
            else:
                assert headers["x-cachesvc-cache"] == "miss" and text == answer_text(TRAP)


async def test_background_judge_answers_for_next_time(make_proxy: Any) -> None:
    fake = judge_says("yes")
    async with running(fake) as judge_url:
        proxy = await make_proxy(**{"cache.judge": {"url": judge_url, "model": "judge", "band": 0.99}})
        async with aiohttp.ClientSession() as session:
            await chat(session, proxy, ORIGINAL)
            _, headers = await chat(session, proxy, TRAP)
            assert headers["x-cachesvc-cache"] == "miss"  # background: this request does not wait
            judge = proxy.services.judge
            assert judge is not None
            for _ in range(200):
                if judge.cached(TRAP, ORIGINAL) is not None:
                    break
                await asyncio.sleep(0.02)
            assert judge.cached(TRAP, ORIGINAL) is True
            async with session.get(f"{proxy.root}/admin/stats", headers=ADMIN) as response:
                stats = await response.json()
            assert stats["judge"]["mode"] == "background" and stats["judge"]["self_check"] == "passed"
            assert stats["judge"]["calls"] == 1 + len(SELF_CHECK)  # the self-check's calls are counted too


async def test_without_wordnet_the_cache_says_why_and_requests_pass_through(
        stub: Stub, encode: Callable[[list[str]], np.ndarray], tmp_path: Any) -> None:
    from aiohttp.test_utils import TestServer

    from cachesvc.embedding.embedder import Embedder
    from cachesvc.server.app import create_app
    from cachesvc.server.services import SERVICES

    config = proxy_config(stub.url, **{"cache.wordnet_dir": str(tmp_path)})
    app = create_app(config, embedder=Embedder(config.cache.embedding, encode=encode))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        services = app[SERVICES]
        for _ in range(600):  # bounded: the warm-up fails within seconds
            if services.warmup.error:
                break
            await asyncio.sleep(0.05)
        assert services.warmup.error and "fetch-wordnet" in services.warmup.error
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz") as response:
                assert response.status == 503
                assert "fetch-wordnet" in (await response.json())["error"]
            body = {"model": "stub-model", "messages": [{"role": "user", "content": ORIGINAL}]}
            async with session.post(f"{base}/v1/chat/completions", json=body) as response:
                assert response.status == 200
                assert response.headers["x-cachesvc-cache"] == "bypass"
                assert (await response.json())["choices"][0]["message"]["content"] == answer_text(ORIGINAL)
    finally:
        await server.close()
