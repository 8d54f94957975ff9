"""The vLLM pager (kind ``cachesvc``) against the real reference model server: real SmolLM2, real trained adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from cachesvc.model_server.app import ENGINE
from cachesvc.upstreams.adapter_pager import PagerError, make_pager
from tests.model_server.adapter_fixtures import lora_model_server
from tests.model_server.conftest import trained_adapters  # noqa: F401  (a fixture for this test)
from tests.model_server.test_api import MODEL, base_url


@pytest.fixture
async def server(smollm2: Any, trained_adapters: dict[str, Path]) -> AsyncIterator[TestServer]:  # noqa: F811
    async with lora_model_server(smollm2, trained_adapters, max_loras=2) as server:
        yield server


async def test_pager_on_the_reference_model_server(server: TestServer,
                                                   trained_adapters: dict[str, Path]) -> None:  # noqa: F811
    url = base_url(server)
    async with make_pager("cachesvc", url, timeout_s=30, load_timeout_s=60) as pager:
        assert await pager.loaded() == set()
        seconds = await pager.load("code", str(trained_adapters["code"]))
        assert seconds > 0
        assert await pager.loaded() == {"code"}

        model = pager.model_field(MODEL, "code")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/completions", json={"model": model, "prompt": "def add(a, b):",
                                                             "max_tokens": 3, "temperature": 0}) as r:
                assert r.status == 200, await r.text()
                done = await r.json()
        assert done["model"] == "code" and done["usage"]["completion_tokens"] >= 1

        with pytest.raises(PagerError) as duplicate:
            await pager.load("code", str(trained_adapters["legal"]))
        assert (duplicate.value.kind, duplicate.value.status) == ("duplicate", 400)
        with pytest.raises(PagerError) as missing:
            await pager.load("m", "no-such-adapter")  # relative to --lora-dir: nothing there
        assert (missing.value.kind, missing.value.status) == ("not_found", 404)
        with pytest.raises(PagerError) as outside:
            await pager.load("o", "/etc")
        assert (outside.value.kind, outside.value.status) == ("refused", 400)

        await pager.unload("code")
        assert await pager.loaded() == set()
        with pytest.raises(PagerError) as unknown:
            await pager.unload("code")
        assert (unknown.value.kind, unknown.value.status) == ("unknown_adapter", 404)
    assert server.app[ENGINE].adapter_names() == []
