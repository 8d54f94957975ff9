"""Adapter pools end to end: the official openai client against the proxy, in front of loopback stand-ins that
speak vLLM's runtime-LoRA API exactly. Routing, direct requests, replicas and affinity, fallbacks, a restarted
server, feedback and its errors, saved router state."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import openai
import pytest

from cachesvc.config import config_from_dict
from tests.conftest import Proxy, start_proxy
from tests.upstreams.lora_servers import CODE_PATH, LEGAL_PATH, MISSING_PATH, VllmServer

ADMIN = {"x-admin-key": "admin-secret"}


def pool_config(urls: list[str], **pool: Any) -> dict[str, Any]:
    adapters = pool.pop("adapters", [{"name": "code", "path": CODE_PATH}, {"name": "legal", "path": LEGAL_PATH}])
    return {"adapter_pools": [{"name": "assistants", "upstreams": urls, "capacity": 1, "router": "polar+",
                               "adapters": adapters, "epoch": 8, **pool}],
            "server": {"admin_key": "admin-secret"}, "cache": {"enabled": False}}


@pytest.fixture
async def servers() -> AsyncIterator[list[VllmServer]]:
    started = [await VllmServer().start(), await VllmServer().start()]
    yield started
    for server in started:
        await server.close()


async def proxy_for(raw: dict[str, Any], encode: Callable[[list[str]], np.ndarray]) -> Proxy:
    return await start_proxy(config_from_dict(raw), encode)


async def ask(proxy: Proxy, model: str, text: str, key: str = "sk-client-1") -> tuple[Any, dict[str, str]]:
    client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key=key, max_retries=0)
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}], max_tokens=8)
        return raw.parse(), dict(raw.headers)
    finally:
        await client.close()


async def feedback(proxy: Proxy, body: Any, key: str = "sk-client-1") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(
            f"{proxy.base_url}/feedback", json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        return response.status, await response.json()


async def test_a_pool_request_is_routed_to_a_resident_adapter(servers: list[VllmServer], encode: Any) -> None:
    server = servers[0]
    proxy = await proxy_for(pool_config([server.url], capacity=1), encode)
    try:
        seen = set()
        for i in range(6):
            completion, headers = await ask(proxy, "assistants", f"write a python function number {i}")
            adapter = headers["x-cachesvc-adapter"]
            seen.add(adapter)
            assert completion.choices[0].message.content == f"answered by {adapter}"  # the adapter answered
            assert headers["x-cachesvc-routed"] in ("router", "fallback")
            assert headers["x-cachesvc-replica"] == "assistants-0"
            assert len(server.adapters) <= 1  # never more than the capacity resident
        assert seen <= {"code", "legal"}
        sent = [body["model"] for route, body in server.bodies if route == "chat"]
        assert set(sent) == seen and "assistants" not in sent  # the server is asked for the adapter by name
        stats = proxy.services.pools.stats()["pools"]["assistants"]
        assert stats["requests_routed"] == 6 and stats["page_ins"] >= 1
    finally:
        await proxy.server.close()


async def test_naming_an_adapter_goes_to_it_and_pages_it_in(servers: list[VllmServer], encode: Any) -> None:
    server = servers[0]
    proxy = await proxy_for(pool_config([server.url]), encode)
    try:
        _, headers = await ask(proxy, "legal", "what is a tort")
        assert headers["x-cachesvc-adapter"] == "legal" and headers["x-cachesvc-routed"] == "direct"
        assert server.adapters == {"legal": LEGAL_PATH}
        _, headers = await ask(proxy, "code", "what is a closure")
        assert headers["x-cachesvc-adapter"] == "code" and server.adapters == {"code": CODE_PATH}  # legal evicted
        assert proxy.services.pools.pools[0].router.steps == 2  # direct requests count for residency
        async with aiohttp.ClientSession() as http, http.get(f"{proxy.base_url}/models") as response:
            cards = {c["id"]: c for c in (await response.json())["data"]}
        assert cards["code"]["parent"] == "assistants" and cards["assistants"]["parent"] is None
    finally:
        await proxy.server.close()


async def test_replicas_hold_different_adapters_and_requests_follow_them(servers: list[VllmServer],
                                                                         encode: Any) -> None:
    proxy = await proxy_for(pool_config([s.url for s in servers], capacity=1), encode)
    try:
        _, first = await ask(proxy, "code", "one")
        _, second = await ask(proxy, "legal", "two")
        assert first["x-cachesvc-replica"] != second["x-cachesvc-replica"]  # paged into the free replica
        holders = {name: s for s in servers for name in s.adapters}
        assert set(holders) == {"code", "legal"}
        loads = sum(s.calls["load"] for s in servers)
        for i in range(4):
            _, headers = await ask(proxy, "code", f"again {i}")
            assert headers["x-cachesvc-replica"] == first["x-cachesvc-replica"]  # affinity: no page-in
        assert sum(s.calls["load"] for s in servers) == loads
    finally:
        await proxy.server.close()


async def test_an_adapter_that_cannot_load_falls_back_or_fails_clearly(servers: list[VllmServer],
                                                                       encode: Any) -> None:
    server = servers[0]
    adapters = [{"name": "code", "path": CODE_PATH}, {"name": "ghost", "path": MISSING_PATH}]
    proxy = await proxy_for(pool_config([server.url], capacity=2, adapters=adapters, fallback_adapter="code"),
                            encode)
    try:
        with pytest.raises(openai.APIStatusError) as failure:
            await ask(proxy, "ghost", "hello")  # nothing resident yet to fall back to
        assert failure.value.status_code == 503
        assert failure.value.body["code"] == "adapter_unavailable" and "ghost" in failure.value.body["message"]
        await ask(proxy, "code", "make code resident")
        completion, headers = await ask(proxy, "ghost", "hello again")
        assert headers["x-cachesvc-adapter"] == "code" and headers["x-cachesvc-routed"] == "fallback"
        assert completion.choices[0].message.content == "answered by code"
        assert server.calls["load"] == 2  # the failed adapter is not retried at once
        assert proxy.services.pools.stats()["pools"]["assistants"]["page_in_failures"] == 1
    finally:
        await proxy.server.close()


async def test_a_restarted_server_is_noticed_and_the_pool_recovers(servers: list[VllmServer],
                                                                    encode: Any) -> None:
    server = servers[0]
    proxy = await proxy_for(pool_config([server.url]), encode)
    try:
        await ask(proxy, "code", "before the restart")
        server.restart()  # the server lost every runtime-loaded adapter
        with pytest.raises(openai.NotFoundError):
            await ask(proxy, "code", "right after it")  # its 404 passes through, clearly
        pool = proxy.services.pools.pools[0]
        pool.replicas[0].reconciled_at = float("-inf")  # the next request may list it again at once
        completion, headers = await ask(proxy, "code", "a little later")
        assert completion.choices[0].message.content == "answered by code" and server.adapters == {"code": CODE_PATH}
    finally:
        await proxy.server.close()


async def test_feedback_rewards_a_routed_answer_once(servers: list[VllmServer], encode: Any) -> None:
    proxy = await proxy_for(pool_config([servers[0].url]), encode)
    try:
        completion, headers = await ask(proxy, "assistants", "explain recursion")
        router = proxy.services.pools.pools[0].router
        before = int(router.model.counts.sum())
        status, body = await feedback(proxy, {"id": completion.id, "reward": 0.75})
        assert status == 200 and body["adapter"] == headers["x-cachesvc-adapter"] and body["reward"] == 0.75
        assert int(router.model.counts.sum()) == before + 1
        status, body = await feedback(proxy, {"id": completion.id, "reward": 1})
        assert status == 409 and body["error"]["code"] == "feedback_already_given"
        status, body = await feedback(proxy, {"id": "chatcmpl-nobody", "reward": 1})
        assert status == 404 and body["error"]["code"] == "feedback_unknown_id"
        other, _ = await ask(proxy, "assistants", "explain iteration")
        status, _ = await feedback(proxy, {"id": other.id, "reward": 1}, key="sk-someone-else")
        assert status == 404  # another tenant's response: as if unknown
        for bad in ({"id": other.id, "reward": 1.5}, {"id": other.id, "reward": True}, {"id": other.id},
                    {"id": 7, "reward": 0.5}, {"id": "x" * 300, "reward": 0.5}, ["not", "an", "object"]):
            status, body = await feedback(proxy, bad)
            assert status == 400 and body["error"]["type"] == "invalid_request_error", bad
        assert int(router.model.counts.sum()) == before + 1  # none of those taught the router anything
        status, _ = await feedback(proxy, {"id": other.id, "reward": 0.0})
        assert status == 200
    finally:
        await proxy.server.close()


async def test_feedback_after_its_window_is_refused(servers: list[VllmServer], encode: Any) -> None:
    proxy = await proxy_for(pool_config([servers[0].url], feedback_ttl_s=0.001), encode)
    try:
        completion, _ = await ask(proxy, "assistants", "late")
        import asyncio

        await asyncio.sleep(0.01)
        status, body = await feedback(proxy, {"id": completion.id, "reward": 1})
        assert status == 410 and body["error"]["code"] == "feedback_expired"
    finally:
        await proxy.server.close()


async def test_router_state_survives_a_restart(servers: list[VllmServer], encode: Any, tmp_path: Path) -> None:
    state = tmp_path / "router.json"
    raw = pool_config([servers[0].url], state_path=str(state), reward="finished")
    proxy = await proxy_for(raw, encode)
    try:
        for i in range(5):
            await ask(proxy, "assistants", f"question {i}")
        router = proxy.services.pools.pools[0].router
        steps, rewards = router.steps, int(router.model.counts.sum())
        assert rewards == 5  # the automatic reward taught it once per answer
    finally:
        await proxy.server.close()
    saved = json.loads(state.read_text())
    assert saved["pool"] == "assistants" and saved["adapters"] == ["code", "legal"]
    again = await proxy_for(raw, encode)
    try:
        resumed = again.services.pools.pools[0].router
        assert resumed.steps == steps and int(resumed.model.counts.sum()) == rewards
    finally:
        await again.server.close()
    changed = pool_config([servers[0].url], state_path=str(state),
                          adapters=[{"name": "code", "path": CODE_PATH}])
    fresh = await proxy_for(changed, encode)  # other adapters: the old state is not forced onto them
    try:
        assert fresh.services.pools.pools[0].router.steps == 0
    finally:
        await fresh.server.close()


def test_pool_config_errors_name_the_key() -> None:
    base = pool_config(["http://127.0.0.1:1/v1"])
    for change, key in (({"router": "lru"}, "adapter_pools[0].router"),
                        ({"capacity": 0}, "adapter_pools[0].capacity"),
                        ({"fallback_adapter": "nope"}, "adapter_pools[0].fallback_adapter"),
                        ({"upstreams": ["ftp://x"]}, "adapter_pools[0].upstreams[0]"),
                        ({"server": "sglang"}, "adapter_pools[0].base_model"),
                        ({"adapters": [{"name": "a b", "path": "/x"}]}, "adapter_pools[0].adapters[0].name")):
        raw = json.loads(json.dumps(base))
        raw["adapter_pools"][0].update(change)
        with pytest.raises(ValueError, match=key.replace("[", r"\[").replace("]", r"\]")):
            config_from_dict(raw)
