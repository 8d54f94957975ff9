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
from tests.conftest import Proxy, metric_sample, start_proxy
from tests.upstreams.lora_servers import (
    BASE_MODEL,
    BROKEN_PATH,
    CODE_PATH,
    LEGAL_PATH,
    MISSING_PATH,
    SglangServer,
    VllmServer,
)

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
        router = proxy.services.pools.pools[0].router
        contexts = router.recent[:6]
        assert np.allclose(np.linalg.norm(contexts[:, :-1], axis=1), 1.0)  # the query embeddings, not the bias alone
        assert len({tuple(np.round(c, 6)) for c in contexts}) == 6
    finally:
        await proxy.server.close()


async def test_naming_an_adapter_goes_to_it_and_pages_it_in(servers: list[VllmServer], encode: Any) -> None:
    server = servers[0]
    proxy = await proxy_for(pool_config([server.url]), encode)
    try:
        _, headers = await ask(proxy, "legal", "what is a tort")
        assert headers["x-cachesvc-adapter"] == "legal" and headers["x-cachesvc-routed"] == "direct"
        assert server.adapters == {"legal": LEGAL_PATH}
        assert float(headers["x-cachesvc-adapter-paged-ms"]) >= 0  # this one waited for the load: cold
        _, headers = await ask(proxy, "legal", "what is a lien")
        assert "x-cachesvc-adapter-paged-ms" not in headers  # resident now: warm
        _, headers = await ask(proxy, "code", "what is a closure")
        assert headers["x-cachesvc-adapter"] == "code" and server.adapters == {"code": CODE_PATH}  # legal evicted
        assert proxy.services.pools.pools[0].router.steps == 3  # direct requests count for residency
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


async def test_a_refused_or_slow_load_never_wedges_the_pool(servers: list[VllmServer], encode: Any) -> None:
    server = servers[0]
    adapters = [{"name": "code", "path": CODE_PATH}, {"name": "broken", "path": BROKEN_PATH},
                {"name": "legal", "path": LEGAL_PATH}]
    proxy = await proxy_for(pool_config([server.url], capacity=2, adapters=adapters, load_timeout_s=0.3), encode)
    try:
        await ask(proxy, "code", "make code resident")
        _, headers = await ask(proxy, "broken", "the engine refuses this one")
        assert headers["x-cachesvc-adapter"] == "code" and headers["x-cachesvc-routed"] == "fallback"
        server.faults.delay_s["load"] = 2.0  # slower than the pool's load timeout
        _, headers = await ask(proxy, "legal", "this load times out")
        assert headers["x-cachesvc-routed"] == "fallback"
        server.faults.delay_s.clear()
        pool = proxy.services.pools.pools[0]
        pool.replicas[0].reconciled_at = float("-inf")
        _, headers = await ask(proxy, "legal", "and now it loads")
        assert headers["x-cachesvc-adapter"] == "legal" and headers["x-cachesvc-routed"] == "direct"
        assert pool.page_in_failures == 2
    finally:
        await proxy.server.close()


async def test_an_sglang_pool_names_base_and_adapter(encode: Any) -> None:
    server = await SglangServer().start()
    proxy = await proxy_for(pool_config([server.url], server="sglang", base_model=BASE_MODEL), encode)
    try:
        completion, headers = await ask(proxy, "legal", "what is an easement")
        assert headers["x-cachesvc-adapter"] == "legal" and "legal" in server.adapters
        assert completion.choices[0].message.content == f"answered by {BASE_MODEL}:legal"
        server.restart()  # SGLang's 400 for an adapter it no longer has: paged in again, asked again
        completion, headers = await ask(proxy, "legal", "after a restart")
        assert completion.choices[0].message.content == f"answered by {BASE_MODEL}:legal"
        assert headers["x-cachesvc-adapter-lost"] == "1" and "legal" in server.adapters
        server.faults.restart_before_chat = True  # lost at every request: sent twice, then SGLang's 400 is relayed
        chats = server.calls["chat"]
        with pytest.raises(openai.BadRequestError):
            await ask(proxy, "legal", "a server that keeps losing it")
        assert server.calls["chat"] - chats == 2
    finally:
        await proxy.server.close()
        await server.close()


async def test_a_restarted_server_is_noticed_and_the_pool_recovers(servers: list[VllmServer],
                                                                    encode: Any) -> None:
    server = servers[0]
    proxy = await proxy_for(pool_config([server.url]), encode)
    try:
        await ask(proxy, "code", "before the restart")
        server.restart()  # the server lost every runtime-loaded adapter
        completion, headers = await ask(proxy, "code", "right after it")  # its 404 did not reach the client
        assert completion.choices[0].message.content == "answered by code" and server.adapters == {"code": CODE_PATH}
        assert headers["x-cachesvc-adapter-lost"] == "1" and headers["x-cachesvc-adapter-paged-ms"]
        lost = 'cachesvc_adapter_lost_total{pool="assistants",replica="assistants-0"}'
        assert metric_sample(proxy.services.metrics, lost) == 1
        completion, headers = await ask(proxy, "code", "and after that")
        assert "x-cachesvc-adapter-lost" not in headers and "x-cachesvc-adapter-paged-ms" not in headers
        loads, chats = server.calls["load"], server.calls["chat"]
        server.faults.restart_before_chat = True  # it loses the adapter every time: one more try, no more
        with pytest.raises(openai.NotFoundError):
            await ask(proxy, "code", "a server that keeps losing it")
        assert (server.calls["load"] - loads, server.calls["chat"] - chats) == (1, 2)
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


