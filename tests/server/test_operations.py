"""Health, metrics, admin endpoints and persistence across a restart."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Proxy, Stub, proxy_config, start_proxy

ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def ask(http: aiohttp.ClientSession, proxy: Proxy, question: str, api_key: str = "sk-a",
              **headers: str) -> tuple[str, str]:
    body = {"model": "stub-model", "temperature": 0, "messages": [{"role": "user", "content": question}]}
    async with http.post(f"{proxy.base_url}/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {api_key}", **headers}) as response:
        assert response.status == 200, await response.text()
        payload = await response.json()
        return response.headers["x-cachesvc-cache"], payload["choices"][0]["message"]["content"]


async def admin(http: aiohttp.ClientSession, proxy: Proxy, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
    method = http.post if body is not None else http.get
    kwargs = {"json": body} if body is not None else {}
    async with method(f"{proxy.root}/admin/{path}", headers=ADMIN if headers is None else headers,
                      **kwargs) as response:
        return response.status, await response.json()


async def test_healthz_and_metrics(http: aiohttp.ClientSession, proxy: Proxy) -> None:
    async with http.get(f"{proxy.root}/healthz") as response:
        assert response.status == 200 and (await response.json())["status"] == "ok"
    await ask(http, proxy, "What is a monad?")
    await ask(http, proxy, "What is a monad?")
    async with http.get(f"{proxy.root}/metrics") as response:
        text = await response.text()
    assert 'cachesvc_requests_total{cache="miss",endpoint="chat",tier=""} 1.0' in text
    assert 'cachesvc_requests_total{cache="hit",endpoint="chat",tier="exact"} 1.0' in text
    assert "cachesvc_lookup_seconds_bucket" in text and 'stage="embed"' in text


async def test_healthz_is_503_until_the_cache_is_ready(http: aiohttp.ClientSession, stub: Stub) -> None:
    import asyncio

    from aiohttp.test_utils import TestServer

    from cachesvc.embedding.embedder import Embedder
    from cachesvc.server.app import create_app

    gate = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_encode(texts: list[str]) -> Any:
        import numpy as np
        asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(timeout=10)
        return np.ones((len(texts), 8), dtype=np.float32) / np.sqrt(8)

    config = proxy_config(stub.url)
    app = create_app(config, embedder=Embedder(config.cache.embedding, encode=slow_encode))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with http.get(f"http://127.0.0.1:{server.port}/healthz") as response:
            assert response.status == 503
        body = {"model": "stub-model", "messages": [{"role": "user", "content": "early bird"}]}
        async with http.post(f"http://127.0.0.1:{server.port}/v1/chat/completions", json=body) as response:
            assert response.status == 200  # served, uncached, while the model loads
            assert response.headers["x-cachesvc-cache"] == "bypass"
        gate.set()
    finally:
        gate.set()
        await server.close()


async def test_admin_requires_the_key(http: aiohttp.ClientSession, proxy: Proxy) -> None:
    status, body = await admin(http, proxy, "stats", headers={})
    assert status == 401 and body["error"]["code"] == "invalid_admin_key"
    status, body = await admin(http, proxy, "stats", headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, body = await admin(http, proxy, "invalidate", {"all": True}, headers={"x-admin-key": "nope"})
    assert status == 401


async def test_admin_disabled_without_a_key(http: aiohttp.ClientSession, stub: Stub, encode: Callable) -> None:
    config = proxy_config(stub.url, **{"server.admin_key": None})
    proxy = await start_proxy(config, encode)
    try:
        status, body = await admin(http, proxy, "stats")
        assert status == 403 and body["error"]["code"] == "admin_disabled"
    finally:
        await proxy.server.close()


async def test_admin_stats_and_invalidation(http: aiohttp.ClientSession, proxy: Proxy) -> None:
    await ask(http, proxy, "How do I read a file line by line in Python?", api_key="sk-a")
    await ask(http, proxy, "How do I read a file line by line in Python?", api_key="sk-b")
    await ask(http, proxy, "What is the capital of Peru?", api_key="sk-a", **{"x-cachesvc-namespace": "geo"})
    status, stats = await admin(http, proxy, "stats")
    assert status == 200 and stats["entries"] == 3
    assert sum(stats["entries_by_category"].values()) == 3
    assert stats["upstreams"]["default"]["inflight"] == 0

    status, result = await admin(http, proxy, "invalidate", {"namespace": "geo", "dry_run": True})
    assert (status, result["matched"], result["dry_run"]) == (200, 1, True)
    assert (await ask(http, proxy, "What is the capital of Peru?", **{"x-cachesvc-namespace": "geo"}))[0] == "hit"
    status, result = await admin(http, proxy, "invalidate", {"namespace": "geo"})
    assert result["matched"] == 1
    assert (await ask(http, proxy, "What is the capital of Peru?", **{"x-cachesvc-namespace": "geo"}))[0] == "miss"

    status, result = await admin(http, proxy, "invalidate", {"api_key": "sk-b"})
    assert result["matched"] == 1
    assert (await ask(http, proxy, "How do I read a file line by line in Python?", api_key="sk-b"))[0] == "miss"
    assert (await ask(http, proxy, "How do I read a file line by line in Python?", api_key="sk-a"))[0] == "hit"


async def test_admin_invalidate_by_entry_and_category(http: aiohttp.ClientSession, proxy: Proxy) -> None:
    body = {"model": "stub-model", "temperature": 0, "messages": [{"role": "user", "content": "What's 17 squared?"}]}
    async with http.post(f"{proxy.base_url}/chat/completions", json=body,
                         headers={"x-cachesvc-category": "math"}) as response:
        assert response.status == 200
    async with http.post(f"{proxy.base_url}/chat/completions", json=body) as response:
        entry = response.headers["x-cachesvc-entry"]
        assert response.headers["x-cachesvc-category"] == "math"
    status, result = await admin(http, proxy, "invalidate", {"category": "code"})
    assert result["matched"] == 0
    status, result = await admin(http, proxy, "invalidate", {"entry_id": entry})
    assert result["matched"] == 1 and result["entry_ids"] == [entry]


@pytest.mark.parametrize("body", [{}, {"dry_run": True}, {"colour": "red"}, {"entry_id": "abc"}, [1]])
async def test_admin_invalidate_rejects_vague_or_bad_requests(http: aiohttp.ClientSession, proxy: Proxy,
                                                               body: Any) -> None:
    status, result = await admin(http, proxy, "invalidate", body)
    assert status == 400 and "error" in result


async def test_sqlite_store_survives_a_restart(http: aiohttp.ClientSession, stub: Stub, encode: Callable,
                                               tmp_path: Path) -> None:
    config = proxy_config(stub.url, **{"cache.store.kind": "sqlite", "cache.store.path": str(tmp_path / "c.db")})
    proxy = await start_proxy(config, encode)
    try:
        assert (await ask(http, proxy, "How do I undo the last git commit?"))[0] == "miss"
    finally:
        await proxy.server.close()
    proxy = await start_proxy(config, encode)
    try:
        assert len(proxy.services.cache) == 1
        assert (await ask(http, proxy, "How do I undo the last git commit?"))[0] == "hit"
        kind, _ = await ask(http, proxy, "how do i undo the last git commit")  # semantic: case and "?" differ
        assert kind == "hit", "the index was rebuilt from the store, so paraphrases hit too"
    finally:
        await proxy.server.close()
    assert stub.stats.completions == 1


def test_cli_help_and_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cachesvc.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    assert "--upstream" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"upstreams": [{"url": "http://127.0.0.1:9/v1"}], "cache": {"stor": {}}}))
    assert main(["serve", "--config", str(bad)]) == 2
    assert "cache.stor: unknown key" in capsys.readouterr().err
    assert main(["serve", "--port", "70000"]) == 2  # (no upstream is fine: the embedded model server)
    assert "server.port" in capsys.readouterr().err
