"""An adapter pool in front of the real reference model server: real SmolLM2, real trained LoRA adapters, the
official openai client streaming through the proxy, feedback on the streamed answer's id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from cachesvc.config import config_from_dict
from cachesvc.model_server.app import ENGINE
from tests.conftest import start_proxy
from tests.model_server.adapter_fixtures import lora_model_server
from tests.model_server.conftest import trained_adapters  # noqa: F401  (a fixture for this test)
from tests.model_server.test_api import base_url


@pytest.fixture
async def model_server(smollm2: Any, trained_adapters: dict[str, Path]) -> AsyncIterator[TestServer]:  # noqa: F811
    async with lora_model_server(smollm2, trained_adapters, max_loras=1) as server:
        yield server


async def test_a_pool_on_the_reference_model_server(model_server: TestServer, trained_adapters: dict[str, Path],  # noqa: F811
                                                   encode: Any) -> None:
    raw = {"adapter_pools": [{
        "name": "assistants", "upstreams": [base_url(model_server)], "capacity": 1, "server": "cachesvc",
        "adapters": [{"name": name, "path": str(path)} for name, path in sorted(trained_adapters.items())]}],
        "server": {"admin_key": "admin-secret"}, "cache": {"enabled": False}}
    proxy = await start_proxy(config_from_dict(raw), encode)
    registry = model_server.app[ENGINE].registry
    client = openai.AsyncOpenAI(base_url=proxy.base_url, api_key="sk-one", max_retries=0, timeout=120)
    try:
        for adapter in ("legal", "code"):
            raw_response = await client.chat.completions.with_raw_response.create(
                model=adapter, messages=[{"role": "user", "content": "def add(a, b):"}], max_tokens=4, stream=True)
            assert raw_response.headers["x-cachesvc-adapter"] == adapter
            chunks = [chunk async for chunk in raw_response.parse()]
            assert chunks and all(c.model == adapter for c in chunks)  # the server answered with the adapter
            assert registry.names() == [adapter]  # capacity 1: the other one was unloaded first
        stream_id = chunks[0].id
        routed = await client.chat.completions.create(
            model="assistants", messages=[{"role": "user", "content": "Explain a contract."}], max_tokens=4)
        assert routed.model in ("code", "legal")
        async with aiohttp.ClientSession() as http:
            for response_id in (stream_id, routed.id):
                async with http.post(f"{proxy.base_url}/feedback", json={"id": response_id, "reward": 1.0},
                                     headers={"Authorization": "Bearer sk-one"}) as response:
                    assert response.status == 200, await response.text()
        pool = proxy.services.pools.pools[0]
        assert int(pool.router.model.counts.sum()) == 2
        assert all(seconds > 0 for seconds in pool.router.cost.seconds)  # both page-ins were measured
        assert pool.router.cost.measured.sum() >= 2
    finally:
        await client.close()
        await proxy.server.close()