async def test_epoch_plans_swap_the_adapter_even_with_one_slot(servers: list[VllmServer], encode: Any) -> None:
    """The request that ends an epoch is in flight on the adapter the plan evicts, and the next ones follow at once:
    the plan takes the adapter out of the table, waits for what is in flight, then swaps."""
    server = servers[0]
    proxy = await proxy_for(pool_config([server.url], capacity=1, router="polar", epoch=4), encode)
    try:
        served = set()
        for i in range(24):
            completion, headers = await ask(proxy, "assistants", f"question number {i} about contracts or code")
            served.add(headers["x-cachesvc-adapter"])
            status, _ = await feedback(proxy, {"id": completion.id, "reward": 0.0})  # the resident one disappoints
            assert status == 200
        assert served == {"code", "legal"}  # the controller explored the adapter that was not resident at first
        assert server.calls["unload"] >= 1
    finally:
        await proxy.server.close()


async def test_a_request_during_a_plan_does_not_undo_it(servers: list[VllmServer], encode: Any) -> None:
    """Loads are slow, so the request after an epoch's end arrives while the plan is still being applied: it is
    routed as if the plan were done, and waits for it, instead of paging the old adapter straight back in."""
    server = servers[0]
    server.faults.delay_s["load"] = 0.3
    proxy = await proxy_for(pool_config([server.url], capacity=1, router="polar", epoch=4), encode)
    try:
        served = []
        for i in range(4):
            completion, headers = await ask(proxy, "assistants", f"question {i} about a contract")
            served.append(headers["x-cachesvc-adapter"])
            await feedback(proxy, {"id": completion.id, "reward": 0.2})
        assert len(set(served)) == 1  # one epoch on the first adapter: middling, the other one may be better
        _, headers = await ask(proxy, "assistants", "the first question of the next epoch")
        assert headers["x-cachesvc-adapter"] != served[0]  # the plan's adapter, not the old one paged back
        assert server.calls["load"] == 2 and server.calls["unload"] == 1
    finally:
        await proxy.server.close()


async def test_cached_answers_keep_to_what_was_asked_and_say_which_adapter(servers: list[VllmServer],
                                                                         encode: Any) -> None:
    raw = pool_config([servers[0].url], capacity=2)
    raw["cache"] = {"enabled": True}
    proxy = await proxy_for(raw, encode)
    try:
        question = "How do I reverse a list in Python?"
        first, headers = await ask(proxy, "assistants", question)
        adapter = headers["x-cachesvc-adapter"]
        assert headers["x-cachesvc-cache"] == "miss"
        again, hit = await ask(proxy, "assistants", question)
        assert hit["x-cachesvc-cache"] == "hit" and hit["x-cachesvc-adapter"] == adapter  # recorded, not re-routed
        assert again.choices[0].message.content == first.choices[0].message.content
        other = "legal" if adapter == "code" else "code"
        named, headers = await ask(proxy, other, question)  # another adapter named: never the cached answer
        assert headers["x-cachesvc-cache"] == "miss" and named.choices[0].message.content == f"answered by {other}"
        _, hit = await ask(proxy, other, question)
        assert hit["x-cachesvc-cache"] == "hit" and hit["x-cachesvc-adapter"] == other
        assert proxy.services.pools.pools[0].router.steps == 2  # hits were not routed
    finally:
        await proxy.server.close()


async def test_admin_adapters_and_metrics_show_the_pool(servers: list[VllmServer], encode: Any) -> None:
    proxy = await proxy_for(pool_config([servers[0].url], capacity=1), encode)
    try:
        completion, _ = await ask(proxy, "code", "one")
        await feedback(proxy, {"id": completion.id, "reward": 0.9})
        await ask(proxy, "legal", "two")  # evicts code: one page-out
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{proxy.root}/admin/adapters") as response:
                assert response.status in (401, 403)  # admin only
            async with http.get(f"{proxy.root}/admin/adapters", headers=ADMIN) as response:
                body = await response.json()
            async with http.get(f"{proxy.root}/metrics") as response:
                metrics = await response.text()
        pool = body["pools"][0]
        by_name = {a["name"]: a for a in pool["adapters"]}
        assert by_name["code"]["rewards"] == 1 and by_name["code"]["mean_reward"] == 0.9
        assert by_name["legal"]["resident_on"] == ["assistants-0"] and by_name["code"]["resident_on"] == []
        assert pool["page_ins"] == 2 and pool["page_outs"] == 1 and pool["reward_total"] == 0.9
        assert 'cachesvc_adapter_page_outs_total{pool="assistants",replica="assistants-0",result="unloaded"} 1.0' \
            in metrics
        assert 'cachesvc_adapter_reward_total{pool="assistants"} 0.9' in metrics
        assert 'cachesvc_adapter_requests_total{adapter="code",how="direct",pool="assistants"} 1.0' in metrics
    finally:
        await proxy.server.close()


async def test_an_adapter_the_server_already_holds_is_taken_as_resident(servers: list[VllmServer],
                                                                        encode: Any) -> None:
    """Our table is behind the server (someone loaded it): vLLM's duplicate-name 400 means resident, not a failure,
    and no page-in is measured for it."""
    server = servers[0]
    proxy = await proxy_for(pool_config([server.url]), encode)
    try:
        server.adapters["legal"] = LEGAL_PATH  # loaded behind the proxy's back, after its first listing
        completion, headers = await ask(proxy, "legal", "what is a tort")
        assert completion.choices[0].message.content == "answered by legal"
        assert "x-cachesvc-adapter-paged-ms" not in headers  # nothing was paged in for this request
        pool = proxy.services.pools.pools[0]
        assert pool.page_in_failures == 0 and pool.page_ins == 0
        assert pool.router.cost.measured[pool.adapters.index("legal")] == 0  # no made-up zero-second page-in
        assert server.calls["load"] == 1
    finally:
        await proxy.server.close()
