"""vLLM's runtime LoRA endpoints on the model server: load, list, use, unload, with vLLM's status codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.model_server.adapter_fixtures import lora_model_server
from tests.model_server.test_api import MODEL, base_url

PROMPT = "def fibonacci(n):"


@pytest.fixture
async def server(smollm2: Any, trained_adapters: dict[str, Path]) -> AsyncIterator[TestServer]:
    async with lora_model_server(smollm2, trained_adapters, max_loras=2) as server:
        yield server


async def post(http: aiohttp.ClientSession, server: TestServer, path: str, body: dict[str, Any]
               ) -> tuple[int, Any]:
    async with http.post(base_url(server) + path, json=body) as r:
        text = await r.text()
        return r.status, (await r.json()) if r.content_type == "application/json" else text


async def complete(http: aiohttp.ClientSession, server: TestServer, model: str) -> tuple[int, Any]:
    return await post(http, server, "/completions", {"model": model, "prompt": PROMPT, "max_tokens": 12,
                                                     "temperature": 0})


async def test_load_use_unload(server: TestServer, trained_adapters: dict[str, Path]) -> None:
    code_path = str(trained_adapters["code"])
    async with aiohttp.ClientSession() as http:
        status, base = await complete(http, server, MODEL)
        assert status == 200
        status, text = await post(http, server, "/load_lora_adapter", {"lora_name": "code", "lora_path": code_path})
        assert status == 200 and text == "Success: LoRA adapter 'code' added successfully."
        async with http.get(base_url(server) + "/models") as r:
            cards = {c["id"]: c for c in (await r.json())["data"]}
        assert cards["code"]["parent"] == MODEL and cards["code"]["root"]
        status, tuned = await complete(http, server, "code")
        assert status == 200 and tuned["model"] == "code"
        assert tuned["choices"][0]["text"] != base["choices"][0]["text"]
        status, again = await complete(http, server, MODEL)
        assert again["choices"][0]["text"] == base["choices"][0]["text"]  # the base model is untouched

        status, text = await post(http, server, "/unload_lora_adapter", {"lora_name": "code"})
        assert status == 200 and text == "Success: LoRA adapter 'code' removed successfully."
        status, error = await complete(http, server, "code")
        assert status == 404 and error["error"]["param"] == "model"
        status, _ = await post(http, server, "/unload_lora_adapter", {"lora_name": "code"})
        assert status == 404


async def test_lora_errors_use_vllm_status_codes(server: TestServer, trained_adapters: dict[str, Path]) -> None:
    code_path = str(trained_adapters["code"])
    async with aiohttp.ClientSession() as http:
        assert (await post(http, server, "/load_lora_adapter", {"lora_name": "x"}))[0] == 400
        assert (await post(http, server, "/unload_lora_adapter", {}))[0] == 400
        assert (await post(http, server, "/load_lora_adapter", {"lora_name": MODEL, "lora_path": code_path}))[0] == 400
        assert (await post(http, server, "/load_lora_adapter", {"lora_name": "a", "lora_path": code_path}))[0] == 200
        assert (await post(http, server, "/load_lora_adapter", {"lora_name": "a", "lora_path": code_path}))[0] == 400
        missing, _ = await post(http, server, "/load_lora_adapter", {"lora_name": "m", "lora_path": "no-such"})
        assert missing in (400, 404)
        outside, _ = await post(http, server, "/load_lora_adapter", {"lora_name": "o", "lora_path": "/etc"})
        assert outside == 400
        legal = str(trained_adapters["legal"])
        assert (await post(http, server, "/load_lora_adapter", {"lora_name": "b", "lora_path": legal}))[0] == 200
        status, error = await post(http, server, "/load_lora_adapter", {"lora_name": "c", "lora_path": legal})
        assert status == 400 and error["error"]["code"] == "max_loras_reached"
        async with http.get(base_url(server) + "/models") as r:
            assert [c["id"] for c in (await r.json())["data"]] == [MODEL, "a", "b"]
